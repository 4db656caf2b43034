"""Run ansible-playbook from the repository root for real (helpers of the role tests)."""

from __future__ import annotations

import os
import random
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


_HANDED_OUT: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port P of 127.0.0.1 that is free, and P + 1 too: a local deploy's uWSGI listens on the
    chat port + 1 behind its haproxy. Chosen below the kernel's ephemeral range, where outgoing
    connections take their local ports (a port chosen there was once taken by one before the
    deploy bound it), and never overlapping a port this session handed out before."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(500):
        port = random.randrange(10000, low - 1)
        pair = {port, port + 1}
        if not pair & _HANDED_OUT and all(map(_bindable, pair)):
            _HANDED_OUT.update(pair)
            return port
    raise RuntimeError(f"no two free consecutive ports between 10000 and {low}")
