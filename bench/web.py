"""Web benchmark: wrk (bench/wrk/post.lua) against the app under uWSGI (the role's uwsgi.ini.j2)
and under gunicorn, the same processes and the same Redis. Used by the app and sweep parts."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import common
import psutil
from common import VENV_BIN, BenchError, Lab, Process, Runs

Server = tuple[Process, int]  # the server's process (group) and its port
ENDPOINTS = ("POST /api/v1/conversations/<id>/messages", "GET /healthz")
# uWSGI again with CHATBOT_REDIS_WAIT_REPLICAS=1 (what the app hosts get with Sentinel): each
# accepted message waits for the replica's acknowledgement before its 202 (issue 12's durability).
# The replica replicates the Redis of every server's runs, so only the WAIT differs between them.
WAIT1 = "uWSGI+WAIT1"
OPTIONS = {"disable-logging": "true"}  # no request log in uWSGI: gunicorn has none by default


def figures(c: Runs) -> dict[str, object]:
    """The table cells of a point's runs (run_wrk's results): medians, errors, each run."""
    return {
        "req/s": f"{c.median('rps'):.0f}",
        "p50 ms": f"{c.median('p50_ms'):.2f}",
        "p99 ms": f"{c.median('p99_ms'):.2f}",
        "server CPU µs/req": f"{c.median('server_cpu_us'):.0f}",
        "errors": sum(r.errors for r in c.runs),
        "req/s of each run": c.each("rps"),
        "others' CPU (cores)": c.each("others_cpu", ".2f"),
    }


def uwsgi_vars(args: Namespace) -> dict[str, object]:
    """The role variables of the runs' uWSGI (no recycling: gunicorn has none either)."""
    sizes = {"processes": args.processes, "threads": args.uwsgi_threads}
    return {**{f"coinex_chatbot_uwsgi_{k}": v for k, v in sizes.items()}, **common.NO_RECYCLING}


def gunicorn_argv(port: int, args: Namespace) -> list[str]:
    """gunicorn with the role's listen queue and request timeout (harakiri)."""
    role = common.role_vars()
    return [
        str(VENV_BIN / "gunicorn"),
        "--workers", str(args.processes),
        "--worker-class", "sync",
        "--bind", f"127.0.0.1:{port}",
        "--backlog", str(role["coinex_chatbot_uwsgi_listen"]),
        "--timeout", str(role["coinex_chatbot_uwsgi_harakiri"]),
        common.APP,
    ]  # fmt: skip


def wrk_argv(connections: int, url: str, duration: int, data: Path | None) -> list[str]:
    argv = [common.WRK, "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s"]
    script = common.BENCH / "wrk" / "post.lua"
    return [*argv, "-s", str(script), url, *(["--", str(data)] if data else [])]


@contextlib.contextmanager
def servers(args: Namespace, lab: Lab, names: tuple[str, ...]) -> Iterator[dict[str, Server]]:
    """The servers by name, each in its own directory (Prometheus files included), ready."""
    started: dict[str, Server] = {}
    replica = common.start_replica(lab) if WAIT1 in names else None
    try:
        for name in names:
            base, port = lab.workdir / name, common.free_port()
            (base / "prometheus").mkdir(parents=True)
            if name.startswith("uWSGI"):
                ini = common.uwsgi_ini(base, port, OPTIONS, **uwsgi_vars(args))
                env = {**lab.env, "CHATBOT_REDIS_WAIT_REPLICAS": "1" if name == WAIT1 else "0"}
                started[name] = common.start_uwsgi(base, env, ini, port), port
            else:
                env = {**lab.env, "PROMETHEUS_MULTIPROC_DIR": str(base / "prometheus")}
                proc = common.spawn(name, gunicorn_argv(port, args), env, base)
                started[name] = common.wait_ready(proc, port), port
        yield started
    finally:
        for proc, _ in started.values():
            proc.stop(signal.SIGINT)
        if replica is not None:
            replica.stop()


