"""SIGKILL drill on an app host: kill a task process while it holds a chat message.

Run on the host with the release venv's Python (it has the ``redis`` package) as root:
    kill_drill.py APP_ENV_FILE APP_URL PROCESS SUPERVISOR_SOCKET
Posts a question to APP_URL, waits until a Dramatiq consumer holds it (a ``dramatiq:__acks__.*``
set is not empty; only PROCESS may consume) while the chat message is still pending, SIGKILLs the
process group of PROCESS (the Supervisor program process, one Dramatiq worker: nothing
can nack), then measures, through Supervisor's XML-RPC on its unix socket (polled every 50 ms),
when Supervisor spawned PROCESS again and when it was RUNNING, and when the message was completed
(Dramatiq redelivers a dead worker's messages after its heartbeat timeout).
Prints the figures as JSON; the playbook asserts on them.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sys
import time
import urllib.request
import xmlrpc.client
from typing import Any

import redis


def http_json(url: str, body: dict[str, Any] | None = None, token: str = "") -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.unix_path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return UnixHTTPConnection(self.unix_path)


def process_info(supervisor: Any, process: str) -> dict[str, Any]:
    """Supervisor's view of one process: statename, pid (0 when not running), ..."""
    return supervisor.supervisor.getProcessInfo(f"coinex_customer_chatbot:{process}")


def redis_url(env_file: str) -> str:
    with open(env_file, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("REDIS_URL="):
                return line.split("=", 1)[1].strip().strip("'\"")
    raise SystemExit(f"no REDIS_URL in {env_file}")


def wait_for(check: Any, timeout: float, step: float = 0.05) -> float:
    """Seconds until check() is true; raises SystemExit on timeout."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timeout after {timeout} s waiting for {check.__doc__}")
        time.sleep(step)
    return time.monotonic() - started


def main() -> None:
    env_file, app_url, process, supervisor_socket = sys.argv[1:5]
    supervisor = xmlrpc.client.ServerProxy(
        "http://localhost", transport=UnixTransport(supervisor_socket)
    )
    store = redis.Redis.from_url(redis_url(env_file), decode_responses=True)
    before = process_info(supervisor, process)
    old_pid = before["pid"]
    if before["statename"] != "RUNNING" or old_pid <= 1:
        raise SystemExit(f"{process} is {before['statename']} (pid {old_pid}), not RUNNING")

    created = http_json(f"{app_url}/api/v1/conversations", {"lang": "en"})
    conversation = created["conversation_id"]
    message_id = http_json(
        f"{app_url}/api/v1/conversations/{conversation}/messages",
        {"text": "How do I reset my 2FA?"},
        created["token"],
    )["message_id"]

    def held() -> bool:
        """a consumer holding the message"""
        return any(store.scard(key) for key in store.scan_iter("dramatiq:__acks__.*"))

    held_after = wait_for(held, 20)
    status_at_kill = store.hget(f"chatbot:msg:{message_id}", "status")
    if os.getpgid(old_pid) != old_pid:
        raise SystemExit(f"{process} (pid {old_pid}) does not lead its process group")
    killed_at = time.monotonic()
    os.killpg(old_pid, signal.SIGKILL)

    def running_again() -> bool:
        """Supervisor to run the process again"""
        info = process_info(supervisor, process)
        return info["statename"] == "RUNNING" and info["pid"] != old_pid

    def spawned() -> bool:
        """Supervisor to spawn the process again"""
        return process_info(supervisor, process)["pid"] not in (0, old_pid)

    wait_for(spawned, 30)
    spawned_seconds = time.monotonic() - killed_at
    wait_for(running_again, 30)
    running_seconds = time.monotonic() - killed_at
    after = process_info(supervisor, process)

    def completed() -> bool:
        """the message to be completed"""
        return store.hget(f"chatbot:msg:{message_id}", "status") != "pending"

    wait_for(completed, 120, 0.2)
    completed_seconds = time.monotonic() - killed_at
    print(
        json.dumps(
            {
                "process": process,
                "message_id": message_id,
                "held_after_s": round(held_after, 2),
                "status_at_kill": status_at_kill,
                "old_pid": old_pid,
                "new_pid": after["pid"],
                "spawned_s": round(spawned_seconds, 2),
                "running_s": round(running_seconds, 2),
                "completed_s": round(completed_seconds, 2),
                "status": store.hget(f"chatbot:msg:{message_id}", "status"),
            }
        )
    )


if __name__ == "__main__":
    main()
