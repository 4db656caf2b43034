"""Hostile-client probes against a chatbot URL (a load balancer or one host); prints one JSON line.

    edge_probe.py URL body-limit          a POST declaring a 50 MB body, body never sent:
                                          {"status", "seconds"} (413 expected at once)
    edge_probe.py URL status PATH         {"status"} of GET PATH (e.g. /metrics: 403 from outside)
    edge_probe.py URL slow N SECONDS      N slow connections for SECONDS, a third of each kind:
                                          idle; request headers trickled one byte every 2 s; full
                                          headers, then the body trickled one byte every 2 s (a
                                          connection the server closes is opened again). Meanwhile
                                          a fresh GET /healthz every 0.2 s (2 s timeout) and a chat
                                          question every 2 s. {"probes", "failed", "p50_ms",
                                          "p99_ms", "max_ms", "reconnects", "questions",
                                          "answered"}
Standard library only.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit


def connect(url: str, timeout: float) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)


def post_head(url: str) -> str:
    host = urlsplit(url).netloc
    return (
        f"POST /api/v1/conversations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    )


def status_of(reply: bytes) -> int:
    line = reply.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


def body_limit(url: str) -> dict[str, Any]:
    start = time.monotonic()
    with connect(url, 10) as sock:
        sock.sendall((post_head(url) + "Content-Length: 50000000\r\n\r\n").encode())
        reply = sock.recv(4096)
    return {"status": status_of(reply), "seconds": round(time.monotonic() - start, 3)}


def get_status(url: str, path: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url + path, timeout=10) as response:
            return {"status": response.status}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code}


def api(url: str, path: str, body: dict[str, Any] | None, token: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Slow(threading.Thread):
    """One slow client of a kind, reconnecting whenever the server closes it, until `end`."""

    def __init__(self, url: str, kind: str, end: float) -> None:
        super().__init__(daemon=True)
        self.url, self.kind, self.end, self.reconnects = url, kind, end, 0

    def payload(self) -> tuple[bytes, bytes]:
        head = post_head(self.url)
        if self.kind == "idle":
            return b"", b""
        if self.kind == "headers":
            return b"", (head + "X-Slow: " + "a" * 200 + "\r\n\r\n").encode()
        return (head + "Content-Length: 1000\r\n\r\n").encode(), b"{" + b" " * 998 + b"}"

    def run(self) -> None:
        first, trickle = self.payload()
        while time.monotonic() < self.end:
            try:
                with connect(self.url, 5) as sock:
                    sock.sendall(first)
                    sock.settimeout(2)
                    sent = 0
                    while time.monotonic() < self.end:
                        if sent < len(trickle):
                            sock.sendall(trickle[sent : sent + 1])
                            sent += 1
                        try:  # 2 s between bytes; a reply or a close ends this connection
                            if sock.recv(4096) is not None:
                                break
                        except TimeoutError:
                            continue
            except OSError:
                pass
            self.reconnects += 1
            time.sleep(0.1)


def slow(url: str, count: int, seconds: float) -> dict[str, Any]:
    end = time.monotonic() + seconds
    clients = [Slow(url, ("idle", "headers", "body")[i % 3], end) for i in range(count)]
    for client in clients:
        client.start()
    time.sleep(1)  # every slow connection is open before the probes start
    latencies: list[float] = []
    failed = 0
    questions: list[tuple[str, str | None]] = []
    next_question = 0.0
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                ok = response.status == 200
        except (OSError, urllib.error.URLError):
            ok = False
        latencies.append((time.monotonic() - start) * 1000)
        failed += not ok
        if start >= next_question:
            next_question = start + 2
            try:
                conv = api(url, "/api/v1/conversations", {"lang": "en"}, None)
                cid, token = conv["conversation_id"], conv.get("token")
                question = {"text": "How do I reset my 2FA?"}
                api(url, f"/api/v1/conversations/{cid}/messages", question, token)
                questions.append((cid, token))
            except (OSError, urllib.error.URLError, KeyError, ValueError):
                failed += 1
        time.sleep(max(0.0, 0.2 - (time.monotonic() - start)))
    answered = 0
    deadline = time.monotonic() + 60
    for cid, token in questions:
        while time.monotonic() < deadline:
            messages = api(url, f"/api/v1/conversations/{cid}/messages", None, token)["messages"]
            if messages and messages[-1]["status"] != "pending":
                answered += messages[-1]["status"] == "answered"
                break
            time.sleep(0.5)
    ordered = sorted(latencies)
    return {
        "probes": len(ordered),
        "failed": failed,
        "p50_ms": round(ordered[len(ordered) // 2], 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "max_ms": round(ordered[-1], 1),
        "reconnects": sum(c.reconnects for c in clients),
        "questions": len(questions),
        "answered": answered,
    }


def main(argv: list[str]) -> int:
    url, what = argv[1].rstrip("/"), argv[2]
    if what == "body-limit":
        result = body_limit(url)
    elif what == "status":
        result = get_status(url, argv[3])
    elif what == "slow":
        result = slow(url, int(argv[3]), float(argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
