"""Run ansible-playbook from the repository root for real (helpers of the role tests)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"


@dataclass
class PlaybookRun:
    rc: int
    output: str

    def recap(self, host: str = "localhost") -> dict[str, int]:
        """Counters of the host's last PLAY RECAP line (ok, changed, failed, ...)."""
        lines = [ln for ln in self.output.splitlines() if re.match(rf"^{re.escape(host)}\s+:", ln)]
        assert lines, f"no PLAY RECAP line for {host}:\n{self.output[-3000:]}"
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[-1])}

    def errors(self) -> list[str]:
        """Messages of the `[ERROR]: ...` blocks (ansible-core 2.19), without their Origin part."""
        return [
            m.strip()
            for m in re.findall(r"^\[ERROR\]: (.*?)(?:^Origin:|\n\n|\Z)", self.output, re.M | re.S)
        ]


def run_playbook(playbook: str, *args: str, env: dict[str, str] | None = None) -> PlaybookRun:
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.fail(f"{ANSIBLE_PLAYBOOK} missing: run `make setup` first")
    full_env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    full_env.pop("WS", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), str(ROOT / "playbooks" / playbook), *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
