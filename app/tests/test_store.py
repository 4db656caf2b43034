"""The Redis data model against a real redis-server: what it keeps is bounded."""

from __future__ import annotations

import uuid

import pytest

from coinex_chatbot.config import Settings
from coinex_chatbot.store import Store

pytestmark = pytest.mark.usefixtures("app_env")
TTL = 3600


def escalate(store: Store, cid: str, text: str) -> str:
    mid = store.add_message(cid, text, "en")
    message = {"conversation_id": cid, "text": text, "lang": "en"}
    assert store.complete(mid, message, "escalated", "a human will reply", [], 0.1)
    return mid


def test_the_escalation_stream_is_capped(redis_client):
    stream = f"test:escalations:{uuid.uuid4().hex}"
    store = Store(redis_client, TTL, stream, escalation_maxlen=100)
    cid = store.create_conversation("en")
    mids = [escalate(store, cid, f"question {i}") for i in range(1000)]
    length = redis_client.xlen(stream)
    # MAXLEN ~ trims whole stream nodes (100 entries each by default): approximately 100
    assert 100 <= length <= 200, length
    newest = [fields["message_id"] for _, fields in redis_client.xrevrange(stream, count=100)]
    assert newest == mids[::-1][:100]  # the oldest tickets went first
    redis_client.delete(stream)


def test_the_cap_defaults_to_the_settings_default(redis_client):
    assert Settings.escalation_maxlen == 100_000
    assert Store(redis_client, TTL, "unused").escalation_maxlen == Settings.escalation_maxlen


def test_everything_a_conversation_stores_expires(redis_client):
    store = Store(redis_client, TTL, f"test:escalations:{uuid.uuid4().hex}")
    cid = store.create_conversation(None)
    answered = store.add_message(cid, "How do I deposit?", "en")
    message = {"conversation_id": cid, "text": "How do I deposit?", "lang": "en"}
    assert store.complete(answered, message, "answered", "Like this.", [], 0.9)
    escalated = escalate(store, cid, "pizza?")
    pending = store.add_message(cid, "still waiting", "en")
    keys = {
        key
        for needle in (cid, answered, escalated, pending)
        for key in redis_client.scan_iter(f"*{needle}*")
    }
    assert len(keys) >= 5, keys  # the conversation, its list and three messages
    ttls = {key: redis_client.ttl(key) for key in keys}
    assert all(0 < ttl <= TTL for ttl in ttls.values()), ttls
    redis_client.delete(store.stream)


def test_a_message_pending_too_long_is_claimed_once_until_it_is_answered(redis_client):
    store = Store(redis_client, TTL, "unused")
    cid = store.create_conversation("en")
    mid = store.add_message_once(cid, "How do I withdraw USDT?", "en", str(uuid.uuid4())).message_id
    other = store.add_message(cid, "How do I create an API key?", "en")
    claimed = store.claim_stale_pending(0, limit=100_000)
    assert {mid, other} <= set(claimed)
    assert not {mid, other} & set(store.claim_stale_pending(60))  # marked sent just now
    assert {mid, other} <= set(store.claim_stale_pending(0, limit=100_000))  # stale again
    message = {"conversation_id": cid, "text": "How do I withdraw USDT?", "lang": "en"}
    assert store.complete(mid, message, "answered", "an answer", [], 0.9)
    assert store.complete(
        other,
        {**message, "text": "How do I create an API key?"},
        "escalated",
        "a human will answer",
        [],
        0.1,
    )
    assert redis_client.zscore("chatbot:pending", mid) is None
    assert redis_client.zscore("chatbot:pending", other) is None
    assert not {mid, other} & set(store.claim_stale_pending(0, limit=100_000))


