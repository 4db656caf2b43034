"""The Redis ACL user of the app (roles/coinex_chatbot_redis, rules in its vars/main.yml): the app
and its workers do everything they need as that user, and the user is refused the dangerous
commands.

A real redis-server with the role's user line (password as SHA-256, the role's rules), the real
app behind uWSGI and a Dramatiq worker (app/tests/services.py) connecting as that user. Redis's
ACL LOG must stay empty: no command the app sends was denied. Dramatiq's dead-worker maintenance
(a Lua script that calls KEYS) is run for real too; with KEYS denied it fails, which is why the
role's rules allow KEYS again.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import yaml

from playbook_runner import ROOT, free_port

sys.path.insert(0, str(ROOT / "app" / "tests"))
from services import REDIS_SERVER, Stack, running_stack, wait_for

pytestmark = pytest.mark.e2e
_VARS = yaml.safe_load((ROOT / "roles/coinex_chatbot_redis/vars/main.yml").read_text())
RULES = _VARS["__coinex_chatbot_redis_app_acl"]
APP_USER = yaml.safe_load((ROOT / "roles/coinex_chatbot_redis/defaults/main.yml").read_text())[
    "coinex_chatbot_redis_app_user"
]
# the memory policy line of the settings the role gives Redis (one host, and with Sentinel: both
# use its storage block)
POLICY = next(
    line
    for line in _VARS["__coinex_chatbot_redis_storage_settings"].splitlines()
    if line.startswith("maxmemory-policy ")
)
for _name in ("__coinex_chatbot_redis_settings", "__coinex_chatbot_redis_ha_settings"):
    assert "{{ __coinex_chatbot_redis_storage_settings }}" in _VARS[_name], _name
ADMIN_PASSWORD = "admin-password-for-the-acl-test"
APP_PASSWORD = "app-password-for-the-acl-test"
# what the app user must never run (each with harmless arguments: refused before it runs)
REFUSED = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "maxmemory"),
    ("CONFIG", "SET", "maxmemory", "0"),
    ("DEBUG", "SLEEP", "0"),
    ("SHUTDOWN", "NOSAVE"),
    ("MONITOR",),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "intruder", "on", ">pw", "+@all"),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("MODULE", "LIST"),
    ("SAVE",),
    ("BGREWRITEAOF",),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("MIGRATE", "127.0.0.1", "1", "k", "0", "100"),
    ("SWAPDB", "0", "1"),
]


@dataclass
class AclRedis:
    port: int
    proc: subprocess.Popen

    def url(self, user: str = APP_USER, password: str = APP_PASSWORD) -> str:
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=ADMIN_PASSWORD, decode_responses=True)

    def app(self) -> redis.Redis:
        return redis.Redis.from_url(self.url(), decode_responses=True)


def start_redis(tmp: Path, rules: str) -> AclRedis:
    """redis-server with the settings the role appends to redis.conf (persistence off). DEBUG and
    MODULE are enabled here so that only the ACL can refuse them (Redis 7 disables both)."""
    port = free_port()
    digest = hashlib.sha256(APP_PASSWORD.encode()).hexdigest()
    conf = tmp / "redis.conf"
    conf.write_text(
        f'port {port}\nbind 127.0.0.1\nprotected-mode yes\ndir {tmp}\nsave ""\n'
        f"requirepass {ADMIN_PASSWORD}\nmaxmemory 64mb\n{POLICY}\n"
        f"user {APP_USER} on #{digest} {rules}\n"
        "enable-debug-command yes\nenable-module-command yes\n"
    )
    with (tmp / "redis.log").open("wb") as log:
        proc = subprocess.Popen([REDIS_SERVER, str(conf)], stdout=log, stderr=subprocess.STDOUT)
    server = AclRedis(port, proc)
    wait_for(lambda: server.admin().ping(), 10, "redis-server with the ACL user")
    return server


@pytest.fixture()
def acl_redis(tmp_path: Path) -> Iterator[AclRedis]:
    server = start_redis(tmp_path, RULES)
    yield server
    server.proc.terminate()
    server.proc.wait(10)


def denied(server: AclRedis) -> list[str]:
    """Commands Redis refused the app's user (ACL LOG, read as the default user)."""
    return [f"{e['reason']}:{e['object']}" for e in server.admin().acl_log()]


