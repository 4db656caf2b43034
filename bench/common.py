"""Shared parts of the benchmark: processes it starts (and always stops), Redis, the machine."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
REDIS_SERVER = "/usr/bin/redis-server"
WRK = "/usr/bin/wrk"


class BenchError(RuntimeError):
    """Something the benchmark needs did not work; the message says what."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # the thing is not up yet
            last = exc
        time.sleep(0.1)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass
class Proc:
    """A process group the benchmark started; stop() ends exactly that group."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: stop() reaches its children too
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited early; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen is None:
            return
        pgid = self.popen.pid
        if self.popen.poll() is None:
            _signal_group(pgid, self.stop_signal)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                self.popen.wait(5)
        # children that outlived their parent (same group) get no second chance
        _signal_group(pgid, signal.SIGKILL)
        self.popen = None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the live processes of this group."""
        if self.popen is None:
            return 0.0
        return group_cpu_seconds(self.popen.pid)


_TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process just ended
            continue
        # after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt
        # cmajflt utime stime
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(threshold: float, max_wait: float) -> float:
    """Wait (at most max_wait s) until the machine's busy CPU over 1 s is below threshold cores.

    Called between runs, when the benchmark's own processes are idle, so the busy CPU is
    other people's load. Returns the last measured load, in cores.
    """
    started = time.monotonic()
    while True:
        before, t0 = busy_cpu_seconds(), time.monotonic()
        time.sleep(1.0)
        load = (busy_cpu_seconds() - before) / (time.monotonic() - t0)
        waited = time.monotonic() - started
        if load < threshold or waited >= max_wait:
            if waited > 1.5:
                print(f"    waited {waited:.0f} s for a quieter machine: {load:.2f} cores busy")
            return load


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def start_redis(workdir: Path) -> tuple[Proc, str]:
    """A private redis-server on a free loopback port, no persistence."""
    if not Path(REDIS_SERVER).exists():
        raise BenchError(f"{REDIS_SERVER} is missing: run scripts/setup")
    port = free_port()
    argv = [
        REDIS_SERVER,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--daemonize", "no",
        "--maxclients", "10000",
    ]  # fmt: skip
    proc = Proc("redis-server", argv, dict(os.environ), workdir / "redis.log").start()

    def pong() -> bool:
        proc.check_alive()
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    wait_for(pong, 10, f"redis-server on port {port}")
    return proc, f"redis://127.0.0.1:{port}/0"


def _first(path: str, prefix: str, sep: str = ":") -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix) and sep in line:
                return line.split(sep, 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def machine() -> dict[str, str]:
    mem_kb = int(_first("/proc/meminfo", "MemTotal").split()[0] or 0)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": str(os.cpu_count()),
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "os": _first("/etc/os-release", "PRETTY_NAME", "="),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": load,
    }


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def app_env(redis_url: str, prom_dir: Path) -> dict[str, str]:
    """A clean environment, the same for every process of the app: production settings, rate
    limits off (the benchmarks measure capacity, not the limiter)."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
    env.update(
        REDIS_URL=redis_url,
        SECRET_KEY="bench",
        CHATBOT_ENV="production",
        CHATBOT_RATE_LIMIT_CONVERSATION="0",
        CHATBOT_RATE_LIMIT_IP="0",
        PROMETHEUS_MULTIPROC_DIR=str(prom_dir),
    )
    return env


DOC_HEADER = (
    "# Benchmarks\n\n"
    "Measured figures of this project on real processes. Each section is written by its own\n"
    "script between its markers; re-running a script replaces only its section.\n"
)


def write_section(
    path: Path, text: str, start: str, end: str, keep: tuple[str, str] | None = None
) -> None:
    """Replace only the text between ``start`` and ``end`` of ``path`` (re-read right before
    writing, so other scripts' sections survive); a ``keep`` block of hand-written notes inside
    the old section is carried into the new one."""
    current = path.read_text() if path.exists() else DOC_HEADER
    if keep:
        notes = re.search(re.escape(keep[0]) + ".*?" + re.escape(keep[1]), current, re.DOTALL)
        if notes:
            text = text.replace(end, notes.group(0) + "\n" + end)
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        new = before + text + ("\n" + after if after else "")
    else:
        new = current.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def lua_tables(conversation_ids: list[str], questions: list[str] | tuple[str, ...]) -> str:
    """The Lua tables a wrk POST script starts with: conversation ids, JSON bodies, headers."""
    ids = ",\n".join(f'  "{cid}"' for cid in conversation_ids)
    bodies = ",\n".join(
        "  [==[" + json.dumps({"text": q}, ensure_ascii=True) + "]==]" for q in questions
    )
    return (
        f"local ids = {{\n{ids}\n}}\n"
        f"local bodies = {{\n{bodies}\n}}\n"
        'local headers = {["Content-Type"] = "application/json"}\n'
    )


def broker_backlog(client: object) -> tuple[int, int]:
    """Messages still queued and still unacknowledged on Dramatiq's default queue (one round trip).

    ``client`` is a redis.Redis; typed loosely so that common.py does not import redis.
    """
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    pipe.llen("dramatiq:default")
    pipe.hlen("dramatiq:default.msgs")
    queued, unacked = pipe.execute()
    return queued, unacked


def cli(main: Callable[[list[str]], int], prog: str, argv: list[str]) -> None:
    """Run a bench entry point: its exit code, or 1 with the message of a BenchError."""
    import sys

    try:
        sys.exit(main(argv))
    except BenchError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(1)
