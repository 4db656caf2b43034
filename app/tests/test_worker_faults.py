"""A Dramatiq process killed mid-message: the message is redelivered and answered exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from services import start_worker, wait_for

pytestmark = pytest.mark.e2e


def test_sigkill_mid_message_is_redelivered_and_answered_once(app_env, own_redis, tmp_path_factory):
    """On its own Redis, so the session's other workers cannot take the message."""
    import redis

    from coinex_chatbot.config import load_settings
    from coinex_chatbot.runtime import make_broker
    from coinex_chatbot.store import Store, connect
    from coinex_chatbot.tasks import answer_message

    env = {**app_env, "REDIS_URL": own_redis.url}
    redis_client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    logdir = tmp_path_factory.mktemp("worker-faults")
    store = Store(connect(own_redis.url), 3600, "chatbot:escalations")
    cid = store.create_conversation("en")
    mid = store.add_message(cid, "How do I cancel a pending withdrawal?", "en")
    # the first worker holds each message for 30 s, long enough to be killed while holding it
    slow = start_worker({**env, "CHATBOT_TASK_DELAY_MS": "30000"}, logdir, "slow-worker")
    make_broker(load_settings(env)).enqueue(answer_message.message(mid))
    wait_for(
        lambda: any(
            k for k in redis_client.scan_iter("dramatiq:__acks__.*") if redis_client.scard(k)
        ),
        10,
        "the slow worker to take the message",
    )
    slow.stop(signal.SIGKILL)
    assert store.get_message(mid)["status"] == "pending"

    killed_at = time.monotonic()
    heartbeat_s = load_settings(env).broker_heartbeat_timeout_ms / 1000
    # maintenance (the requeue of a dead worker's messages) on every broker call of the new
    # worker, so the wait is the heartbeat timeout, not a dice roll
    fresh = start_worker(
        {**env, "CHATBOT_BROKER_MAINTENANCE_CHANCE": "1000000"}, logdir, "fresh-worker"
    )
    try:
        wait_for(
            lambda: store.get_message(mid)["status"] != "pending", heartbeat_s + 20, "redelivery"
        )
        took = time.monotonic() - killed_at
        print(f"\nanswered again {took:.1f} s after SIGKILL (heartbeat timeout {heartbeat_s} s)")
        assert store.get_message(mid)["status"] == "answered"

        def outcomes() -> list[str]:
            return [
                line
                for line in (slow.output() + fresh.output()).splitlines()
                if mid in line and '"outcome"' in line
            ]

        wait_for(outcomes, 5, "the task's log line")  # written just after the outcome is stored
        time.sleep(0.5)
        resent = [line for line in fresh.output().splitlines() if "sending it again" in line]
        assert len(outcomes()) == 1 and '"outcome": "answered"' in outcomes()[0], (
            outcomes(),
            resent,
        )
    finally:
        fresh.stop()


def test_worker_process_stops_when_its_main_process_is_killed(app_env, tmp_path_factory):
    """Supervisor restarts only the main process: its orphaned worker process must not go on."""
    worker = start_worker(app_env, tmp_path_factory.mktemp("worker-orphan"), "orphan-worker")
    children = _children(worker.proc.pid)
    assert children, "dramatiq --processes 1 has no worker process"
    os.kill(worker.proc.pid, signal.SIGKILL)  # the main process only, not the group
    worker.proc.wait(5)
    try:
        wait_for(lambda: not any(_alive(pid) for pid in children), 15, "the orphan to stop")
    finally:
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_graceful_stop_puts_back_the_fetched_messages_not_handed_out(app_env, own_redis):
    """A fetch takes a batch into the worker id's ack set; the consumer thread hands it out one
    by one and, when stopped, leaves after the one it holds. Closing the consumer puts the rest
    of the batch back on the queue at once (Dramatiq alone left it in the ack set of an exited
    worker id until a heartbeat timeout later)."""
    import dramatiq
    import redis

    from coinex_chatbot.config import load_settings
    from coinex_chatbot.runtime import make_broker

    broker = make_broker(load_settings({**app_env, "REDIS_URL": own_redis.url}))
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    broker.declare_queue("batch")
    sent = [broker.enqueue(dramatiq.Message("batch", "nothing", (i,), {}, {})) for i in range(4)]
    consumer = broker.consume("batch", prefetch=4, timeout=100)
    held = next(consumer)  # fetches all four, hands out one
    acks = f"dramatiq:__acks__.{broker.broker_id}.batch"
    assert client.llen("dramatiq:batch") == 0 and client.scard(acks) == 4
    consumer.close()
    queued = set(client.lrange("dramatiq:batch", 0, -1))
    assert client.smembers(acks) == {held.options["redis_message_id"]}
    assert queued == {m.options["redis_message_id"] for m in sent} - {
        held.options["redis_message_id"]
    }