def test_the_app_works_as_the_acl_user(acl_redis: AclRedis, tmp_path: Path) -> None:
    env = {
        "REDIS_URL": acl_redis.url(),
        "SECRET_KEY": "test-secret-not-for-production",
        "CHATBOT_ENV": "production",
        "CHATBOT_BROKER_HEARTBEAT_TIMEOUT_MS": "5000",
        "CHATBOT_BROKER_MAINTENANCE_CHANCE": "1000000",  # maintenance on every broker call
    }
    logs = tmp_path / "stack"
    logs.mkdir()
    with running_stack(env, logs) as stack:
        assert stack.get("/readyz").status_code == 200
        answered = stack.ask("How do I reset my 2FA?")
        assert answered["status"] == "answered", answered
        escalated = stack.ask("What's the best recipe for lasagna?")  # off topic: a ticket
        assert escalated["status"] == "escalated", escalated
        full_redis_refuses_writes_and_keeps_data(acl_redis, stack, answered["message_id"])
        assert stack.ask("How do I reset my 2FA?")["status"] == "answered"
    admin = acl_redis.admin()
    assert admin.xlen("chatbot:escalations") == 1
    assert admin.ttl(f"chatbot:conv:{answered['conversation_id']}") > 0
    assert denied(acl_redis) == []


def full_redis_refuses_writes_and_keeps_data(server: AclRedis, stack: Stack, kept: str) -> None:
    """maxmemory reached (set below what is used): noeviction refuses writes, the API answers 503
    with Retry-After, nothing stored is evicted; writes work again once there is room."""
    admin = server.admin()
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", str(used // 2))
    try:
        reply = stack.post("/api/v1/conversations", json={})
        assert reply.status_code == 503 and reply.headers.get("Retry-After"), reply.text
        assert admin.exists(f"chatbot:msg:{kept}")
        assert admin.info("stats")["evicted_keys"] == 0
    finally:
        admin.config_set("maxmemory", "64mb")


def test_dramatiq_requeues_a_dead_workers_messages_as_the_acl_user(acl_redis: AclRedis) -> None:
    assert redelivered(acl_redis) == "redelivered"
    assert denied(acl_redis) == []


def test_without_keys_dramatiq_cannot_requeue_a_dead_workers_messages(tmp_path: Path) -> None:
    """Why the rules allow KEYS: Dramatiq's maintenance script calls it."""
    server = start_redis(tmp_path, RULES.replace(" +keys", ""))
    try:
        outcome = redelivered(server)
        assert "can't run this command" in outcome, outcome
        assert denied(server) == ["command:keys"]
    finally:
        server.proc.terminate()
        server.proc.wait(10)


def redelivered(server: AclRedis) -> str:
    """One message taken by a consumer that then dies (no ack, no more heartbeats); another
    consumer's broker call runs the maintenance, which must put the message back for it."""
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.message import Message

    def broker() -> RedisBroker:
        return RedisBroker(url=server.url(), heartbeat_timeout=1000, maintenance_chance=1_000_000)

    dead = broker()
    dead.declare_queue("acl-test")
    dead.enqueue(Message("acl-test", "an_actor", (), {}, {}))
    assert next(dead.consume("acl-test", prefetch=1, timeout=1000)) is not None
    time.sleep(1.5)  # its heartbeat is older than heartbeat_timeout now
    consumer = broker().consume("acl-test", prefetch=1, timeout=200)
    try:
        for _ in range(10):
            if next(consumer) is not None:
                return "redelivered"
    except redis.ResponseError as error:
        return str(error)
    return "not redelivered"


@pytest.mark.parametrize("command", REFUSED, ids=lambda c: " ".join(c[:2]).lower())
def test_the_acl_user_is_refused_dangerous_commands(acl_redis: AclRedis, command: tuple) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        acl_redis.app().execute_command(*command)
    assert acl_redis.admin().ping()  # still running, nothing flushed or reconfigured


def test_the_acl_user_cannot_read_the_admin_password_or_log_in_as_default(
    acl_redis: AclRedis,
) -> None:
    app = acl_redis.app()
    assert app.acl_whoami() == APP_USER  # ACL WHOAMI is harmless (@slow, not @dangerous)
    with pytest.raises(redis.exceptions.AuthenticationError):
        app.execute_command("AUTH", "default", APP_PASSWORD)
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.execute_command("ACL", "GETUSER", "default")
