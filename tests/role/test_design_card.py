"""The design card's commands as written, from the repository root.

- `ansible-playbook deploy.yml -e ws=N`: the root deploy.yml, the default inventory of ansible.cfg
  (inventories/local), no -i; a real local deploy under a temporary base dir on free ports.
- The production commands with a vault: `make vault` (scripts/vault) writes the password file and
  an encrypted vault.yml that the production inventory's secrets resolve from, both gitignored.
- `molecule test [-s NAME | --all]`: every scenario's dependency step builds the images its
  platforms use (the Molecule runs themselves are `make molecule`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chat_client import ask, shutdown, supervisorctl

from playbook_runner import ROOT, free_port

BIN = ROOT / ".venv" / "bin"
GROUP = "coinex_customer_chatbot"


def run(*argv: str, cwd: Path = ROOT, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """A command as a user types it: the venv's bin first on PATH, no WS in the environment."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    env.pop("WS", None)
    env.pop("ANSIBLE_INVENTORY", None)
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)  # fmt: skip
    proc.stdout += proc.stderr
    return proc


@pytest.mark.e2e
def test_root_deploy_yml_with_ws(tmp_path: Path) -> None:
    """`ansible-playbook deploy.yml -e ws=3` from the root deploys locally with 3 task processes."""
    base, port, redis_port = tmp_path / "deploy", free_port(), free_port()
    try:
        proc = run("ansible-playbook", "deploy.yml", "-e", "ws=3",
                   "-e", f"coinex_chatbot_base_dir={base}",
                   "-e", f"coinex_chatbot_http_port={port}",
                   "-e", f"coinex_chatbot_local_redis_port={redis_port}")  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-4000:]
        # ansible.cfg's default inventory: this machine, local mode
        assert re.search(r"^localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0",
                         proc.stdout, re.M), proc.stdout[-3000:]  # fmt: skip
        assert f"Chat page of localhost: http://127.0.0.1:{port}/" in proc.stdout
        status = supervisorctl(base, "status")
        tasks = [ln for ln in status.splitlines() if f"{GROUP}_task_" in ln and "RUNNING" in ln]
        assert len(tasks) == 3, status
        answer = ask(port, "How do I reset my 2FA?")
        assert answer["status"] == "answered", answer
    finally:
        shutdown(base)


def test_root_deploy_yml_is_playbooks_deploy_yml() -> None:
    """One source of truth: the root playbook only imports playbooks/deploy.yml."""
    plays = yaml.safe_load((ROOT / "deploy.yml").read_text())
    assert [p.get("ansible.builtin.import_playbook") for p in plays] == ["playbooks/deploy.yml"]
    listed = run("ansible-playbook", "deploy.yml", "--list-hosts")
    assert listed.returncode == 0, listed.stdout
    direct = run("ansible-playbook", "playbooks/deploy.yml", "--list-hosts")
    assert listed.stdout.replace("playbook: deploy.yml", "") == direct.stdout.replace(
        "playbook: playbooks/deploy.yml", ""
    )


def production_copy(tmp_path: Path) -> Path:
    """inventories/production as a fresh clone has it (no vault, no password file)."""
    inv = tmp_path / "production"
    shutil.copytree(ROOT / "inventories" / "production", inv,
                    ignore=shutil.ignore_patterns(".vault_pass*", "vault.yml"))  # fmt: skip
    return inv


def test_make_vault_makes_the_production_commands_work(tmp_path: Path) -> None:
    inv = production_copy(tmp_path)
    pass_file, vault = inv / ".vault_pass", inv / "group_vars/all/vault.yml"
    # the documented production command, before the vault exists: it names the missing file
    command = ["ansible", "chatbot-1.example.internal", "-i", str(inv),
               "-m", "ansible.builtin.debug", "-a", "var=coinex_chatbot_secret_key",
               "--vault-password-file", str(pass_file)]  # fmt: skip
    before = run(*command)
    assert before.returncode != 0 and ".vault_pass" in before.stdout, before.stdout

    made = run(str(ROOT / "scripts/vault"), str(inv))
    assert made.returncode == 0, made.stdout
    assert pass_file.stat().st_mode & 0o077 == 0, "the password file must be private"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256"), "vault.yml must be encrypted"

    after = run(*command)
    assert after.returncode == 0, after.stdout
    secret = re.search(r"coinex_chatbot_secret_key: (\S+)", after.stdout)
    assert secret, after.stdout
    assert len(secret.group(1)) >= 16 and "CHANGE-ME" not in secret.group(1)
    # the deploy command of the docs parses with it (hosts listed, nothing run)
    listed = run("ansible-playbook", "-i", str(inv), "deploy.yml", "-e", "ws=4",
                 "--vault-password-file", str(pass_file), "--list-hosts")  # fmt: skip
    assert listed.returncode == 0 and "chatbot-3.example.internal" in listed.stdout, listed.stdout

    # a second run keeps both files; a wrong password is one line naming the files
    mtime = vault.stat().st_mtime_ns
    again = run(str(ROOT / "scripts/vault"), str(inv))
    assert again.returncode == 0 and vault.stat().st_mtime_ns == mtime, again.stdout
    pass_file.write_text("not-the-password\n")
    wrong = run(str(ROOT / "scripts/vault"), str(inv))
    assert wrong.returncode == 1, wrong.stdout
    last = wrong.stdout.strip().splitlines()[-1]
    assert last.startswith(f"vault: ERROR: {vault} does not decrypt"), wrong.stdout


def test_vault_files_are_kept_out_of_git() -> None:
    paths = [
        "inventories/production/.vault_pass",
        "inventories/production/group_vars/all/vault.yml",
    ]
    proc = run("git", "check-ignore", *paths)
    assert proc.returncode == 0 and proc.stdout.split() == paths, proc.stdout
    # the example is in git and not read by Ansible (no .yml extension)
    assert (ROOT / "inventories/production/group_vars/all/vault.yml.example").is_file()


def test_molecule_scenarios_build_their_images() -> None:
    """A plain `molecule test` needs no registry: each scenario's dependency step builds (when
    missing) exactly the local images its platforms use."""
    scenarios = sorted(p.parent.name for p in (ROOT / "molecule").glob("*/molecule.yml"))
    assert {"default", "fleet", "local"} <= set(scenarios)
    for name in scenarios:
        config = yaml.safe_load((ROOT / "molecule" / name / "molecule.yml").read_text())
        dependency = config["dependency"]
        assert dependency["name"] == "shell", name
        argv = dependency["command"].split()
        shared = "${MOLECULE_PROJECT_DIRECTORY}/molecule/shared/dependency"
        if argv == [f"${{MOLECULE_PROJECT_DIRECTORY}}/molecule/{name}/dependency"]:
            # the scenario's own step (fleet: its vault) runs the shared one first, with its images
            own = (ROOT / "molecule" / name / "dependency").read_text()
            first = re.search(r'^"\$ROOT/molecule/shared/dependency"((?: \w+)+)$', own, re.M)
            assert first, f"molecule/{name}/dependency does not run molecule/shared/dependency"
            argv = [shared, *first.group(1).split()]
        assert argv[0] == shared, name
        images = {p["image"] for p in config["platforms"]}
        wanted = {f"coinex-chatbot/{key}-systemd:latest" for key in argv[1:]}
        assert images == wanted, (name, images, wanted)
        assert all(p.get("pre_build_image") for p in config["platforms"]), name
    script = (ROOT / "molecule/shared/dependency").read_text()
    assert '"$ROOT/molecule/images/build" "$@"' in script
