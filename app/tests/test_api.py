"""The HTTP API in-process (Flask test client) against a real redis-server."""

from __future__ import annotations

import json
import logging
import re

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


def new_conversation(client) -> tuple[str, dict[str, str]]:
    """A new conversation's id, and the headers that give access to it (its bearer token)."""
    reply = client.post("/api/v1/conversations", json={"lang": "en"})
    assert reply.status_code == 201
    body = reply.get_json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


def assert_json_error(reply, status: int, error: str | None = None) -> dict:
    assert reply.status_code == status, reply.get_data(as_text=True)
    assert reply.mimetype == "application/json"
    body = reply.get_json()
    assert set(body) == {"error", "detail"} and body["detail"]
    if error:
        assert body["error"] == error
    return body


def test_post_message_enqueues_and_returns_pending(client, redis_client):
    cid, auth = new_conversation(client)
    before = redis_client.llen("dramatiq:default")
    reply = client.post(
        f"/api/v1/conversations/{cid}/messages",
        json={"text": "How do I deposit USDT?"},
        headers=auth,
    )
    assert reply.status_code == 202
    body = reply.get_json()
    assert body["status"] == "pending" and len(body["message_id"]) == 32
    # the request only enqueued: the message is pending until a worker answers it
    url = f"/api/v1/conversations/{cid}/messages"
    listed = client.get(url, headers=auth).get_json()["messages"]
    assert [m["status"] for m in listed] == ["pending"]
    assert listed[0]["lang"] == "en"
    assert redis_client.llen("dramatiq:default") >= before + 1 or redis_client.exists(
        "dramatiq:default.msgs"
    )


def test_chinese_question_is_detected(client):
    cid, auth = new_conversation(client)
    url = f"/api/v1/conversations/{cid}/messages"
    client.post(url, json={"text": "怎么充值比特币"}, headers=auth)
    listed = client.get(url, headers=auth).get_json()["messages"]
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
        # odd but well-formed JSON: a lone surrogate, deep nesting, a number Python will not read
        (b'{"text": "\\ud800 hello"}', 400, "invalid_encoding"),
        (b'{"text": "hi", "x": "\\udfff"}', 400, "invalid_encoding"),
        (b"[" * 16000, 400, "malformed_json"),
        (b'{"text": "hi", "n": ' + b"9" * 5000 + b"}", 400, "malformed_json"),
    ],
)
def test_bad_message_bodies_get_4xx_json(client, data, status, error):
    cid, auth = new_conversation(client)
    url = f"/api/v1/conversations/{cid}/messages"
    reply = client.post(url, data=data, content_type="application/json", headers=auth)
    assert_json_error(reply, status, error)
    assert client.get(url, headers=auth).get_json()["messages"] == []


def test_odd_json_creating_a_conversation_is_400_too(client):
    for data in (b"[" * 16000, b'{"lang": ' + b"1" * 5000 + b"}", b'{"lang": "\\ud800"}'):
        reply = client.post("/api/v1/conversations", data=data, content_type="application/json")
        assert_json_error(reply, 400)


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", b'{"text": "hello"}'),
        ("application/x-www-form-urlencoded", b"text=hello"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\nhello\r\n--x--\r\n',
        ),
        (None, b'{"text": "hello"}'),
        ("application/jsonx", b'{"text": "hello"}'),
    ],
)
def test_a_body_that_is_not_application_json_is_415_json(client, content_type, data):
    cid, auth = new_conversation(client)
    url = f"/api/v1/conversations/{cid}/messages"
    reply = client.post(url, data=data, content_type=content_type, headers=auth)
    assert_json_error(reply, 415, "unsupported_media_type")
    reply = client.post("/api/v1/conversations", data=data, content_type=content_type)
    assert_json_error(reply, 415, "unsupported_media_type")
    assert client.get(url, headers=auth).get_json()["messages"] == []


def test_json_with_a_charset_and_an_empty_create_body_are_accepted(client):
    cid, auth = new_conversation(client)
    reply = client.post(
        f"/api/v1/conversations/{cid}/messages",
        data='{"text": "hello"}',
        content_type="application/json; charset=utf-8",
        headers=auth,
    )
    assert reply.status_code == 202, reply.get_data(as_text=True)
    assert client.post("/api/v1/conversations").status_code == 201  # no body: no type needed


def test_text_of_exactly_2000_characters_is_accepted(client):
    cid, auth = new_conversation(client)
    reply = client.post(
        f"/api/v1/conversations/{cid}/messages", json={"text": "a" * 2000}, headers=auth
    )
    assert reply.status_code == 202


def token_for(app, cid: str) -> str:
    from coinex_chatbot.web import conversation_token

    return conversation_token(app.config["SECRET_KEY"], cid)


@pytest.mark.parametrize("cid", ["0" * 32, "not-an-id", "../../etc/passwd"])
def test_unknown_conversation_is_404_json(app, client, cid):
    # an expired conversation: its token is still well-formed and signed, the conversation gone
    auth = {"Authorization": f"Bearer {token_for(app, cid)}"}
    assert_json_error(client.get(f"/api/v1/conversations/{cid}/messages", headers=auth), 404)
    reply = client.post(
        f"/api/v1/conversations/{cid}/messages", json={"text": "hello"}, headers=auth
    )
    assert_json_error(reply, 404)


def test_the_create_response_carries_the_conversations_token(app, client):
    reply = client.post("/api/v1/conversations", json={})
    body = reply.get_json()
    assert set(body) == {"conversation_id", "token"}
    assert re.fullmatch(r"[0-9a-f]{64}", body["token"])
    assert body["token"] == token_for(app, body["conversation_id"])


