"""Real services for the tests: redis-server on a free port, uWSGI and Dramatiq processes.

Nothing is mocked. If redis-server, uWSGI or Dramatiq cannot start, the fixtures fail loudly.
The benchmarks (bench/common.py) start their processes with the same helpers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

VENV_BIN = Path(sys.executable).parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
CONVERSATION_PATH = re.compile(r"/api/v1/conversations/([^/?]+)/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Exited(AssertionError):
    """A process that should be running has exited (wait_for gives up at once)."""


def wait_for(check, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exited:
            raise
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


@dataclass
class RedisServer:
    """redis-server on 127.0.0.1:port, its files (and its log, redis-server.log) in workdir.

    appendonly=True: an append-only file fsynced every second, as the production role configures
    (roles/coinex_chatbot_redis); start() after stop() then reloads the data from workdir.
    """

    port: int
    workdir: Path
    appendonly: bool = False
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.workdir / "redis-server.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "redis-server is not running"
        return self.proc.pid

    def start(self) -> None:
        if not Path(REDIS_SERVER).exists():
            raise AssertionError(
                f"redis-server not found at {REDIS_SERVER}: run scripts/setup "
                "(it installs Debian's redis-server)"
            )
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "yes" if self.appendonly else "no",
                    "--appendfsync",
                    "everysec",
                    "--dir",
                    str(self.workdir),
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.ping, 10, f"redis-server on port {self.port}")

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> int | None:
        """Graceful: SIGTERM makes redis-server fsync the AOF, then exit 0. The exit code."""
        code = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            code = self.proc.wait(10)
        self.proc = None
        return code


@dataclass
class Process:
    """A process started in its own process group (spawn); stop() ends the whole group."""

    name: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> None:
        """Raise if the process has exited, with the end of its log."""
        if not self.alive():
            raise Exited(f"{self.name} exited early:\n{self.output()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):  # children that outlived their parent
            os.killpg(self.proc.pid, signal.SIGKILL)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def spawn(name: str, argv: list[str], env: dict[str, str], logdir: Path) -> Process:
    log = logdir / f"{name}.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Process(name, proc, log)


def start_worker(
    env: dict[str, str],
    logdir: Path,
    name: str = "dramatiq",
    threads: int = 2,
    command: tuple[str, ...] = (),
    wait: bool = True,
) -> Process:
    """``python -m coinex_chatbot.worker`` as Supervisor runs it (one process); waits until it
    is ready unless ``wait`` is false. ``command`` (bench/memory.py's variants that act in
    Dramatiq's main process before its fork): ``COMMAND coinex_chatbot.tasks --processes 1``
    instead, Dramatiq's own two-process command line."""
    if command:
        argv = [*command, "coinex_chatbot.tasks", "--processes", "1", "--threads", str(threads)]
        argv += ["--worker-shutdown-timeout", "5000"]
    else:
        argv = [str(VENV_BIN / "python"), "-m", "coinex_chatbot.worker", "--threads", str(threads)]
        argv += ["--shutdown-timeout", "5000"]
    worker = spawn(name, argv, env, logdir)
    if wait:
        wait_for(lambda: worker_ready(worker), 60, f"{name} to boot")
    return worker


def worker_ready(worker: Process) -> bool:
    worker.check()
    out = worker.output()
    return '"msg": "worker ready"' in out or "Worker process is ready" in out


@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    logdir: Path
    processes: dict[str, Process] = field(default_factory=dict)

    # conversation id -> its bearer token, from the create responses this stack has seen
    tokens: dict[str, str] = field(default_factory=dict)

    def _call(self, method: str, path: str, **kw) -> requests.Response:
        """A request; a conversation's calls carry its token, as the chat page sends it."""
        match = CONVERSATION_PATH.match(path)
        if match and match.group(1) in self.tokens:
            auth = {"Authorization": f"Bearer {self.tokens[match.group(1)]}"}
            kw["headers"] = {**auth, **kw.get("headers", {})}
        reply = requests.request(method, self.base_url + path, timeout=10, **kw)
        if path == "/api/v1/conversations" and reply.status_code == 201:
            created = reply.json()
            self.tokens[created["conversation_id"]] = created["token"]
        return reply

    def get(self, path: str, **kw) -> requests.Response:
        return self._call("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self._call("POST", path, **kw)

    def ask(self, text: str, timeout: float = 20, lang: str | None = None) -> dict:
        """Post a question in a new conversation and poll until a worker has completed it."""
        cid = self.post("/api/v1/conversations", json={}).json()["conversation_id"]
        body = {"text": text, **({"lang": lang} if lang else {})}
        reply = self.post(f"/api/v1/conversations/{cid}/messages", json=body)
        assert reply.status_code == 202, reply.text
        mid = reply.json()["message_id"]
        result: dict = {}

        def done() -> bool:
            messages = self.get(f"/api/v1/conversations/{cid}/messages").json()["messages"]
            result.update(next(m for m in messages if m["message_id"] == mid))
            return result["status"] != "pending"

        wait_for(done, timeout, f"an answer to {text!r}")
        return {"conversation_id": cid, **result}


@contextmanager
def running_stack(app_env: dict[str, str], logdir: Path, processes: int = 2) -> Iterator[Stack]:
    """uWSGI (pyuwsgi) serving the app, one Dramatiq worker process; stopped on exit."""
    port = free_port()
    env = {**app_env, "PROMETHEUS_MULTIPROC_DIR": str(logdir / "prom")}
    uwsgi = spawn(
        "uwsgi",
        [
            str(VENV_BIN / "uwsgi"),
            "--strict",
            "--master",
            "--http-socket",
            f"127.0.0.1:{port}",
            "--module",
            "coinex_chatbot.wsgi:application",
            "--processes",
            str(processes),
            "--lazy-apps",
            "--need-app",
            "--die-on-term",
            "--enable-threads",
            "--single-interpreter",
            "--vacuum",
            "--disable-logging",
        ],
        env,
        logdir,
    )
    stack = Stack(f"http://127.0.0.1:{port}", env, logdir, {"uwsgi": uwsgi})
    try:
        wait_for(lambda: stack.get("/readyz").status_code == 200, 30, "uWSGI /readyz")
        stack.processes["dramatiq"] = start_worker(env, logdir)
        yield stack
    except BaseException:
        for p in stack.processes.values():
            print(f"--- {p.name} log ---\n{p.output()[-4000:]}")
        raise
    finally:
        for p in stack.processes.values():
            p.stop()