def test_post_message_checks_limits_and_stores_in_one_script(redis_client):
    """The enqueue request's one script does what EXISTS, the rate-limit pipeline and the
    store did: nothing at all for an unknown conversation, counting without storing when a
    scope is over its limit, and an Idempotency-Key's replay names the first message."""
    store = Store(redis_client, TTL, f"test:escalations:{uuid.uuid4().hex}")
    ip = f"ip:{uuid.uuid4().hex}"
    missing = uuid.uuid4().hex
    posted = store.post_message(missing, "hello", "en", None, [(ip, 5)])
    assert not posted.found and posted.added is None
    assert not list(redis_client.scan_iter(f"*{missing}*"))
    assert not list(redis_client.scan_iter(f"chatbot:rl:{ip}:*")), "a 404 counted the post"

    cid = store.create_conversation("en")
    limits = [(f"conversation:{cid}", 2), (ip, 0)]  # 0: that scope is off
    first = store.post_message(cid, "How do I deposit?", "en", None, limits)
    assert first.found and first.limit.allowed and first.added and first.added.created
    mid = first.added.message_id
    assert redis_client.hget(f"chatbot:msg:{mid}", "status") == "pending"
    assert redis_client.lrange(f"chatbot:conv:{cid}:messages", 0, -1) == [mid]
    assert redis_client.zscore("chatbot:pending", mid) is not None
    assert all(0 < redis_client.ttl(k) <= TTL for k in redis_client.scan_iter(f"*{mid}*"))

    key = "retry-1"
    again = store.post_message(cid, "How do I withdraw?", "en", key, limits)
    replay = store.post_message(cid, "How do I withdraw?", "en", key, [])
    assert again.added and replay.added and not replay.added.created
    assert (replay.added.message_id, replay.added.status, replay.added.text) == (
        again.added.message_id,
        "pending",
        "How do I withdraw?",
    )
    refused = store.post_message(cid, "one too many", "en", None, limits)
    assert not refused.limit.allowed and refused.limit.scope == "conversation"
    assert 1 <= refused.limit.retry_after <= 61 and refused.added is None
    assert redis_client.llen(f"chatbot:conv:{cid}:messages") == 2  # not stored
    redis_client.delete(store.stream)


def test_post_message_stores_its_task_where_dramatiq_fetches_it(redis_server, redis_client):
    """The post's script writes the task as Dramatiq's own enqueue does: Dramatiq's consumer
    fetches it (the actor, the message id, its Redis id). A post that stores no message (an
    unknown conversation, over a limit, a replay) enqueues nothing."""
    import dramatiq
    import redis

    from coinex_chatbot.runtime import FailoverSafeRedisBroker

    broker = FailoverSafeRedisBroker(
        client=redis.Redis.from_url(redis_server.url), namespace=f"test-{uuid.uuid4().hex}"
    )
    actor = dramatiq.actor(lambda message_id: None, actor_name="answer", broker=broker)
    store = Store(redis_client, TTL, "unused")
    cid = store.create_conversation("en")
    queue = f"{broker.namespace}:{actor.queue_name}"

    def post(mid: str, key: str | None = None, limits=()):
        task = broker.scripted_enqueue(actor.message(mid))
        return task, store.post_message(cid, "hello", "en", key, list(limits), mid=mid, task=task)

    limits = [(f"conversation:{cid}", 2)]
    task, posted = post("a" * 32, key="k1", limits=limits)
    assert posted.added and posted.added.created and posted.added.message_id == "a" * 32
    assert redis_client.llen(queue) == 1
    missing = broker.scripted_enqueue(actor.message("b" * 32))
    assert not store.post_message(uuid.uuid4().hex, "x", "en", None, [], task=missing).found
    _, replay = post("c" * 32, key="k1")
    assert replay.added and not replay.added.created
    _, second = post("d" * 32, limits=limits)
    _, limited = post("e" * 32, limits=limits)
    assert second.limit.allowed and not limited.limit.allowed
    assert redis_client.llen(queue) == 2, "a post that stored no message enqueued a task"

    consumer = broker.consume(actor.queue_name, prefetch=1, timeout=1000)
    try:
        fetched = []
        for _, message in zip(range(20), consumer, strict=False):  # at most about 20 s
            if message is not None:
                fetched.append(message)
                consumer.ack(message)
            if len(fetched) == 2:
                break
        assert [(m.actor_name, m.args) for m in fetched] == [
            ("answer", ("a" * 32,)),
            ("answer", ("d" * 32,)),
        ]
        assert fetched[0].message_id == task.message.message_id
        assert fetched[0].options["redis_message_id"] == task.values[0]
    finally:
        consumer.close()
    assert not redis_client.exists(queue, f"{queue}.msgs")
