"""Web benchmark: wrk against the app under uWSGI and under gunicorn, same processes, same Redis."""

from __future__ import annotations

import re
import resource
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis
from common import (
    VENV_BIN,
    WRK,
    BenchError,
    Proc,
    busy_cpu_seconds,
    free_port,
    http_status,
    lua_tables,
    wait_for,
    wait_quiet,
)
from questions import QUESTIONS

APP = "coinex_chatbot.wsgi:application"
POST_PATH = "/api/v1/conversations/{id}/messages"
ENDPOINTS = ("POST /api/v1/conversations/<id>/messages", "GET /healthz")


@dataclass(frozen=True)
class WebSettings:
    processes: int = 4
    uwsgi_threads: int = 2
    listen: int = 128
    connections: int = 64
    wrk_threads: int = 1
    wrk_cpus: str = ""  # taskset CPU list for wrk, "" = not pinned
    duration: int = 10
    warmup: int = 3
    repeats: int = 3
    conversations: int = 2000
    quiet: float = 0.3  # wait before each run until background load is below this (cores)
    quiet_wait: float = 30.0  # ... but at most this many seconds
    uwsgi_extra: tuple[str, ...] = ()
    gunicorn_extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    server_cpu_us: float = 0.0  # server CPU (all its processes) per request, microseconds
    others_cpu: float = 0.0  # CPU used by processes outside this benchmark, in cores


@dataclass
class Cell:
    """Measured runs of one server on one endpoint; the table shows medians."""

    runs: list[WrkResult] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def cpu_us(self) -> float:
        return statistics.median(r.server_cpu_us for r in self.runs)

    @property
    def others(self) -> float:
        return max(r.others_cpu for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.non_2xx + r.socket_errors for r in self.runs)


def uwsgi_argv(port: int, ws: WebSettings) -> list[str]:
    return [
        str(VENV_BIN / "uwsgi"),
        "--master",
        "--lazy-apps",
        "--processes", str(ws.processes),
        "--threads", str(ws.uwsgi_threads),
        "--http-socket", f"127.0.0.1:{port}",
        "--add-header", "Connection: close",  # uWSGI 2.0 closes anyway; say so, as gunicorn does
        "--module", APP,
        "--need-app",
        "--listen", str(ws.listen),
        "--single-interpreter",
        "--enable-threads",
        "--die-on-term",
        "--harakiri", "30",
        "--disable-logging",
        *ws.uwsgi_extra,
    ]  # fmt: skip


def gunicorn_argv(port: int, ws: WebSettings) -> list[str]:
    return [
        str(VENV_BIN / "gunicorn"),
        "--workers", str(ws.processes),
        "--worker-class", "sync",
        "--bind", f"127.0.0.1:{port}",
        "--backlog", str(ws.listen),
        "--timeout", "30",
        *ws.gunicorn_extra,
        APP,
    ]  # fmt: skip


@dataclass
class Server:
    name: str
    port: int
    proc: Proc

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SERVERS = {"uWSGI": uwsgi_argv, "gunicorn": gunicorn_argv}


def start_servers(
    ws: WebSettings, env: dict[str, str], workdir: Path, names: tuple[str, ...] = tuple(SERVERS)
) -> list[Server]:
    servers = []
    for name in names:
        build = SERVERS[name]
        port = free_port()
        # each server gets its own Prometheus multiprocess directory, emptied before start
        prom = workdir / f"prometheus-{name}"
        prom.mkdir()
        proc_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(prom)}
        proc = Proc(name, build(port, ws), proc_env, workdir / f"{name}.log", signal.SIGINT)
        servers.append(Server(name, port, proc.start()))
    for server in servers:

        def ready(s: Server = server) -> bool:
            s.proc.check_alive()
            return http_status(f"{s.base}/readyz") == 200

        wait_for(ready, 90, f"{server.name} /readyz on port {server.port}")
    return servers


def reset_redis(client: redis.Redis, conversations: int) -> list[str]:
    """Empty Redis (no message piles up across runs) and create fresh conversations."""
    from coinex_chatbot.store import Store

    client.flushdb()
    store = Store(client, 3600, "chatbot:escalations")
    return [store.create_conversation(None) for _ in range(conversations)]


