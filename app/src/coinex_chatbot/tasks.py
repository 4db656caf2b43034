"""Dramatiq actors: answer customers' questions from the knowledge base.

Run with ``python -m coinex_chatbot.worker`` (worker.py: one Dramatiq worker per process). The
broker is the runtime's (``runtime.py``): the Redis at REDIS_URL. Dramatiq delivers at least
once; ``Store.complete`` makes the outcome of a message happen exactly once.
"""

from __future__ import annotations

import logging
import time

import dramatiq

from . import metrics
from .logs import log_event
from .runtime import get_runtime

log = logging.getLogger("coinex_chatbot.tasks")

ESCALATION_TEXT = {
    "en": "I'm not sure about this one, so I'm connecting you to a human agent. "
    "They will reply in this chat.",
    "zh": "这个问题我不太确定，正在为您转接人工客服，客服会在此对话中回复您。",
}


@dramatiq.actor(
    broker=get_runtime().broker,
    max_retries=20,
    min_backoff=250,
    max_backoff=10_000,
    time_limit=60_000,
)
def answer_message(message_id: str) -> None:
    # imported here, not at the top: the web processes import this module only to send
    from .knowledge import get_knowledge_base

    started = time.perf_counter()
    outcome = "missing"
    st, settings = get_runtime().store, get_runtime().settings
    message = st.get_message(message_id)
    if message is not None:
        if message.get("status") != "pending":
            outcome = "duplicate"
        else:
            if settings.task_delay_ms:  # fault-injection drills only: hold the message
                time.sleep(settings.task_delay_ms / 1000)
            answer = get_knowledge_base().answer(message["text"], message.get("lang") or None)
            if answer.confidence >= settings.confidence_threshold:
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
