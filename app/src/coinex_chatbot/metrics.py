"""Prometheus metrics that stay correct across several uWSGI worker processes.

With PROMETHEUS_MULTIPROC_DIR set (the role sets it and empties it when uWSGI's master starts),
every process writes its samples to files there and /metrics sums them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _dir:
    os.makedirs(_dir, exist_ok=True)

HTTP_REQUESTS = Counter(
    "chatbot_http_requests_total", "HTTP requests", ["method", "endpoint", "status"]
)
HTTP_LATENCY = Histogram(
    "chatbot_http_request_duration_seconds",
    "HTTP request latency",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
MESSAGES_ENQUEUED = Counter("chatbot_messages_enqueued_total", "Chat messages accepted (202)")
RATE_LIMITED = Counter("chatbot_rate_limited_total", "Requests refused with 429", ["scope"])
REDIS_ERRORS = Counter("chatbot_redis_errors_total", "Requests answered 503 because Redis failed")
TASKS = Counter("chatbot_tasks_total", "answer_message outcomes", ["outcome"])
TASK_LATENCY = Histogram(
    "chatbot_task_duration_seconds",
    "answer_message duration",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

# the labelled children of the per-request metrics, by label values: labels() validates and
# converts its arguments on every call, a dict lookup does not (label values are bounded: the
# app's routes, METRIC_METHODS, status codes)
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def http_request(method: str, endpoint: str, status: int, seconds: float) -> None:
    """Count one HTTP request and observe its latency."""
    key = (method, endpoint, status)
    children = _request_children.get(key)
    if children is None:
        children = (
            HTTP_REQUESTS.labels(method, endpoint, str(status)),
            HTTP_LATENCY.labels(endpoint),
        )
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def render() -> tuple[bytes, str]:
    """The exposition text for this process, or for all processes in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
