"""Redis stops: the API answers 503 JSON with Retry-After, then recovers without a restart."""

from __future__ import annotations

import pytest

from services import RedisServer, running_stack, wait_for

pytestmark = pytest.mark.e2e


def test_redis_down_then_back(own_redis: RedisServer, app_env, tmp_path_factory):
    env = {**app_env, "REDIS_URL": own_redis.url}
    with running_stack(env, tmp_path_factory.mktemp("stack-redis-down")) as stack:
        assert stack.ask("How do I verify my identity (KYC)?")["status"] == "answered"
        cid = stack.post("/api/v1/conversations", json={}).json()["conversation_id"]

        own_redis.stop()
        reply = stack.post(f"/api/v1/conversations/{cid}/messages", json={"text": "hello"})
        assert reply.status_code == 503
        assert reply.json()["error"] == "service_unavailable"
        assert int(reply.headers["Retry-After"]) > 0
        assert stack.post("/api/v1/conversations", json={}).status_code == 503
        assert stack.get(f"/api/v1/conversations/{cid}/messages").status_code == 503
        ready = stack.get("/readyz")
        # outwardly only "not ready"; the detail (it names Redis's host and port) is logged
        assert ready.status_code == 503 and ready.json() == {"status": "not ready"}
        logged = stack.processes["uwsgi"].output().splitlines()
        assert [ln for ln in logged if "redis unreachable" in ln and str(own_redis.port) in ln]
        assert stack.get("/healthz").status_code == 200
        assert all(p.proc.poll() is None for p in stack.processes.values())

        own_redis.start()
        wait_for(lambda: stack.get("/readyz").status_code == 200, 10, "/readyz after Redis is back")
        # the worker reconnects by itself too: a new question is answered
        assert stack.ask("How do I withdraw USDT?", timeout=30)["status"] == "answered"
