"""Scaling sweeps: uWSGI req/s and p99 latency against wrk connections on the enqueue endpoint,
and Dramatiq answered messages/s against the number of worker processes (WS).

Writes docs/img/bench-rps-vs-connections.png, docs/img/bench-messages-vs-ws.png and the "Scaling"
part of docs/benchmarks.md (between ``<!-- bench:sweep:start -->`` and
``<!-- bench:sweep:end -->``). Run ``.venv/bin/python bench/run.py sweep`` (``--help`` for the
knobs). Same mechanisms as the app part (``bench/run.py app``): each point is a
``web.measure_endpoint`` run (uWSGI with the app part's options, wrk POSTing over fresh
conversations, checked against Redis) or a ``workers.measure`` run (messages preloaded, WS
separate ``dramatiq --processes 1`` programs), on one private redis-server.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import redis
from common import (
    REDIS_SERVER,
    ROOT,
    VENV_BIN,
    WRK,
    BenchError,
    app_env,
    cli,
    machine,
    start_redis,
    tool_version,
    write_section,
)
from plots import messages_vs_processes, rps_vs_connections
from report import each_run
from web import Cell, WebSettings, sweep_connections, uwsgi_argv, wrk_argv
from workers import WorkerCell, WorkerSettings, bench_workers

DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"
RPS_PNG = "bench-rps-vs-connections.png"
WS_PNG = "bench-messages-vs-ws.png"
START = "<!-- bench:sweep:start -->"
END = "<!-- bench:sweep:end -->"
NOTES = (
    "<!-- bench:sweep:notes:start (kept by bench/sweep.py) -->",
    "<!-- bench:sweep:notes:end -->",
)


def _ints(value: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(x) for x in value.split(",") if x)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {value}") from exc
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"want positive numbers: {value}")
    return tuple(sorted(set(numbers)))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=_ints, default=(1, 4, 16, 64, 128), help="wrk levels")
    p.add_argument("--processes", type=int, default=4, help="uWSGI processes")
    p.add_argument("--uwsgi-threads", type=int, default=2, help="threads per uWSGI process")
    p.add_argument("--duration", type=int, default=8, help="seconds per measured wrk run")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per level")
    p.add_argument("--repeats", type=int, default=2, help="measured runs per level")
    p.add_argument("--ws", type=_ints, default=(1, 2, 3, 4), help="worker process counts")
    p.add_argument("--worker-threads", type=int, default=4, help="--threads of each worker")
    p.add_argument("--messages", type=int, default=5000, help="messages preloaded per run")
    p.add_argument("--worker-repeats", type=int, default=2, help="runs per process count")
    p.add_argument("--quiet", type=float, default=0.3, help="wait for less load than this (cores)")
    p.add_argument("--quiet-wait", type=float, default=20, help="... for at most this many s")
    p.add_argument("--no-write", action="store_true", help="print only, leave docs alone")
    args = p.parse_args(argv)
    args.argv = argv
    return args


def web_table(cells: dict[int, Cell]) -> list[str]:
    lines = [
        "| connections | req/s | p50 ms | p99 ms | server CPU µs/req | errors "
        "| req/s of each run | others' CPU (cores) |",
        "|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for c, cell in sorted(cells.items()):
        runs = each_run(cell.runs, "rps")
        others = each_run(cell.runs, "others_cpu", ".2f")
        lines.append(
            f"| {c} | {cell.rps:.0f} | {cell.p50:.2f} | {cell.p99:.2f} | {cell.cpu_us:.0f} "
            f"| {cell.errors} | {runs} | {others} |"
        )
    return lines


def worker_table(cells: dict[int, WorkerCell]) -> list[str]:
    lines = [
        "| WS (processes) | answered/s | vs WS=1 | wall s (incl. boot) | worker CPU ms/msg "
        "| answered/s of each run | others' CPU (cores) |",
        "|--:|--:|--:|--:|--:|---|---|",
    ]
    one = cells[min(cells)].rate
    for n, cell in sorted(cells.items()):
        runs = each_run(cell.runs, "rate")
        others = each_run(cell.runs, "others_cpu", ".2f")
        lines.append(
            f"| {n} | {cell.rate:.0f} | {cell.rate / one:.2f}x | {cell.wall:.1f} "
            f"| {cell.worker_cpu:.2f} | {runs} | {others} |"
        )
    return lines


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for path in (WRK, REDIS_SERVER, VENV_BIN / "uwsgi", VENV_BIN / "dramatiq"):
        if not Path(path).exists():
            raise BenchError(f"{path} is missing: run scripts/setup")
    host = machine()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="coinex-bench-sweep-"))
    redis_proc, redis_url = start_redis(workdir)
    env = app_env(redis_url, workdir / "prometheus-workers")
    os.environ.update(env)  # this process enqueues too: coinex_chatbot.tasks reads REDIS_URL
    ws = WebSettings(
        processes=args.processes,
        uwsgi_threads=args.uwsgi_threads,
        duration=args.duration,
        warmup=args.warmup,
        repeats=args.repeats,
        quiet=args.quiet,
        quiet_wait=args.quiet_wait,
    )
    wk = WorkerSettings(
        args.worker_threads,
        args.messages,
        args.worker_repeats,
        args.quiet,
        args.quiet_wait,
        args.ws,
    )
    try:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        print(f"uWSGI sweep over connections {args.connections}: {ws}", flush=True)
        web = sweep_connections(ws, args.connections, env, client, redis_proc, workdir)
        print(f"worker sweep over WS {args.ws}: {wk}", flush=True)
        workers = bench_workers(wk, env, client, redis_proc, workdir)
    except BaseException:
        print(f"logs kept in {workdir}", file=sys.stderr)
        raise
    finally:
        redis_proc.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    load_end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    stamp = f"{host['date']}, {host['cores']} cores"
    uwsgi_cmd = shlex.join(uwsgi_argv(0, ws)).replace("127.0.0.1:0", "127.0.0.1:PORT")
    wrk_cmd = shlex.join(wrk_argv(ws, "URL", ws.duration, Path("post.lua"))).replace(
        f"-c {ws.connections} ", "-c N "
    )
    if not args.no_write:
        rps_vs_connections(
            web,
            IMG / RPS_PNG,
            f"uWSGI {ws.processes}x{ws.uwsgi_threads}, POST .../messages ({stamp})",
        )
        messages_vs_processes(
            workers, IMG / WS_PNG, f"Dramatiq --threads {wk.threads}, {wk.messages} msgs ({stamp})"
        )
    versions = [
        f"uWSGI {tool_version([str(VENV_BIN / 'uwsgi'), '--version'])} (pyuwsgi)",
        tool_version([WRK, "-v"]).split(" [")[0],
        tool_version([REDIS_SERVER, "--version"]).split(" sha=")[0],
    ]
    lines = [
        START,
        "## Scaling: uWSGI connections, Dramatiq processes",
        "",
        f"Written by `bench/run.py sweep` on {host['date']} in {elapsed / 60:.1f} min. Command: "
        f"`{shlex.join(['.venv/bin/python', 'bench/run.py', 'sweep', *args.argv])}` "
        "(part of `make bench`).",
        "",
        f"Machine: {host['cpu']}, {host['cores']} cores, {host['ram']} RAM, {host['os']}, kernel "
        f"{host['kernel']}, Python {host['python']}; {', '.join(versions)}. Load average "
        f"(/proc/loadavg) {host['load']} at the start, {load_end} at the end: a shared machine "
        "(other jobs ran meanwhile, see the others' CPU columns); compare points only within "
        "this run.",
        "",
        "### uWSGI: enqueue endpoint against wrk connections",
        "",
        f"`{uwsgi_cmd}`; wrk `{wrk_cmd}`, N = {', '.join(map(str, args.connections))}; the POST "
        "script spreads "
        f"requests over {ws.conversations} fresh conversations per run (Redis emptied before "
        f"each run; stored messages and queued tasks checked against wrk's count). One "
        f"{ws.warmup} s warm-up per level, then {ws.repeats} round(s) of {ws.duration} s runs "
        "over all levels (order alternating); medians. No worker consumes meanwhile.",
        "",
        *web_table(web),
        "",
        f"![uWSGI req/s and p99 against connections](img/{RPS_PNG})",
        "",
        "### Dramatiq: answered messages/s against WS",
        "",
        f"{wk.messages} messages preloaded as the API does (queued before any worker starts), "
        f"then WS separate `dramatiq coinex_chatbot.tasks --processes 1 --threads {wk.threads}` "
        "programs (as Supervisor's numprocs); answered/s from the workers' own `answered_at` "
        "stamps between the 5th and 95th percentile (boot excluded), every status checked; "
        f"median of {wk.repeats} run(s) per WS (order alternating). Redis runs on the same "
        f"{host['cores']} cores.",
        "",
        *worker_table(workers),
        "",
        f"![Dramatiq answered messages/s against WS](img/{WS_PNG})",
        END,
        "",
    ]
    text = "\n".join(lines).replace(f"{ROOT}/", "")
    print("\n" + text)
    if not args.no_write:
        write_section(DOC, text, START, END, keep=NOTES)
        print(f"wrote {DOC} and {IMG / RPS_PNG}, {IMG / WS_PNG}")
    return 0


if __name__ == "__main__":
    cli(main, "bench/run.py sweep", sys.argv[1:])
