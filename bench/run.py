"""Benchmark of the app on this machine; writes the "App: web and workers" part of
docs/benchmarks.md (between ``<!-- bench:app:start -->`` and ``<!-- bench:app:end -->``).

Run ``make bench`` or ``.venv/bin/python bench/run.py [app]`` from the checkout (``--help`` for
the knobs). Parts: ``app`` (below) and ``deploy`` (``bench/run.py deploy``: deploy
speed of playbooks/deploy.yml on systemd containers, see bench/deploy.py), ``sweep``
(bench/sweep.py: uWSGI req/s and p99 against wrk connections, Dramatiq messages/s against WS,
tables and docs/img/bench-*.png) and ``memory`` (bench/memory.py: RSS after 100,000 requests /
20,000 messages, jemalloc vs glibc, gc.freeze(), uWSGI recycling). ``bench/run.py PART --help``
gives a part's knobs. Without arguments (``make bench``) it runs app, sweep and memory in turn;
options without a part go to the app part. In one run the app part:

1. starts a private redis-server (free loopback port, no persistence);
2. web: starts the app under uWSGI (pyuwsgi, production-like options) and under gunicorn (sync
   workers), the same number of processes and the same environment, and drives
   ``POST /api/v1/conversations/<id>/messages`` (round-robin over many fresh conversations, a
   JSON question per request) and ``GET /healthz`` with wrk at 64 connections; warm-up, then
   alternating measured runs, medians;
3. workers: preloads messages the way the API does, starts 1 and then 2 separate
   ``dramatiq coinex_chatbot.tasks --processes 1 --threads T`` processes (as Supervisor runs
   them) and measures answered messages per second;
4. stops everything it started and writes the table, the command and the machine.

Rate limits are switched off for the run (CHATBOT_RATE_LIMIT_CONVERSATION=0,
CHATBOT_RATE_LIMIT_IP=0): the benchmark measures capacity, not the limiter. Needs /usr/bin/wrk,
/usr/bin/redis-server, and the project's .venv with the app installed (``scripts/setup``).
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

DOC = ROOT / "docs" / "benchmarks.md"
NOTES = Path(__file__).resolve().parent / "app_notes.md"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    web = p.add_argument_group("web")
    web.add_argument("--processes", type=int, default=4, help="uWSGI and gunicorn processes")
    web.add_argument("--uwsgi-threads", type=int, default=2, help="threads per uWSGI process")
    web.add_argument("--listen", type=int, default=128, help="listen backlog of both servers")
    web.add_argument("--connections", type=int, default=64)
    web.add_argument("--wrk-threads", type=int, default=1)
    web.add_argument(
        "--wrk-cpus", default="", help="taskset CPU list for wrk (default: not pinned)"
    )
    web.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run")
    web.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server/endpoint")
    web.add_argument("--repeats", type=int, default=3, help="measured runs per server/endpoint")
    web.add_argument("--conversations", type=int, default=2000, help="conversations POSTed to")
    web.add_argument("--uwsgi-extra", action="append", default=[], help="extra uWSGI option")
    web.add_argument("--gunicorn-extra", action="append", default=[], help="extra gunicorn option")
    wk = p.add_argument_group("workers")
    wk.add_argument("--worker-threads", type=int, default=4, help="--threads of each worker")
    wk.add_argument("--messages", type=int, default=5000, help="messages preloaded per run")
    wk.add_argument("--worker-repeats", type=int, default=3, help="runs per process count")
    p.add_argument(
        "--quiet",
        type=float,
        default=0.3,
        help="before each measured run, wait until other jobs use less than this many cores",
    )
    p.add_argument("--quiet-wait", type=float, default=30, help="... for at most this many s")
    p.add_argument("--only", choices=("all", "web", "workers"), default="all")
    p.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    p.add_argument("--output", type=Path, default=DOC)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["deploy"]:
        from deploy import main as deploy_main

        return deploy_main(argv[1:])
    if argv[:1] == ["sweep"]:
        from sweep import main as sweep_main

        return sweep_main(argv[1:])
    if argv[:1] == ["memory"]:
        from memory import main as memory_main

        return memory_main(argv[1:])
    if argv[:1] == ["app"]:
        argv = argv[1:]
    args = parse_args(argv)
    for path in (WRK, REDIS_SERVER, VENV_BIN / "uwsgi", VENV_BIN / "gunicorn"):
        if not Path(path).exists():
            raise BenchError(f"{path} is missing: run scripts/setup")
    started = time.monotonic()
    host = machine()
    workdir = Path(tempfile.mkdtemp(prefix="coinex-bench-"))
    redis_proc, redis_url = start_redis(workdir)
    env = app_env(redis_url, workdir / "prometheus-workers")
    os.environ.update(env)  # this process enqueues too: coinex_chatbot.tasks reads REDIS_URL
    ok = False
    try:
        import redis
        from report import END, START, section, web_section, worker_section
        from web import WebSettings, bench_web, gunicorn_argv, uwsgi_argv, wrk_argv
        from workers import WorkerSettings, bench_workers

        client = redis.Redis.from_url(redis_url, decode_responses=True)
        ws = WebSettings(
            processes=args.processes,
            uwsgi_threads=args.uwsgi_threads,
            listen=args.listen,
            connections=args.connections,
            wrk_threads=args.wrk_threads,
            wrk_cpus=args.wrk_cpus,
            duration=args.duration,
            warmup=args.warmup,
            repeats=args.repeats,
            conversations=args.conversations,
            quiet=args.quiet,
            quiet_wait=args.quiet_wait,
            uwsgi_extra=tuple(args.uwsgi_extra),
            gunicorn_extra=tuple(args.gunicorn_extra),
        )
        wk = WorkerSettings(
            args.worker_threads, args.messages, args.worker_repeats, args.quiet, args.quiet_wait
        )
        web_lines: list[str] = []
        worker_lines: list[str] = []
        if args.only in ("all", "web"):
            print(f"web benchmark: {ws}", flush=True)
            web_lines = web_section(ws, bench_web(ws, env, client, redis_proc, workdir))
        if args.only in ("all", "workers"):
            print(f"worker benchmark: {wk}", flush=True)
            worker_lines = worker_section(wk, bench_workers(wk, env, client, redis_proc, workdir))
        elapsed = time.monotonic() - started
        shown = {k: v for k, v in env.items() if k.startswith(("CHATBOT_", "SECRET"))}
        settings_lines = [
            "- Environment of every app process: "
            + ", ".join(f"`{k}={v}`" for k, v in shown.items())
            + ", `REDIS_URL` = the private redis-server, `PROMETHEUS_MULTIPROC_DIR` = a fresh "
            "directory per server (and one for the workers). Python request logs (one JSON line "
            "per request) go to a file, as under Supervisor; uWSGI's own request log is off "
            "(`--disable-logging`), gunicorn has no access log (its default).",
            f"- uWSGI: `{shlex.join(uwsgi_argv(0, ws)).replace('127.0.0.1:0', '127.0.0.1:PORT')}`",
            "- gunicorn: "
            f"`{shlex.join(gunicorn_argv(0, ws)).replace('127.0.0.1:0', '127.0.0.1:PORT')}`",
            f"- wrk: `{shlex.join(wrk_argv(ws, 'URL', ws.duration, Path('post.lua')))}` "
            + (
                f"(pinned to CPU {ws.wrk_cpus} with taskset; servers and Redis unpinned)"
                if ws.wrk_cpus
                else "(not pinned; servers, Redis and wrk share both cores)"
            )
            + f"; the POST script spreads requests over {ws.conversations} conversations.",
            f"- Workers: `{VENV_BIN.relative_to(ROOT)}/dramatiq coinex_chatbot.tasks --processes 1 "
            f"--threads {wk.threads}`, started once or twice as separate processes.",
            f"- Shared machine: before each measured run the script waits (at most "
            f"{args.quiet_wait:.0f} s) until other jobs use less than {args.quiet} cores; the "
            '"others\' CPU" columns show what they used during each run.',
            f"- Whole benchmark took {elapsed / 60:.1f} min.",
        ]
        command = ".venv/bin/python bench/run.py app" + (" " + shlex.join(argv) if argv else "")
        versions = {
            "uWSGI (pyuwsgi)": tool_version([str(VENV_BIN / "uwsgi"), "--version"]),
            "gunicorn": tool_version([str(VENV_BIN / "gunicorn"), "--version"])
            .split()[-1]
            .strip(")"),
            "wrk": tool_version([WRK, "-v"]).split()[1],
            "redis-server": tool_version([REDIS_SERVER, "--version"]).split()[2].split("=")[-1],
        }
        text = section(
            command=command,
            machine=host,
            versions=versions,
            settings_lines=settings_lines,
            web=web_lines,
            workers=worker_lines,
            notes=NOTES.read_text() if NOTES.exists() else "",
        )
        text = text.replace(f"{ROOT}/", "")
        print("\n" + text)
        if args.only != "all":
            print("partial run (--only): docs left alone")
        elif not args.no_write:
            write_section(args.output, text, START, END)
            print(f"wrote {args.output}")
        print(f"benchmark took {elapsed:.0f} s")
        ok = True
    finally:
        redis_proc.stop()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", file=sys.stderr)
    return 0


ALL_PARTS = ("app", "sweep", "memory")  # what `make bench` (no arguments) runs, in turn


def run_all() -> int:
    for part in ALL_PARTS:
        print(f"=== bench/run.py {part} ===", flush=True)
        main([part])
    return 0


if __name__ == "__main__":
    cli(lambda argv: main(argv) if argv else run_all(), "bench failed", sys.argv[1:])
