"""Secrets never reach Ansible's output, even at -vvv, and land only in 0640 config files."""

from __future__ import annotations

import subprocess
from pathlib import Path

from playbook_runner import free_port, run_playbook

MARKER = "coinex-secret-marker-5d1e9b"


def test_secret_key_is_not_in_vvv_output(tmp_path: Path) -> None:
    base = tmp_path / "deploy"
    run = run_playbook(
        "deploy.yml",
        "-vvv",
        "-e", f"coinex_chatbot_base_dir={base}",
        "-e", f"coinex_chatbot_http_port={free_port()}",
        "-e", f"coinex_chatbot_local_redis_port={free_port()}",
        "-e", f"coinex_chatbot_secret_key={MARKER}",
    )  # fmt: skip
    try:
        assert run.rc == 0, run.output[-4000:]
        assert "PLAY RECAP" in run.output
        # really -vvv: the connection plugin's command lines and the module arguments are shown
        assert "ESTABLISH LOCAL CONNECTION" in run.output and "module_args" in run.output
        leaked = [line[:200] for line in run.output.splitlines() if MARKER in line]
        assert not leaked, leaked
        holders = [p for p in (base / "shared/config").rglob("*") if p.is_file()
                   and MARKER in p.read_text(errors="replace")]  # fmt: skip
        assert holders, "the secret was not deployed at all"
        for path in holders:
            assert path.stat().st_mode & 0o077 in (0o040, 0o000), f"{path} is too open"
        # the local Redis password the role generated on the host: never shown, only in 0600
        # files (its own, redis.conf) and the 0640 ones the app reads it from (its Redis URL)
        redis_password = (base / "shared/config/redis_password").read_text()
        assert len(redis_password) >= 32
        leaked = [line[:200] for line in run.output.splitlines() if redis_password in line]
        assert not leaked, leaked
        files = [*(base / "shared").rglob("*"), *(base / "logs").rglob("*"),
                 base / "local_supervisord.conf"]  # fmt: skip
        holders = {p.name: p.stat().st_mode & 0o777 for p in files
                   if p.is_file() and redis_password in p.read_text(errors="replace")}  # fmt: skip
        assert holders == {"redis_password": 0o600, "redis.conf": 0o600, "app.env": 0o640,
                           "coinex_customer_chatbot.conf": 0o640}, holders  # fmt: skip
    finally:
        conf = base / "local_supervisord.conf"
        if conf.exists():
            subprocess.run(
                [str(base / "tools/venv/bin/supervisorctl"), "-c", str(conf), "shutdown"],
                capture_output=True,
                check=False,
            )
