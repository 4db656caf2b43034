"""Benchmarks of this project: ``bench/run.py [PART] [--help]``; without a part (``make bench``)
it runs app, sweep and memory in turn. The parts (README, "Benchmarks"): ``app`` (below),
``sweep`` (bench/sweep.py), ``memory`` (bench/memory.py) and ``deploy`` (bench/deploy.py); each
writes its own section of docs/benchmarks.md, between its markers.

The app part: uWSGI (the role's uwsgi.ini.j2) against gunicorn (sync workers), the same number
of processes, and uWSGI with CHATBOT_REDIS_WAIT_REPLICAS=1, on the enqueue endpoint and /healthz
at 64 wrk connections; then 1 against 2 Dramatiq processes on preloaded messages. One private
redis-server with one replica, rate limits off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import common
import web
import workers
from common import Runs

NOISY_CORES = 0.5  # background load above which a verdict is only indicative


def verdict(ok: bool, cells: Iterable[Runs]) -> str:
    background = max(r.others_cpu for c in cells for r in c.runs)
    if background <= NOISY_CORES:
        return "**met**" if ok else "**not met**"
    used = f"other jobs used up to {background:.2f} of the {os.cpu_count()} cores"
    return f"**{'met' if ok else 'not met'}** (indicative only: {used} during these runs)"


def app(argv: list[str]) -> int:
    args = common.parser("app", __doc__.split("\n\n")[1]).parse_args(argv)
    started, host = time.monotonic(), common.machine()
    servers = ("uWSGI", "gunicorn", web.WAIT1)
    with common.lab("coinex-bench-") as lab:
        print(f"web benchmark: {args}")
        cells = web.bench_web(args, servers, web.ENDPOINTS, (64,), lab)
        print("worker benchmark")
        tasks = workers.bench_workers(args, (1, 2), lab)
    post, health = ({s: cells[(s, e, 64)] for s in servers} for e in web.ENDPOINTS)
    rows = [
        {"endpoint": f"`{e}`", "server": s, **web.figures(cells[(s, e, 64)])}
        for e in web.ENDPOINTS
        for s in servers
    ]
    threads = {"threads each": args.worker_threads}
    worker_rows = [
        {"worker processes": n, **threads, **workers.figures(c)} for n, c in tasks.items()
    ]
    uwsgi = common.options_text(web.OPTIONS, web.uwsgi_vars(args))
    gunicorn = " ".join(web.gunicorn_argv(0, args)).replace("127.0.0.1:0", "127.0.0.1:PORT")
    tables = {"web_table": common.table(rows, "llrrrrrll")}
    tables["worker_table"] = common.table(worker_rows, "rrrrll")
    text = common.section("app", argv, host, started, args=args, verdict=verdict, post=post,
        health=health, workers=tasks, env=lab.env, uwsgi=uwsgi, gunicorn=gunicorn,
        wrk=" ".join(web.wrk_argv(64, "URL", args.duration, Path("DATA"))), **tables)  # fmt: skip
    return common.publish(args, text, "app")


def main(argv: list[str]) -> int:
    parts = ("app", "sweep", "memory", "deploy")
    if not argv:  # make bench: every part but deploy, in turn
        for part in parts[:3]:
            print(f"=== bench/run.py {part} ===")
            main([part])
        return 0
    part, rest = (argv[0], argv[1:]) if argv[0] in parts else ("app", argv)
    return app(rest) if part == "app" else __import__(part).main(rest)


if __name__ == "__main__":
    common.cli(main, "bench failed")