def assert_unauthorized(reply, error: str) -> None:
    assert_json_error(reply, 401, error)
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_conversation_id_alone_gives_no_access(client):
    cid, auth = new_conversation(client)
    other, other_auth = new_conversation(client)
    url = f"/api/v1/conversations/{cid}/messages"
    assert client.post(url, json={"text": "my secret question"}, headers=auth).status_code == 202
    wrong = [
        ({}, "missing_token"),
        ({"Authorization": ""}, "missing_token"),
        ({"Authorization": "Bearer"}, "missing_token"),
        ({"Authorization": f"Basic {auth['Authorization'].split()[1]}"}, "missing_token"),
        (other_auth, "invalid_token"),  # another conversation's token
        ({"Authorization": auth["Authorization"][:-1]}, "invalid_token"),
        ({"Authorization": auth["Authorization"] + "0"}, "invalid_token"),
        ({"Authorization": "Bearer " + "é" * 64}, "invalid_token"),
        ({"Authorization": f"Bearer {cid}"}, "invalid_token"),
    ]
    for headers, error in wrong:
        assert_unauthorized(client.get(url, headers=headers), error)
        reply = client.post(url, json={"text": "not mine"}, headers=headers)
        assert_unauthorized(reply, error)
    # the token is checked before the body, so nothing about the body leaks without it
    assert_unauthorized(client.post(url, data=b"{not json", headers=other_auth), "invalid_token")
    listed = client.get(url, headers=auth).get_json()["messages"]
    assert [m["text"] for m in listed] == ["my secret question"]
    # the scheme is case-insensitive (RFC 7235)
    lower = {"Authorization": "bearer " + auth["Authorization"].split()[1]}
    assert client.get(url, headers=lower).status_code == 200
    assert (
        client.get(f"/api/v1/conversations/{other}/messages", headers=other_auth).status_code == 200
    )


@pytest.mark.parametrize(
    "path", ["/", "/healthz", "/readyz", "/openapi.json", "/api/v1/nope", "/static/chat.js"]
)
def test_every_response_has_the_security_headers(client, path):
    assert_security_headers(client.get(path))


def test_api_errors_have_the_security_headers(client):
    assert_security_headers(
        client.post("/api/v1/conversations", data=b"[", content_type="application/json")
    )
    assert_security_headers(client.get(f"/api/v1/conversations/{'0' * 32}/messages"))


def assert_security_headers(reply) -> None:
    csp = [d.strip() for d in reply.headers.get("Content-Security-Policy", "").split(";")]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, reply.headers
    assert not [d for d in csp if "unsafe-" in d], csp
    assert reply.headers.get("X-Content-Type-Options") == "nosniff"
    assert reply.headers.get("Referrer-Policy") == "no-referrer"


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
    cid, auth = new_conversation(client)
    url = f"/api/v1/conversations/{cid}/messages"
    codes = [
        client.post(url, json={"text": f"question {i}"}, headers=auth).status_code for i in range(3)
    ]
    assert codes == [202, 202, 202]
    reply = client.post(url, json={"text": "one too many"}, headers=auth)
    assert_json_error(reply, 429, "rate_limited")
    assert 1 <= int(reply.headers["Retry-After"]) <= 61
    # another conversation is not limited by this one
    other, other_auth = new_conversation(client)
    url = f"/api/v1/conversations/{other}/messages"
    assert client.post(url, json={"text": "hi"}, headers=other_auth).status_code == 202


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


def test_arbitrary_methods_do_not_create_metric_label_values(client):
    for method in ("BREW", "X-SCAN-4c1d"):
        assert_json_error(client.open("/healthz", method=method), 405)
    text = client.get("/metrics").get_data(as_text=True)
    methods = set(re.findall(r'chatbot_http_requests_total\{[^}]*method="([^"]*)"', text))
    assert methods <= {"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "other"}
    assert "other" in methods, methods


def test_readyz_says_only_not_ready_and_logs_why(app_env, caplog):
    from coinex_chatbot.runtime import get_runtime
    from coinex_chatbot.web import create_app

    from services import free_port

    port = free_port()  # nothing listens there
    try:
        client = create_app(
            load_settings({**app_env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"})
        ).test_client()
        with caplog.at_level(logging.WARNING, logger="coinex_chatbot.web"):
            reply = client.get("/readyz")
    finally:
        get_runtime(load_settings(app_env))  # the other tests' Redis again
    assert reply.status_code == 503 and int(reply.headers["Retry-After"]) > 0
    assert reply.get_json() == {"status": "not ready"}
    assert str(port) not in reply.get_data(as_text=True)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "redis unreachable" in logged and str(port) in logged, logged


def test_the_request_log_names_the_route_not_the_conversation(client, caplog):
    cid, auth = new_conversation(client)
    token = auth["Authorization"].split()[1]
    url = f"/api/v1/conversations/{cid}/messages"
    with caplog.at_level(logging.INFO, logger="coinex_chatbot.web"):
        client.post(url, json={"text": "hello"}, headers=auth)
        client.get(url, headers=auth)
        client.get(url + "?x=1")
    lines = [json.dumps(r.fields) for r in caplog.records if r.getMessage() == "request"]
    assert [json.loads(fields)["route"] for fields in lines[-3:]] == [
        "/api/v1/conversations/<cid>/messages"
    ] * 3
    assert [fields for fields in lines if cid in fields or token in fields] == []