def lua_script(path: Path, conversation_ids: list[str]) -> Path:
    """A wrk script that POSTs questions round-robin over many conversations."""
    path.write_text(
        "-- generated by bench/run.py\n" + lua_tables(conversation_ids, QUESTIONS) + "local n = 0\n"
        "function setup(thread)\n"
        '  thread:set("offset", math.random(1, 1000000))\n'
        "end\n"
        "function init(args)\n"
        "  n = offset or 0\n"
        "end\n"
        "function request()\n"
        "  n = n + 1\n"
        f'  local path = "{POST_PATH.split("{")[0]}" .. ids[(n % #ids) + 1] .. "/messages"\n'
        '  return wrk.format("POST", path, headers, bodies[(n % #bodies) + 1])\n'
        "end\n"
    )
    return path


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        raise BenchError(f"cannot read wrk latency {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(out: str) -> WrkResult:
    def grab(pattern: str) -> re.Match[str]:
        match = re.search(pattern, out, re.MULTILINE)
        if not match:
            raise BenchError(f"wrk output lacks {pattern!r}:\n{out}")
        return match

    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        rps=float(grab(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=_ms(grab(r"^\s+50%\s+(\S+)").group(1)),
        p99_ms=_ms(grab(r"^\s+99%\s+(\S+)").group(1)),
        requests=int(grab(r"^\s+(\d+) requests in").group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(x) for x in socket.groups()) if socket else 0,
    )


def wrk_argv(ws: WebSettings, url: str, duration: int, script: Path | None) -> list[str]:
    argv = [WRK, "-t", str(ws.wrk_threads), "-c", str(ws.connections), "-d", f"{duration}s"]
    argv += ["--latency", "--timeout", "5s"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    return (["taskset", "-c", ws.wrk_cpus] if ws.wrk_cpus else []) + argv


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    ws: WebSettings, url: str, duration: int, script: Path | None, server: Proc, redis_proc: Proc
) -> WrkResult:
    """One wrk run, with the CPU time the server, Redis, wrk and everything else used."""
    argv = wrk_argv(ws, url, duration, script)
    before = (
        server.cpu_seconds(),
        redis_proc.cpu_seconds(),
        _children_cpu_seconds(),
        busy_cpu_seconds(),
    )
    wall = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    wall = time.monotonic() - wall
    after = (
        server.cpu_seconds(),
        redis_proc.cpu_seconds(),
        _children_cpu_seconds(),
        busy_cpu_seconds(),
    )
    if out.returncode != 0:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr}\n{out.stdout}")
    result = parse_wrk(out.stdout)
    server_cpu, redis_cpu, wrk_cpu, busy = (a - b for a, b in zip(after, before, strict=True))
    return replace(
        result,
        server_cpu_us=server_cpu / max(result.requests, 1) * 1e6,
        others_cpu=max(0.0, busy - server_cpu - redis_cpu - wrk_cpu) / wall,
    )


def stored_messages(client: redis.Redis, conversation_ids: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for cid in conversation_ids:
        pipe.llen(f"chatbot:conv:{cid}:messages")
    return sum(pipe.execute())


def wait_settled(client: redis.Redis, still: float = 0.5, timeout: float = 15.0) -> None:
    """Wait until the server has finished the requests wrk left in flight (the Dramatiq queue
    stops growing), so that they count in this run and do not land in the next one."""
    deadline = time.monotonic() + timeout
    last, since = client.llen("dramatiq:default"), time.monotonic()
    while time.monotonic() - since < still:
        if time.monotonic() > deadline:
            raise BenchError(f"the Dramatiq queue still grows {timeout:.0f} s after wrk ended")
        time.sleep(0.1)
        now = client.llen("dramatiq:default")
        if now != last:
            last, since = now, time.monotonic()


def measure_endpoint(
    ws: WebSettings,
    server: Server,
    endpoint: str,
    duration: int,
    client: redis.Redis,
    redis_proc: Proc,
    workdir: Path,
) -> WrkResult:
    """One wrk run of ``ws.connections`` connections against one endpoint, on an emptied Redis
    with fresh conversations; POST runs are checked against what Redis holds afterwards."""
    server.proc.check_alive()
    ids = reset_redis(client, ws.conversations)
    if duration == ws.duration:
        wait_quiet(ws.quiet, ws.quiet_wait)
    if endpoint.startswith("POST"):
        script = lua_script(workdir / "post.lua", ids)
        result = run_wrk(ws, server.base + "/", duration, script, server.proc, redis_proc)
        wait_settled(client)
        stored = stored_messages(client, ids)
        accepted = result.requests - result.non_2xx
        if abs(stored - accepted) > 2 * ws.connections:
            raise BenchError(
                f"{server.name}: wrk saw {accepted} accepted POSTs but Redis holds "
                f"{stored} messages"
            )
        queued = client.llen("dramatiq:default")
        if abs(queued - stored) > 2 * ws.connections:
            raise BenchError(f"{server.name}: {stored} messages but {queued} tasks")
    else:
        result = run_wrk(ws, server.base + "/healthz", duration, None, server.proc, redis_proc)
    errors = result.non_2xx + result.socket_errors
    if errors > result.requests // 100:
        raise BenchError(
            f"{server.name} {endpoint}: {errors} errors in {result.requests} requests; "
            f"server log tail:\n{server.proc.log_tail()}"
        )
    print(
        f"  {server.name:8} {endpoint:45} c={ws.connections:<4} {result.rps:9.1f} req/s  "
        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
        f"server CPU {result.server_cpu_us:5.0f} us/req  "
        f"others {result.others_cpu:4.2f} cores  "
        f"errors {errors}",
        flush=True,
    )
    return result


def bench_web(
    ws: WebSettings, env: dict[str, str], client: redis.Redis, redis_proc: Proc, workdir: Path
) -> dict[tuple[str, str], Cell]:
    """Warm up both servers, then alternate them run by run so drift hits both alike."""
    servers = start_servers(ws, env, workdir)
    cells: dict[tuple[str, str], Cell] = {}
    try:
        print(f"warm-up ({ws.warmup} s per server and endpoint)", flush=True)
        for server in servers:
            for endpoint in ENDPOINTS:
                measure_endpoint(ws, server, endpoint, ws.warmup, client, redis_proc, workdir)
        for rep in range(ws.repeats):
            print(f"measured run {rep + 1}/{ws.repeats} ({ws.duration} s each)", flush=True)
            order = servers if rep % 2 == 0 else list(reversed(servers))
            for endpoint in ENDPOINTS:
                for server in order:
                    result = measure_endpoint(
                        ws, server, endpoint, ws.duration, client, redis_proc, workdir
                    )
                    cells.setdefault((server.name, endpoint), Cell()).runs.append(result)
    finally:
        for server in servers:
            server.proc.stop()
    return cells


def sweep_connections(
    ws: WebSettings,
    levels: tuple[int, ...],
    env: dict[str, str],
    client: redis.Redis,
    redis_proc: Proc,
    workdir: Path,
) -> dict[int, Cell]:
    """The enqueue endpoint under uWSGI at each number of wrk connections: one warm-up run per
    level, then ``ws.repeats`` rounds over all levels (order alternating, so drift hits all)."""
    (server,) = start_servers(ws, env, workdir, names=("uWSGI",))
    endpoint = ENDPOINTS[0]
    cells: dict[int, Cell] = {c: Cell() for c in levels}
    try:
        print(f"warm-up ({ws.warmup} s per level)", flush=True)
        for c in levels:
            wc = replace(ws, connections=c)
            measure_endpoint(wc, server, endpoint, ws.warmup, client, redis_proc, workdir)
        for rep in range(ws.repeats):
            print(f"measured round {rep + 1}/{ws.repeats} ({ws.duration} s each)", flush=True)
            for c in levels if rep % 2 == 0 else tuple(reversed(levels)):
                wc = replace(ws, connections=c)
                result = measure_endpoint(
                    wc, server, endpoint, ws.duration, client, redis_proc, workdir
                )
                cells[c].runs.append(result)
    finally:
        server.proc.stop()
    return cells