def run_wrk(c: int, server: Server, path: str, duration: int, data: Path | None, lab: Lab):
    """One wrk run: its figures and the CPU the server (all its processes), Redis, wrk and the
    rest of the machine (others) used."""

    def cpu() -> tuple[float, ...]:
        mine = psutil.Process().cpu_times()  # wrk: a child this process reaps
        used = [common.cpu_seconds(pid) for pid in (server[0].proc.pid, lab.redis_pid)]
        wrk = mine.children_user + mine.children_system
        return *used, wrk, common.busy_cpu_seconds(), time.monotonic()

    before = cpu()
    argv = wrk_argv(c, f"http://127.0.0.1:{server[1]}{path}", duration, data)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    used, redis_cpu, wrk_cpu, busy, wall = (a - b for a, b in zip(cpu(), before, strict=True))
    if out.returncode != 0 or "\nJSON " not in out.stdout:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr}\n{out.stdout}")
    r = SimpleNamespace(**json.loads(out.stdout.rsplit("\nJSON ", 1)[1]))
    r.rps, r.errors = r.requests / r.seconds, r.non_2xx + r.socket_errors
    r.server_cpu_us = used / max(r.requests, 1) * 1e6
    r.others_cpu = max(0.0, busy - used - redis_cpu - wrk_cpu) / wall
    return r


def measure(args: Namespace, server: Server, endpoint: str, duration: int, lab: Lab):
    """One wrk run of ``args.connections`` connections against one endpoint, on an emptied
    Redis with fresh conversations; POST runs are checked against what Redis holds afterwards."""
    proc = server[0]
    proc.check()
    ids = common.create_conversations(lab.client, args.conversations)
    if duration == args.duration:
        common.wait_quiet(args.quiet, args.quiet_wait)
    if endpoint.startswith("GET"):
        r = run_wrk(args.connections, server, "/healthz", duration, None, lab)
    else:
        data = common.lua_data(lab.workdir / "post-data.lua", ids)
        r = run_wrk(args.connections, server, "/", duration, data, lab)
        seen = [-1, time.monotonic()]  # wrk left requests in flight: until the queue is still

        def settled() -> bool:
            if (queued := lab.client.llen("dramatiq:default")) != seen[0]:
                seen[:] = [queued, time.monotonic()]
            return time.monotonic() - seen[1] >= 0.5

        common.wait_for(settled, 15, "the Dramatiq queue to stop growing", interval=0.1)
        pipe = lab.client.pipeline(transaction=False)
        for cid in ids:
            pipe.llen(f"chatbot:conv:{cid}:messages")
        stored, accepted = sum(pipe.execute()), r.requests - r.non_2xx
        if max(abs(stored - accepted), abs(seen[0] - stored)) > 2 * args.connections:
            raise BenchError(
                f"{proc.name}: wrk saw {accepted} accepted POSTs, Redis holds {stored} "
                f"messages and {seen[0]} tasks"
            )
    if r.errors > r.requests // 100:
        raise BenchError(
            f"{proc.name} {endpoint}: {r.errors} errors in {r.requests} requests; "
            f"server log tail:\n{proc.output()[-3000:]}"
        )
    print(
        f"  {proc.name:8} {endpoint:45} c={args.connections:<4} {r.rps:9.1f} req/s  p50 "
        f"{r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  server CPU {r.server_cpu_us:5.0f} us/req  "
        f"others {r.others_cpu:4.2f} cores  errors {r.errors}"
    )
    return r


def bench_web(
    args: Namespace, names: tuple[str, ...], endpoints: tuple[str, ...], levels: tuple, lab: Lab
) -> dict[tuple[str, str, int], Runs]:
    """Every (server, endpoint, connections) point: a warm-up run each, then ``args.repeats``
    rounds over all points, the order alternating so that drift hits all alike."""
    cells: dict[tuple[str, str, int], Runs] = {}
    with servers(args, lab, names) as started:
        points = [(n, e, c) for e in endpoints for c in levels for n in started]
        for rep in range(-1, args.repeats):  # -1: the warm-up
            duration = args.warmup if rep < 0 else args.duration
            print(f"round {rep + 1} of {args.repeats} ({duration} s per point)")
            for name, endpoint, c in points if rep % 2 == 0 else points[::-1]:
                point = Namespace(**{**vars(args), "connections": c})
                r = measure(point, started[name], endpoint, duration, lab)
                if rep >= 0:
                    cells.setdefault((name, endpoint, c), Runs()).runs.append(r)
    return cells
