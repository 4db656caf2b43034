"""Dramatiq actors: answer customers' questions from the knowledge base.

Run with ``dramatiq coinex_chatbot.tasks``. The broker is the Redis at REDIS_URL. Dramatiq delivers
at least once; ``Store.complete`` makes the outcome of a message happen exactly once.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from functools import lru_cache

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware, TimeLimitExceeded

from . import metrics
from .config import Settings, load_settings
from .logs import log_event, setup_logging
from .store import Store, connect

log = logging.getLogger("coinex_chatbot.tasks")

ESCALATION_TEXT = {
    "en": "I'm not sure about this one, so I'm connecting you to a human agent. "
    "They will reply in this chat.",
    "zh": "这个问题我不太确定，正在为您转接人工客服，客服会在此对话中回复您。",
}


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()


@lru_cache(maxsize=1)
def store() -> Store:
    s = settings()
    return Store(connect(s.redis_url), s.data_ttl_seconds, s.escalation_stream)


class WarmUp(Middleware):
    """Load the knowledge base when a worker process boots, not on its first message."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        from .knowledge import get_knowledge_base

        setup_logging(settings().log_level)
        get_knowledge_base()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


class DieWithParent(Middleware):
    """A worker process stops (gracefully, SIGTERM) when its Dramatiq main process dies.

    Supervisor manages the main process only: if it is SIGKILLed alone, its worker process would
    go on taking messages with nothing managing it, next to the one Supervisor starts anew.
    """

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        if not sys.platform.startswith("linux"):
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
        elif os.getppid() == 1:  # the main process died before prctl: the signal never comes
            os.kill(os.getpid(), signal.SIGTERM)


class RetryAfterRedisReturns(Middleware):
    """A message that failed because Redis was down is retried once Redis is back, never dropped.

    Dramatiq's Retries enqueues the retry at once; while Redis is down that enqueue fails, the
    failure is only logged, and the original message is acked as soon as Redis returns: the
    customer's message would stay pending for ever. This runs before Retries (after-hooks run in
    reverse order) and holds the worker thread until Redis answers, as Dramatiq does for acks.
    """

    def after_process_message(
        self,
        broker: RedisBroker,
        message: dramatiq.Message,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        if not isinstance(exception, (redis.ConnectionError, redis.TimeoutError)):
            return
        while True:
            # the actor's time limit may fire while this thread waits: it has returned already
            with contextlib.suppress(TimeLimitExceeded):
                try:
                    broker.client.ping()
                    return
                except redis.RedisError:
                    time.sleep(1)


def make_broker(s: Settings) -> RedisBroker:
    broker = RedisBroker(
        url=s.redis_url,
        heartbeat_timeout=s.broker_heartbeat_timeout_ms,
        maintenance_chance=s.broker_maintenance_chance,
        socket_connect_timeout=1.0,
        health_check_interval=15,
    )
    broker.add_middleware(WarmUp())
    broker.add_middleware(DieWithParent())
    broker.add_middleware(RetryAfterRedisReturns())
    return broker


broker = make_broker(settings())
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=20, min_backoff=250, max_backoff=10_000, time_limit=60_000)
def answer_message(message_id: str) -> None:
    # imported here, not at the top: the web processes import this module only to send
    from .knowledge import get_knowledge_base

    started = time.perf_counter()
    outcome = "missing"
    st = store()
    message = st.get_message(message_id)
    if message is not None:
        if message.get("status") != "pending":
            outcome = "duplicate"
        else:
            if settings().task_delay_ms:  # fault-injection drills only: hold the message
                time.sleep(settings().task_delay_ms / 1000)
            answer = get_knowledge_base().answer(message["text"], message.get("lang") or None)
            if answer.confidence >= settings().confidence_threshold:
                status, text = "answered", answer.text
            else:
                status, text = "escalated", ESCALATION_TEXT.get(answer.lang, ESCALATION_TEXT["en"])
            done = st.complete(
                message_id, message, status, text, answer.articles, answer.confidence
            )
            outcome = status if done else "duplicate"
    elapsed = time.perf_counter() - started
    metrics.TASKS.labels(outcome).inc()
    metrics.TASK_LATENCY.observe(elapsed)
    log_event(
        log,
        "task",
        task="answer_message",
        message_id=message_id,
        outcome=outcome,
        duration_ms=round(elapsed * 1000, 2),
    )
