"""Bounded load generator of the fleet scenario: GETs and chat POSTs through the load balancer.

Runs ``--connections`` threads, each with its own keep-alive HTTP connection and conversation,
until the file ``--stop-file`` appears or ``--max-seconds`` pass. Every response that is not 2xx
and every connection error counts as a failure. Each thread posts a chat message at its first
request and then every ``--post-every`` requests (one in ``--escalate-every`` messages is
gibberish that escalates to a human ticket) and keeps every message id it got back; with
``--post-retries`` a failed chat POST is retried with the same Idempotency-Key, as the chat page
does. After the load it polls the
conversations until every posted message is completed (answered or escalated) or
``--settle-seconds`` pass, and writes the figures as JSON to ``--out``. Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

QUESTIONS = [
    "How do I reset my 2FA?",
    "How long does a withdrawal take?",
    "What are the spot trading fees?",
    "How do I complete KYC verification?",
    "如何重置谷歌验证器？",
]
GIBBERISH = "qwzx plorkt vlemnish zorbulate"
CONVERSATION_MESSAGES = 40  # a new conversation after this many messages (the API lists 200)


@dataclass
class Client:
    """One connection's view: requests, failures and the messages it posted."""

    base: tuple[str, str, int]  # scheme, host, port
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    # second of the run -> failures in it (when did they happen)
    failure_seconds: Counter[int] = field(default_factory=Counter)
    # conversation id -> message ids posted in it, in order
    posted: dict[str, list[str]] = field(default_factory=dict)
    # conversation id -> its token (sent as Authorization: Bearer on the conversation's calls)
    tokens: dict[str, str] = field(default_factory=dict)
    escalation_ids: list[str] = field(default_factory=list)
    conn: http.client.HTTPConnection | None = None

    def connect(self) -> http.client.HTTPConnection:
        scheme, host, port = self.base
        if scheme == "https":  # verified against SSL_CERT_FILE's CA, as OpenSSL reads it
            return http.client.HTTPSConnection(host, port, timeout=30)
        return http.client.HTTPConnection(host, port, timeout=30)

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        token: str | None = None,
        key: str | None = None,
    ) -> Any:
        """One request; returns the decoded JSON body, or None (counted as a failure)."""
        self.requests += 1
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key:
            headers["Idempotency-Key"] = key
        try:
            if self.conn is None:
                self.conn = self.connect()
            self.conn.request(method, path, body=payload, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
            if response.will_close:  # the server ends the connection after this response
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.fail(f"{method} {type(exc).__name__}")
            self.close()
            return None
        if not 200 <= response.status < 300:
            self.fail(f"{method} {response.status}")
            return None
        return json.loads(data) if data else {}

    def fail(self, kind: str) -> None:
        self.failures[kind] += 1
        self.failure_seconds[int(time.monotonic() - self.started)] += 1

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run_client(client: Client, args: argparse.Namespace, stop: threading.Event, index: int) -> None:
    conversation = ""
    sent = 0
    while not stop.is_set():
        if args.think_ms:
            time.sleep(args.think_ms / 1000)
        if not conversation or len(client.posted[conversation]) >= CONVERSATION_MESSAGES:
            created = client.call("POST", "/api/v1/conversations", {"lang": "en"})
            if created is None:
                continue
            conversation = created["conversation_id"]
            client.posted[conversation] = []
            client.tokens[conversation] = created["token"]
        token = client.tokens[conversation]
        sent += 1
        # each connection's first request is a chat POST, then every --post-every-th: a drill's
        # messages do not depend on how many requests a slow machine gets through
        if (sent - 1) % args.post_every == 0:
            count = sum(len(ids) for ids in client.posted.values())
            escalate = (count + index) % args.escalate_every == 0
            text = GIBBERISH if escalate else QUESTIONS[(count + index) % len(QUESTIONS)]
            path = f"/api/v1/conversations/{conversation}/messages"
            key = f"load-{index}-{sent}" if args.post_retries else None
            accepted = client.call("POST", path, {"text": text}, token, key)
            # a client that retries (as the chat page does): the same key, after a pause
            for _ in range(args.post_retries if accepted is None else 0):
                time.sleep(0.5)
                accepted = client.call("POST", path, {"text": text}, token, key)
                if accepted is not None:
                    break
            if accepted is not None:
                client.posted[conversation].append(accepted["message_id"])
                if escalate:
                    client.escalation_ids.append(accepted["message_id"])
        elif sent % 2:
            client.call("GET", f"/api/v1/conversations/{conversation}/messages", token=token)
        else:
            client.call("GET", "/readyz")
    client.close()


def settle(clients: list[Client], deadline: float) -> dict[str, list[dict[str, Any]]]:
    """Poll every conversation until all its messages are completed; return the last listings."""
    checker = Client(clients[0].base)
    listings: dict[str, list[dict[str, Any]]] = {}
    pending = {cid: ids for c in clients for cid, ids in c.posted.items() if ids}
    tokens = {cid: token for c in clients for cid, token in c.tokens.items()}
    while pending and time.monotonic() < deadline:
        for cid in list(pending):
            listed = checker.call("GET", f"/api/v1/conversations/{cid}/messages", None, tokens[cid])
            if listed is None:
                continue
            listings[cid] = listed["messages"]
            if all(m["status"] != "pending" for m in listed["messages"]):
                del pending[cid]
        if pending:
            time.sleep(1)
    checker.close()
    return listings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="load balancer, e.g. http://127.0.0.1:28480")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--settle-seconds", type=float, default=120)
    parser.add_argument("--post-every", type=int, default=8)
    parser.add_argument("--escalate-every", type=int, default=5)
    parser.add_argument("--think-ms", type=float, default=10)
    parser.add_argument(
        "--post-retries",
        type=int,
        default=0,
        help="retry a failed chat POST this many times with the same Idempotency-Key (0: none)",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    parts = urlsplit(args.url)
    scheme = parts.scheme or "http"
    base = (scheme, parts.hostname or "127.0.0.1", parts.port or (443 if scheme == "https" else 80))
    started = time.monotonic()
    clients = [Client(base, started) for _ in range(args.connections)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_client, args=(c, args, stop, i), daemon=True)
        for i, c in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    while not os.path.exists(args.stop_file) and time.monotonic() - started < args.max_seconds:
        time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    load_seconds = time.monotonic() - started

    listings = settle(clients, time.monotonic() + args.settle_seconds)
    posted = [mid for c in clients for ids in c.posted.values() for mid in ids]
    seen = Counter(m["message_id"] for ms in listings.values() for m in ms)
    statuses = {m["message_id"]: m["status"] for ms in listings.values() for m in ms}
    failures: Counter[str] = Counter()
    failure_seconds: Counter[int] = Counter()
    for c in clients:
        failures.update(c.failures)
        failure_seconds.update(c.failure_seconds)
    posted_set = set(posted)
    result = {
        "connections": args.connections,
        "load_seconds": round(load_seconds, 1),
        "stopped_by": "stop file" if os.path.exists(args.stop_file) else "max seconds",
        "requests": sum(c.requests for c in clients),
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "failures_by_second": {str(k): v for k, v in sorted(failure_seconds.items())},
        "messages_posted": len(posted),
        "messages_distinct": len(set(posted)),
        "answered": sum(1 for mid in posted if statuses.get(mid) == "answered"),
        "escalated": sum(1 for mid in posted if statuses.get(mid) == "escalated"),
        "pending": sum(1 for mid in posted if statuses.get(mid, "pending") == "pending"),
        "listed_more_than_once": sum(1 for mid in posted if seen[mid] > 1),
        # messages the API stored although their POST failed (a retried or half-failed request)
        "listed_not_acknowledged": sum(1 for mid in seen if mid not in posted_set),
        "escalation_ids": [mid for c in clients for mid in c.escalation_ids],
    }
    result["requests_per_second"] = round(result["requests"] / load_seconds, 1)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    summary = {k: v for k, v in result.items() if k != "escalation_ids"}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
