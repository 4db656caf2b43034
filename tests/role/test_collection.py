"""The repository root as the installable collection coinex.chatbot (galaxy.yml): build the
tarball, install it offline into an empty directory, and deploy with
`ansible-playbook coinex.chatbot.deploy` from there (outside the checkout, so neither its
ansible.cfg nor its roles are used): a real local deploy under a temporary base dir on free ports,
built from the installed collection's app/, that answers a chat question."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from chat_client import ask, shutdown

from playbook_runner import ROOT, free_port

BIN = ROOT / ".venv" / "bin"
NOT_SHIPPED = (".venv/", ".deploy/", ".ansible/", ".git/", "__pycache__", ".egg-info",
               ".vault_pass", ".pytest_cache")  # fmt: skip


def run(argv: list[str], cwd: Path, collections: Path | None = None) -> str:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1"}
    for name in ("WS", "ANSIBLE_CONFIG", "ANSIBLE_INVENTORY", "ANSIBLE_ROLES_PATH"):
        env.pop(name, None)
    if collections is not None:
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
                          check=False)  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out)], cwd=ROOT)
    (built,) = out.glob("coinex-chatbot-*.tar.gz")
    return built


def test_tarball_holds_the_layout_and_nothing_local(tarball: Path) -> None:
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    for wanted in ("MANIFEST.json", "roles/coinex_chatbot/tasks/main.yml", "playbooks/deploy.yml",
                   "app/pyproject.toml", "app/requirements.lock", "inventories/local/hosts.yml",
                   "plugins/filter/coinex_chatbot_validate.py", "requirements.yml",
                   "ansible.cfg", "deploy.yml"):  # fmt: skip
        assert wanted in names, wanted
    shipped = [n for n in names if any(bad in n for bad in NOT_SHIPPED) or n.endswith("/vault.yml")]
    assert not shipped, shipped


def test_build_ignore_covers_local_files_a_clean_clone_lacks() -> None:
    """What the tarball test cannot see in a clean clone: the operator's vault, deploys, venvs,
    caches (ansible-galaxy matches build_ignore with fnmatch on the path from the root)."""
    patterns = yaml.safe_load((ROOT / "galaxy.yml").read_text())["build_ignore"]
    for path in ("inventories/production/.vault_pass", "inventories/staging/.vault_pass",
                 "inventories/production/group_vars/all/vault.yml", ".venv", ".deploy",
                 ".ansible", "app/src/coinex_chatbot/__pycache__",
                 "app/src/coinex_chatbot.egg-info",
                 "dist", "coinex-chatbot-1.0.0.tar.gz", ".pytest_cache"):  # fmt: skip
        assert any(fnmatch.fnmatch(path, p) for p in patterns), path


@pytest.mark.e2e
def test_installed_collection_deploys(tarball: Path, tmp_path: Path) -> None:
    collections = tmp_path / "collections"
    collections.mkdir()
    install = [str(BIN / "ansible-galaxy"), "collection", "install", "--offline",
               "-p", str(collections), str(tarball)]  # fmt: skip
    installed = run(install, cwd=tmp_path, collections=collections)
    assert "coinex.chatbot:1.0.0 was installed successfully" in installed
    home = collections / "ansible_collections/coinex/chatbot"
    assert (home / "app/pyproject.toml").is_file()

    work, base, port = tmp_path / "work", tmp_path / "deploy", free_port()
    work.mkdir()
    try:
        out = run([str(BIN / "ansible-playbook"), "coinex.chatbot.deploy",
                   "-i", str(home / "inventories/local"), "-e", "ws=2",
                   "-e", f"coinex_chatbot_base_dir={base}",
                   "-e", f"coinex_chatbot_http_port={port}",
                   "-e", f"coinex_chatbot_local_redis_port={free_port()}"],
                  cwd=work, collections=collections)  # fmt: skip
        assert f"Chat page of localhost: http://127.0.0.1:{port}/" in out
        # the collection's own role and app, not the checkout's
        assert "coinex.chatbot.coinex_chatbot : " in out
        assert f"the targets' wheelhouses, from {home}/app]" in out
        assert str(ROOT) not in out.replace(str(BIN), "")
        answer = ask(port, "How do I reset my 2FA?")
        assert answer["status"] == "answered", answer
    finally:
        shutdown(base)
