"""Scaling sweeps: uWSGI req/s and p99 latency against wrk connections on the enqueue endpoint,
and Dramatiq answered messages/s against the number of worker processes (WS).

The runs of the app part (web.bench_web, workers.bench_workers) at more points; also draws
img/bench-rps-vs-connections.png and img/bench-messages-vs-ws.png next to --output.
"""

from __future__ import annotations

import time
from pathlib import Path

import common
import web
import workers

RPS_PNG, WS_PNG = "bench-rps-vs-connections.png", "bench-messages-vs-ws.png"


def ints(value: str) -> tuple[int, ...]:
    return tuple(sorted({int(x) for x in value.split(",")}))


def main(argv: list[str]) -> int:
    shorter = {"duration": 8, "warmup": 2, "repeats": 2, "worker_repeats": 2, "quiet_wait": 20}
    p = common.parser("sweep", __doc__, **shorter)
    p.add_argument("--connections", type=ints, default=(1, 4, 16, 64, 128), help="wrk levels")
    p.add_argument("--ws", type=ints, default=(1, 2, 3, 4), help="worker process counts")
    args = p.parse_args(argv)
    host, started = common.machine(), time.monotonic()
    with common.lab("coinex-bench-sweep-") as lab:
        print(f"uWSGI sweep over connections {args.connections}: {args}")
        cells = web.bench_web(args, ("uWSGI",), web.ENDPOINTS[:1], args.connections, lab)
        uwsgi = {c: cells[("uWSGI", web.ENDPOINTS[0], c)] for c in args.connections}
        print(f"worker sweep over WS {args.ws}")
        tasks = workers.bench_workers(args, args.ws, lab)
    if not args.no_write:
        from plots import plot

        stamp, img = f"{host['date']}, {host['cores']} cores", args.output.parent / "img"
        title = f"uWSGI {args.processes}x{args.uwsgi_threads}, POST .../messages ({stamp})"
        plot(uwsgi, "rps", img / RPS_PNG, title, x="wrk connections", y="requests/s (median)")
        title = f"Dramatiq --threads {args.worker_threads}, {args.messages} msgs ({stamp})"
        x, y = "Dramatiq worker processes (WS)", "answered messages/s"
        plot(tasks, "rate", img / WS_PNG, title, x=x, y=y)
    one = (args.ws[0], tasks[args.ws[0]].median("rate"))  # what "vs" compares with
    web_rows = [{"connections": c, **web.figures(cell)} for c, cell in uwsgi.items()]
    ws_rows = [{"WS (processes)": n, **workers.figures(c, one)} for n, c in tasks.items()]
    wrk = " ".join(web.wrk_argv(0, "URL", args.duration, Path("DATA"))).replace("-c 0", "-c N")
    return common.publish(
        args,
        common.section(
            "sweep",
            argv,
            host,
            started,
            args=args,
            wrk=wrk,
            uwsgi=common.options_text(web.OPTIONS, web.uwsgi_vars(args)),
            rps_png=RPS_PNG,
            ws_png=WS_PNG,
            web_table=common.table(web_rows, "rrrrrrll"),
            worker_table=common.table(ws_rows, "rrrrrll"),
        ),
        "sweep",
    )


if __name__ == "__main__":
    common.cli(main, "bench/run.py sweep")
