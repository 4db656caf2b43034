"""The HTTP API in-process (Flask test client) against a real redis-server."""

from __future__ import annotations

import json

import pytest

from coinex_chatbot.config import load_settings

pytestmark = pytest.mark.usefixtures("app_env")


@pytest.fixture(scope="module")
def app(app_env):
    from coinex_chatbot.web import create_app

    return create_app(load_settings(app_env))


@pytest.fixture()
def client(app):
    return app.test_client()


def new_conversation(client) -> str:
    reply = client.post("/api/v1/conversations", json={"lang": "en"})
    assert reply.status_code == 201
    return reply.get_json()["conversation_id"]


def assert_json_error(reply, status: int, error: str | None = None) -> dict:
    assert reply.status_code == status, reply.get_data(as_text=True)
    assert reply.mimetype == "application/json"
    body = reply.get_json()
    assert set(body) == {"error", "detail"} and body["detail"]
    if error:
        assert body["error"] == error
    return body


def test_post_message_enqueues_and_returns_pending(client, redis_client):
    cid = new_conversation(client)
    before = redis_client.llen("dramatiq:default")
    reply = client.post(
        f"/api/v1/conversations/{cid}/messages", json={"text": "How do I deposit USDT?"}
    )
    assert reply.status_code == 202
    body = reply.get_json()
    assert body["status"] == "pending" and len(body["message_id"]) == 32
    # the request only enqueued: the message is pending until a worker answers it
    listed = client.get(f"/api/v1/conversations/{cid}/messages").get_json()["messages"]
    assert [m["status"] for m in listed] == ["pending"]
    assert listed[0]["lang"] == "en"
    assert redis_client.llen("dramatiq:default") >= before + 1 or redis_client.exists(
        "dramatiq:default.msgs"
    )


def test_chinese_question_is_detected(client):
    cid = new_conversation(client)
    client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "怎么充值比特币"})
    listed = client.get(f"/api/v1/conversations/{cid}/messages").get_json()["messages"]
    assert listed[0]["lang"] == "zh"


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"[1, 2]", 400, "invalid_body"),
        (b"{}", 400, "missing_text"),
        (b'{"text": ""}', 400, "empty_text"),
        (b'{"text": "   "}', 400, "empty_text"),
        (b'{"text": 42}', 400, "invalid_text"),
        (json.dumps({"text": "x" * 2001}).encode(), 400, "text_too_long"),
        (b'{"text": "\xff\xfe bad"}', 400, "invalid_encoding"),
        (b'{"text": "hi", "lang": "fr"}', 400, "invalid_lang"),
        (b'{"text": "hi", "lang": {}}', 400, "invalid_lang"),
        (json.dumps({"text": "hi", "pad": "y" * 17000}).encode(), 413, "body_too_large"),
    ],
)
def test_bad_message_bodies_get_4xx_json(client, data, status, error):
    cid = new_conversation(client)
    reply = client.post(
        f"/api/v1/conversations/{cid}/messages", data=data, content_type="application/json"
    )
    assert_json_error(reply, status, error)
    listed = client.get(f"/api/v1/conversations/{cid}/messages").get_json()["messages"]
    assert listed == []


def test_text_of_exactly_2000_characters_is_accepted(client):
    cid = new_conversation(client)
    reply = client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "a" * 2000})
    assert reply.status_code == 202


@pytest.mark.parametrize("cid", ["0" * 32, "not-an-id", "../../etc/passwd"])
def test_unknown_conversation_is_404_json(client, cid):
    assert_json_error(client.get(f"/api/v1/conversations/{cid}/messages"), 404)
    reply = client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "hello"})
    assert_json_error(reply, 404)


def test_unknown_route_and_wrong_method_are_json(client):
    assert_json_error(client.get("/api/v1/nope"), 404)
    assert_json_error(client.delete("/api/v1/conversations"), 405)


def test_healthz_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["articles"] >= 60


def test_chat_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"


def test_rate_limit_per_conversation_answers_429_with_retry_after(app_env):
    from coinex_chatbot.web import create_app

    client = create_app(
        load_settings({**app_env, "CHATBOT_RATE_LIMIT_CONVERSATION": "3"})
    ).test_client()
    cid = new_conversation(client)
    url = f"/api/v1/conversations/{cid}/messages"
    codes = [client.post(url, json={"text": f"question {i}"}).status_code for i in range(3)]
    assert codes == [202, 202, 202]
    reply = client.post(url, json={"text": "one too many"})
    assert_json_error(reply, 429, "rate_limited")
    assert 1 <= int(reply.headers["Retry-After"]) <= 61
    # another conversation is not limited by this one
    other = new_conversation(client)
    assert (
        client.post(f"/api/v1/conversations/{other}/messages", json={"text": "hi"}).status_code
        == 202
    )


def test_rate_limit_per_client_ip(app_env):
    from coinex_chatbot.web import create_app

    client = create_app(load_settings({**app_env, "CHATBOT_RATE_LIMIT_IP": "4"})).test_client()
    env = {"REMOTE_ADDR": "198.51.100.7"}
    codes = [
        client.post("/api/v1/conversations", json={}, environ_base=env).status_code
        for _ in range(5)
    ]
    assert codes == [201, 201, 201, 201, 429]
    # a different client is still served
    other = client.post(
        "/api/v1/conversations", json={}, environ_base={"REMOTE_ADDR": "198.51.100.8"}
    )
    assert other.status_code == 201
