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
from redis.sentinel import Sentinel, SentinelManagedConnection

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


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary the Sentinels name, asked on every (re)connection.

    redis-py 8 reconnects a retried command through ``connect_check_health`` with the address it
    had, bypassing the Sentinels (redis/redis-py#3874, open): after a failover the retry of a
    write that met READONLY on the demoted primary went to the same host and failed again, so
    every pooled connection cost one 503. Here the retry reaches the promoted primary.
    """

    def _connect_retry(self) -> None:
        if not self.connection_pool.is_master:
            super()._connect_retry()
            return
        self.connect_check_health(
            check_health=self.connection_pool.check_connection, retry_socket_connect=False
        )

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self._sock and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(
            check_health=check_health, retry_socket_connect=retry_socket_connect
        )


class PrimarySSLConnection(PrimaryConnection, SSLConnection):
    """PrimaryConnection over TLS (a rediss:// REDIS_URL)."""


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
    """REDIS_URL's credentials, database, query options, TLS; its host and port are Sentinel's."""
    parsed = parse_url(url)
    tls = parsed.pop("connection_class", None) is SSLConnection
    parsed.pop("host", None)
    parsed.pop("port", None)
    return {**parsed, "connection_class": PrimarySSLConnection if tls else PrimaryConnection}
