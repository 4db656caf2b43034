"""Redis clients built from the settings: the one server at REDIS_URL, or the primary that the
Sentinels at CHATBOT_REDIS_SENTINELS name for CHATBOT_REDIS_MASTER_NAME.

A Sentinel-managed client asks the Sentinels for the primary's address on every new connection;
after a failover its broken connections fail once (ConnectionError: the API answers 503) and the
next ones reach the promoted replica, with no restart.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from .config import Settings

# a Sentinel that is down or unreachable costs at most this long before the next one is asked
SENTINEL_SOCKET_TIMEOUT = 1.0

# A failed command is retried once, at once, on a new connection (a connection the server closed,
# or a primary replaced by a failover, is not an error the caller sees). Not more: redis-py's
# default is 10 retries with backoff, and each reconnection through Sentinel can itself retry, so
# while a primary is lost a web request held its uWSGI thread for 10-25 s; every thread of a host
# was soon held, the load balancer's health checks timed out and it marked every host DOWN. With
# one retry a request gives up within seconds (the API's 503 with Retry-After) and the client
# retries with its Idempotency-Key.
FAIL_FAST_RETRY = Retry(NoBackoff(), 1)


def redis_client(settings: Settings, **options: Any) -> redis.Redis:
    """A client of the settings' Redis primary; ``options``: redis.Redis keyword arguments."""
    if not settings.sentinels:
        return redis.Redis.from_url(settings.redis_url, **options)
    sentinel = Sentinel(
        settings.sentinels,
        sentinel_kwargs={
            "password": settings.redis_sentinel_password or None,
            "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT,
            "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
            # no retry: a Sentinel that does not answer is skipped for the next one at once.
            # With redis-py's default (10 retries with backoff) the first Sentinel asked, on a
            # lost host, cost every new connection 10-25 s (fleet step 7: /readyz took 26 s).
            "retry": Retry(NoBackoff(), 0),
        },
    )
    return sentinel.master_for(
        settings.redis_master_name, **_primary_options(settings.redis_url), **options
    )


def _primary_options(url: str) -> dict[str, Any]:
    """REDIS_URL's credentials, database and query options; its host and port are Sentinel's."""
    parsed = parse_url(url)
    ssl = parsed.pop("connection_class", None) is SSLConnection
    parsed.pop("host", None)
    parsed.pop("port", None)
    return {**parsed, "ssl": True} if ssl else parsed
