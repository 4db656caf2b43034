"""A Dramatiq process killed mid-message: the message is redelivered and answered exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import time

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


def test_a_task_program_is_one_process_that_drains_on_term(app_env, own_redis, tmp_path_factory):
    """``python -m coinex_chatbot.worker`` (what Supervisor runs): no child process; TERM while it
    holds a message lets that message finish, then it exits 0 at once (the Dramatiq CLI's main
    and worker processes each waited in one-second sleeps). Its ready marker (what the role's
    health gate waits for) holds its pid once it has booted, and is gone once it has drained; a
    stale marker of an earlier process is removed before the boot."""
    from coinex_chatbot.config import load_settings
    from coinex_chatbot.runtime import make_broker
    from coinex_chatbot.store import Store, connect
    from coinex_chatbot.tasks import answer_message

    ready_dir = tmp_path_factory.mktemp("ready")
    marker = ready_dir / "coinex_customer_chatbot_task_00.ready"
    marker.write_text("1")  # an earlier process's, killed before it could remove it
    env = {**app_env, "REDIS_URL": own_redis.url, "CHATBOT_TASK_DELAY_MS": "1500"}
    env |= {"CHATBOT_READY_DIR": str(ready_dir), "SUPERVISOR_PROCESS_NAME": marker.stem}
    worker = start_worker(env, tmp_path_factory.mktemp("worker-term"), "term-worker")
    assert _children(worker.proc.pid) == [], "a task program is one process"
    assert marker.read_text() == str(worker.proc.pid)
    assert sorted(p.name for p in ready_dir.iterdir()) == [marker.name]  # no partial file left
    store = Store(connect(own_redis.url), 3600, "chatbot:escalations")
    mid = store.add_message(store.create_conversation("en"), "How do I reset my 2FA?", "en")
    make_broker(load_settings(env)).enqueue(answer_message.message(mid))
    wait_for(lambda: "answer_message" in _held(own_redis.url), 10, "the worker to take it")
    time.sleep(0.2)
    termed = time.monotonic()
    os.kill(worker.proc.pid, signal.SIGTERM)
    assert worker.proc.wait(10) == 0, worker.output()[-2000:]
    took = time.monotonic() - termed
    assert store.get_message(mid)["status"] == "answered", worker.output()[-2000:]
    assert took < 1.5 + 0.8, f"drained in {took:.2f} s"  # the held message's 1.5 s, then out
    assert '"msg": "draining"' in worker.output() and '"msg": "stopped"' in worker.output()
    assert not marker.exists(), "a drained process is not ready"


def _held(url: str) -> str:
    """The messages of every worker's ack set, as text."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    held = [client.smembers(k) for k in client.scan_iter("dramatiq:__acks__.*")]
    ids = [i for s in held for i in s]
    return " ".join(client.hget("dramatiq:default.msgs", i) or "" for i in ids)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


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
