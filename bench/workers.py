"""Worker benchmark: answered messages per second with 1 and with 2 Dramatiq worker processes.

Messages are created and enqueued the way the web app does it (Store.add_message, then
answer_message.send) before any worker runs; then K separate ``dramatiq coinex_chatbot.tasks
--processes 1 --threads T`` processes start, as Supervisor runs them, and the script polls the
Dramatiq queue in Redis until every message is acknowledged, then checks every status. The rate
is taken from the workers' own ``answered_at`` stamps between the 5th and the 95th percentile,
so worker boot (imports, knowledge-base load) and the last stragglers do not count; the wall time
is reported as well.
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from common import VENV_BIN, BenchError, Proc, broker_backlog, busy_cpu_seconds, wait_quiet
from questions import QUESTIONS

MESSAGES_PER_CONVERSATION = 5


@dataclass(frozen=True)
class WorkerSettings:
    threads: int
    messages: int
    repeats: int
    quiet: float = 0.3
    quiet_wait: float = 30.0
    counts: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class WorkerRun:
    processes: int
    rate: float  # answered per second, 5th..95th percentile of answered_at
    wall_s: float  # from starting the workers to the last answer (includes boot)
    others_cpu: float  # CPU used by processes outside this benchmark meanwhile, in cores
    worker_cpu_ms: float  # CPU of the worker processes per message, after their boot
    redis_cpu_ms: float  # CPU of redis-server per message, same window
    answered: int
    escalated: int


@dataclass
class WorkerCell:
    runs: list[WorkerRun] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.runs)

    @property
    def worker_cpu(self) -> float:
        return statistics.median(r.worker_cpu_ms for r in self.runs)

    @property
    def redis_cpu(self) -> float:
        return statistics.median(r.redis_cpu_ms for r in self.runs)

    @property
    def wall(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)


def preload(client: redis.Redis, count: int) -> list[str]:
    """Create conversations and messages and enqueue their tasks, as POST .../messages does."""
    from coinex_chatbot.knowledge import detect_language
    from coinex_chatbot.store import Store
    from coinex_chatbot.tasks import answer_message

    client.flushdb()
    store = Store(client, 3600, "chatbot:escalations")
    ids: list[str] = []
    cid = ""
    for i in range(count):
        if i % MESSAGES_PER_CONVERSATION == 0:
            cid = store.create_conversation(None)
        text = QUESTIONS[i % len(QUESTIONS)]
        mid = store.add_message(cid, text, detect_language(text))
        answer_message.send(mid)
        ids.append(mid)
    queued = client.llen("dramatiq:default")
    if queued != count:
        raise BenchError(f"preloaded {count} messages but the Dramatiq queue holds {queued}")
    return ids


@dataclass
class Sample:
    """CPU seconds of the workers and of Redis, and the messages still unacked, at one moment."""

    workers_cpu: float
    redis_cpu: float
    unacked: int


def wait_answered(
    client: redis.Redis, count: int, workers: list[Proc], redis_proc: Proc, timeout: float
) -> tuple[Sample, Sample]:
    """Poll two O(1) Redis counts until every Dramatiq message is acknowledged.

    The queue list holds what no worker fetched yet and the ``.msgs`` hash what is not acked yet;
    statuses are checked once at the end (polling 5,000 hashes would load Redis and skew the
    measurement). Returns CPU samples taken once every worker said it is ready (boot done) and at
    the end.
    """
    deadline = time.monotonic() + timeout
    first: Sample | None = None
    while True:
        for proc in workers:
            proc.check_alive()
        queued, unacked = broker_backlog(client)
        sample = Sample(sum(p.cpu_seconds() for p in workers), redis_proc.cpu_seconds(), unacked)
        if first is None and all("ready for action" in p.log_tail(400) for p in workers):
            first = sample
        if queued == 0 and unacked == 0:
            if first is None or first.unacked == 0:
                raise BenchError("the workers finished before they said they were ready")
            return first, sample
        if time.monotonic() > deadline:
            raise BenchError(f"{unacked}/{count} messages not done after {timeout} s")
        time.sleep(0.2)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    wk: WorkerSettings,
    processes: int,
    env: dict[str, str],
    client: redis.Redis,
    redis_proc: Proc,
    workdir: Path,
) -> WorkerRun:
    ids = preload(client, wk.messages)
    wait_quiet(wk.quiet, wk.quiet_wait)
    argv = [
        str(VENV_BIN / "dramatiq"),
        "coinex_chatbot.tasks",
        "--processes", "1",
        "--threads", str(wk.threads),
    ]  # fmt: skip
    workers = [
        Proc(f"dramatiq-{i}", argv, env, workdir / f"dramatiq-{processes}-{i}.log")
        for i in range(processes)
    ]
    started = time.time()
    before = busy_cpu_seconds() - redis_proc.cpu_seconds() - _own_cpu_seconds()
    try:
        for proc in workers:
            proc.start()
        first, last = wait_answered(client, len(ids), workers, redis_proc, timeout=600)
        ours = last.workers_cpu
        after = busy_cpu_seconds() - redis_proc.cpu_seconds() - _own_cpu_seconds()
        others = max(0.0, after - before - ours) / (time.time() - started)
    finally:
        for proc in workers:
            proc.stop()
    pipe = client.pipeline(transaction=False)
    for mid in ids:
        pipe.hmget(f"chatbot:msg:{mid}", "status", "answered_at")
    rows = pipe.execute()
    statuses = [status for status, _ in rows]
    answered, escalated = statuses.count("answered"), statuses.count("escalated")
    if answered + escalated != len(ids):
        raise BenchError(f"{len(ids) - answered - escalated} messages not completed")
    tickets = client.xlen("chatbot:escalations")
    if tickets != escalated:
        raise BenchError(f"{escalated} escalated messages but {tickets} tickets")
    stamps = sorted(float(at) for _, at in rows)
    p05, p95 = len(stamps) * 5 // 100, len(stamps) * 95 // 100
    if stamps[p95] <= stamps[p05]:
        raise BenchError("the messages were answered within one timestamp tick")
    rate = (p95 - p05) / (stamps[p95] - stamps[p05])
    done = first.unacked
    run = WorkerRun(
        processes=processes,
        rate=rate,
        wall_s=stamps[-1] - started,
        others_cpu=others,
        worker_cpu_ms=(last.workers_cpu - first.workers_cpu) / done * 1000,
        redis_cpu_ms=(last.redis_cpu - first.redis_cpu) / done * 1000,
        answered=answered,
        escalated=escalated,
    )
    print(
        f"  {processes} worker process(es) x {wk.threads} threads: {rate:8.1f} answered/s "
        f"(wall {run.wall_s:5.1f} s incl. boot; {answered} answered, {escalated} escalated; "
        f"others {others:4.2f} cores; CPU/msg worker {run.worker_cpu_ms:.2f} ms, "
        f"redis {run.redis_cpu_ms:.2f} ms)",
        flush=True,
    )
    return run


def bench_workers(
    wk: WorkerSettings, env: dict[str, str], client: redis.Redis, redis_proc: Proc, workdir: Path
) -> dict[int, WorkerCell]:
    cells: dict[int, WorkerCell] = {n: WorkerCell() for n in wk.counts}
    for rep in range(wk.repeats):
        print(f"worker run {rep + 1}/{wk.repeats} ({wk.messages} messages each)", flush=True)
        order = wk.counts if rep % 2 == 0 else tuple(reversed(wk.counts))
        for n in order:
            cells[n].runs.append(measure(wk, n, env, client, redis_proc, workdir))
    return cells
