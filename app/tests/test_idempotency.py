"""Retry-safe posts: an Idempotency-Key names one message per conversation (real uWSGI + worker).

The same key twice returns the first message's id and status, stores and enqueues nothing new;
concurrent posts with one key (two uWSGI processes, several threads) store exactly one message.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from services import Stack, wait_for

pytestmark = pytest.mark.e2e

QUESTION = "How do I withdraw USDT?"


def new_conversation(stack: Stack) -> str:
    created = stack.post("/api/v1/conversations", json={})
    assert created.status_code == 201, created.text
    return created.json()["conversation_id"]


def post(stack: Stack, cid: str, key: str | None, text: str = QUESTION):
    headers = {} if key is None else {"Idempotency-Key": key}
    return stack.post(f"/api/v1/conversations/{cid}/messages", json={"text": text}, headers=headers)


def messages(stack: Stack, cid: str) -> list[dict]:
    reply = stack.get(f"/api/v1/conversations/{cid}/messages")
    assert reply.status_code == 200, reply.text
    return reply.json()["messages"]


def wait_answered(stack: Stack, cid: str, count: int) -> list[dict]:
    wait_for(
        lambda: [m["status"] for m in messages(stack, cid)].count("pending") == 0,
        30,
        "every message answered",
    )
    found = messages(stack, cid)
    assert len(found) == count, found
    return found


def task_outcomes(stack: Stack, mid: str) -> list[str]:
    """The worker's log lines for this message: one per task it ran."""
    lines = stack.processes["dramatiq"].output().splitlines()
    return [line for line in lines if '"task"' in line and mid in line]


def test_the_same_key_twice_is_one_message_and_one_answer(live_stack: Stack, redis_client) -> None:
    cid, key = new_conversation(live_stack), str(uuid.uuid4())
    first = post(live_stack, cid, key)
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    mid = first.json()["message_id"]
    assert first.json() == {"message_id": mid, "status": "pending"}

    again = post(live_stack, cid, key)
    assert again.status_code == 202, again.text
    assert again.json()["message_id"] == mid
    assert again.headers["Idempotent-Replayed"] == "true"

    (only,) = wait_answered(live_stack, cid, 1)
    assert only["message_id"] == mid and only["status"] == "answered"
    # after the answer, a replay reports the first message's current status
    late = post(live_stack, cid, key)
    assert late.json() == {"message_id": mid, "status": "answered"}
    assert messages(live_stack, cid) == [only]
    wait_for(lambda: len(task_outcomes(live_stack, mid)) >= 1, 10, "the task's log line")
    assert len(task_outcomes(live_stack, mid)) == 1, "the replays enqueued a task"
    # the key lives as long as the conversation's data
    idem = f"chatbot:conv:{cid}:idem:{key}"
    assert redis_client.get(idem) == mid
    assert 0 < redis_client.ttl(idem) <= int(live_stack.env.get("CHATBOT_DATA_TTL_SECONDS", 604800))


def test_concurrent_posts_with_one_key_store_one_message(live_stack: Stack) -> None:
    cid, key = new_conversation(live_stack), str(uuid.uuid4())
    start = threading.Barrier(8)
    replies: list = []

    def racer() -> None:
        start.wait()
        replies.append(post(live_stack, cid, key))

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [r.status_code for r in replies] == [202] * 8, [r.text for r in replies]
    ids = {r.json()["message_id"] for r in replies}
    assert len(ids) == 1, ids
    assert sum("Idempotent-Replayed" not in r.headers for r in replies) == 1
    (only,) = wait_answered(live_stack, cid, 1)
    assert only["message_id"] in ids


def test_different_keys_and_no_key_are_different_messages(live_stack: Stack) -> None:
    cid = new_conversation(live_stack)
    ids = [
        post(live_stack, cid, "key-one").json()["message_id"],
        post(live_stack, cid, "key-two").json()["message_id"],
        post(live_stack, cid, None).json()["message_id"],
        post(live_stack, cid, None).json()["message_id"],
    ]
    assert len(set(ids)) == 4, ids
    wait_answered(live_stack, cid, 4)
    # a key belongs to its conversation: another conversation's "key-one" is its own message
    other = new_conversation(live_stack)
    assert post(live_stack, other, "key-one").json()["message_id"] not in ids


def test_a_key_reused_for_another_text_is_422(live_stack: Stack) -> None:
    cid, key = new_conversation(live_stack), str(uuid.uuid4())
    assert post(live_stack, cid, key).status_code == 202
    reply = post(live_stack, cid, key, text="Something else entirely")
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "idempotency_key_reused"
    wait_answered(live_stack, cid, 1)


@pytest.mark.parametrize("key", ["", "x" * 129, "tab\tinside", "caf\u00e9"])
def test_a_bad_key_is_400_json_and_stores_nothing(live_stack: Stack, key: str) -> None:
    cid = new_conversation(live_stack)
    headers = {"Idempotency-Key": key.encode("latin-1")}
    reply = live_stack.post(
        f"/api/v1/conversations/{cid}/messages", json={"text": QUESTION}, headers=headers
    )
    assert reply.status_code == 400, reply.text
    assert reply.json() == {
        "error": "invalid_idempotency_key",
        "detail": "Idempotency-Key must be 1 to 128 printable ASCII characters",
    }
    assert messages(live_stack, cid) == []


def test_a_key_of_128_printable_characters_is_accepted(live_stack: Stack) -> None:
    cid = new_conversation(live_stack)
    key = ("Az09 ~!:/" * 15)[:128]
    first, again = post(live_stack, cid, key), post(live_stack, cid, key)
    assert first.status_code == again.status_code == 202, first.text
    assert first.json()["message_id"] == again.json()["message_id"]


def test_without_a_replica_a_post_is_503_and_its_retry_stores_nothing_new(
    app_env: dict[str, str], redis_client
) -> None:
    """CHATBOT_REDIS_WAIT_REPLICAS=1 on a Redis with no replica: WAIT 1 times out, so no 202."""
    from coinex_chatbot.config import load_settings
    from coinex_chatbot.runtime import get_runtime
    from coinex_chatbot.web import conversation_token, create_app

    waiting = {**app_env, "CHATBOT_REDIS_WAIT_REPLICAS": "1", "CHATBOT_REDIS_WAIT_TIMEOUT_MS": "50"}
    try:
        app = create_app(load_settings(waiting))
        client = app.test_client()
        cid = client.post("/api/v1/conversations", json={}).get_json()["conversation_id"]
        headers = {
            "Authorization": f"Bearer {conversation_token(app_env['SECRET_KEY'], cid)}",
            "Idempotency-Key": "one-message",
        }
        path = f"/api/v1/conversations/{cid}/messages"
        for _ in range(2):
            reply = client.post(path, json={"text": QUESTION}, headers=headers)
            assert reply.status_code == 503, reply.get_data(as_text=True)
            assert reply.get_json()["error"] == "not_replicated"
            assert int(reply.headers["Retry-After"]) > 0
        # stored (and queued) once: a retry that finds a replica gets this message's id
        assert len(redis_client.lrange(f"chatbot:conv:{cid}:messages", 0, -1)) == 1
    finally:
        get_runtime(load_settings(app_env))  # the session's runtime again
