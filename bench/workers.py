"""Worker benchmark: answered messages per second with K Dramatiq worker processes.

Messages are created and enqueued the way the web app does it before any worker runs; then K
separate ``python -m coinex_chatbot.worker`` processes start, as Supervisor runs
them, until every message is acknowledged; every status is checked. The rate comes from the
workers' own ``answered_at`` stamps between the 5th and the 95th percentile (boot excluded).
"""

from __future__ import annotations

import time
from argparse import Namespace
from types import SimpleNamespace

import common
import psutil
from common import BenchError, Lab, Process, Runs


def figures(c: Runs, one: tuple[int, float] | None = None) -> dict[str, object]:
    """The table cells of a point's runs (measure's results); the sweep's with ``one``, the
    process count and rate its rates are compared with."""
    more = {f"vs WS={one[0]}": f"{c.median('rate') / one[1]:.2f}x"} if one else {}
    cells = {"answered/s": f"{c.median('rate'):.0f}", **more}
    cells["wall s (incl. boot)"] = f"{c.median('wall_s'):.1f}"
    if one:
        cells["worker CPU ms/msg"] = f"{c.median('worker_cpu_ms'):.2f}"
    cells["answered/s of each run"] = c.each("rate")
    return cells | {"others' CPU (cores)": c.each("others_cpu", ".2f")}


def preload(lab: Lab, count: int) -> list[str]:
    """Messages (5 per conversation) stored and their tasks enqueued, as POST .../messages does."""
    from coinex_chatbot.knowledge import detect_language
    from coinex_chatbot.store import Store
    from coinex_chatbot.tasks import answer_message

    cids = common.create_conversations(lab.client, (count + 4) // 5)
    store, ids = Store(lab.client, 3600, "chatbot:escalations"), []
    for i in range(count):
        text = common.QUESTIONS[i % len(common.QUESTIONS)]
        ids.append(store.add_message(cids[i // 5], text, detect_language(text)))
        answer_message.send(ids[-1])
    if (queued := lab.client.llen("dramatiq:default")) != count:
        raise BenchError(f"preloaded {count} messages but the Dramatiq queue holds {queued}")
    return ids


def outside_cpu(lab: Lab) -> float:
    """Busy CPU of the machine minus Redis and this process (the workers are subtracted later)."""
    mine = psutil.Process().cpu_times()
    return common.busy_cpu_seconds() - common.cpu_seconds(lab.redis_pid) - mine.user - mine.system


def measure(args: Namespace, processes: int, lab: Lab) -> SimpleNamespace:
    """One run: rate (answered/s), wall_s (start to last answer, boot included), others_cpu
    (cores used outside the benchmark), worker_cpu_ms and redis_cpu_ms (per message, after the
    workers' boot)."""
    ids = preload(lab, args.messages)
    common.wait_quiet(args.quiet, args.quiet_wait)
    started, before = time.time(), outside_cpu(lab)
    workers: list[Process] = []
    samples: list[tuple[float, float, int]] = []  # (workers' CPU, Redis CPU, unacked messages)

    def done() -> bool:  # two O(1) counts: the queue (not fetched yet), .msgs (not acked yet)
        queued, unacked = common.broker_backlog(lab.client)
        cpu = (
            sum(common.cpu_seconds(w.proc.pid) for w in workers),
            common.cpu_seconds(lab.redis_pid),
        )
        if not samples and all(common.worker_ready(w) for w in workers):
            samples.append((*cpu, unacked))  # every worker has booted
        if queued == unacked == 0:
            samples.append((*cpu, unacked))
        return queued == unacked == 0

    try:
        for i in range(processes):
            name = f"dramatiq-{processes}-{i}"
            workers.append(
                common.start_worker(lab.env, lab.workdir, name, args.worker_threads, wait=False)
            )
        common.wait_for(done, 600, "every message to be acknowledged", interval=0.2)
        others = max(0.0, outside_cpu(lab) - before - samples[-1][0]) / (time.time() - started)
    finally:
        for proc in workers:
            proc.stop()
    if len(samples) < 2 or samples[0][2] == 0:
        raise BenchError("the workers finished before they said they were ready")
    (first_cpu, first_redis, booted), (last_cpu, last_redis, _) = samples[0], samples[-1]
    pipe = lab.client.pipeline(transaction=False)
    for mid in ids:
        pipe.hmget(f"chatbot:msg:{mid}", "status", "answered_at")
    rows = pipe.execute()
    statuses = [status for status, _ in rows]
    answered, escalated = statuses.count("answered"), statuses.count("escalated")
    if answered + escalated != len(ids):
        raise BenchError(f"{len(ids) - answered - escalated} messages not completed")
    if (tickets := lab.client.xlen("chatbot:escalations")) != escalated:
        raise BenchError(f"{escalated} escalated messages but {tickets} tickets")
    stamps = sorted(float(at) for _, at in rows)
    p05, p95 = len(stamps) * 5 // 100, len(stamps) * 95 // 100
    if stamps[p95] <= stamps[p05]:
        raise BenchError("the messages were answered within one timestamp tick")
    run = SimpleNamespace(
        rate=(p95 - p05) / (stamps[p95] - stamps[p05]),
        wall_s=stamps[-1] - started,
        others_cpu=others,
        worker_cpu_ms=(last_cpu - first_cpu) / booted * 1000,
        redis_cpu_ms=(last_redis - first_redis) / booted * 1000,
    )
    print(
        f"  {processes} worker process(es) x {args.worker_threads} threads: {run.rate:8.1f} "
        f"answered/s (wall {run.wall_s:5.1f} s incl. boot; {answered} answered, {escalated} "
        f"escalated; others {others:4.2f} cores; CPU/msg worker {run.worker_cpu_ms:.2f} ms, "
        f"redis {run.redis_cpu_ms:.2f} ms)"
    )
    return run


def bench_workers(args: Namespace, counts: tuple[int, ...], lab: Lab) -> dict[int, Runs]:
    """``args.worker_repeats`` rounds over the process counts, the order alternating."""
    cells = {n: Runs() for n in counts}
    for rep in range(args.worker_repeats):
        print(f"worker round {rep + 1}/{args.worker_repeats} ({args.messages} messages)")
        for n in counts if rep % 2 == 0 else counts[::-1]:
            cells[n].runs.append(measure(args, n, lab))
    return cells
