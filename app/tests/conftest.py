"""Fixtures: real redis-server, uWSGI and Dramatiq processes (services.py). No mocks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coinex_chatbot.config import load_settings
from coinex_chatbot.runtime import get_runtime

from services import RedisServer, Stack, free_port, running_stack


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app_env(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment every process of the app gets; this test process's runtime too."""
    env = {
        "REDIS_URL": redis_server.url,
        "SECRET_KEY": "test-secret-not-for-production",
        "CHATBOT_ENV": "production",
        "CHATBOT_RATE_LIMIT_CONVERSATION": "1000",
        "CHATBOT_RATE_LIMIT_IP": "100000",
        "CHATBOT_BROKER_HEARTBEAT_TIMEOUT_MS": "5000",
        "CHATBOT_BROKER_MAINTENANCE_CHANCE": "100000",
    }
    get_runtime(load_settings(env))
    return env


@pytest.fixture()
def redis_client(redis_server: RedisServer):
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def live_stack(
    app_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The shared stack: uWSGI with 2 workers + a Dramatiq worker on the session's redis."""
    with running_stack(app_env, tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture()
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that stop Redis or need an empty queue."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("own-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def own_redis_aof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Like own_redis, with the production role's persistence: appendonly yes, fsync everysec."""
    server = RedisServer(free_port(), tmp_path_factory.mktemp("own-redis-aof"), appendonly=True)
    server.start()
    yield server
    server.stop()
