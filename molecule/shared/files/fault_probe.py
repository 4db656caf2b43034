#!/usr/bin/env python3
"""Fault drills of the Molecule verify, run on the target: kill, then time the recovery.

    fault_probe.py URL kill-worker MASTER_PID
        SIGKILL one uWSGI worker; done when the master has as many workers as before, the killed
        one not among them, and GET URL/readyz is 200.
    fault_probe.py URL kill-master MASTER_PID SUPERVISORD_PID
        SIGKILL the uWSGI master; done when a new uWSGI master runs under supervisord, none of the
        old workers is alive any more, and GET URL/readyz is 200.
    fault_probe.py URL wait-ready SINCE_EPOCH
        done when GET URL/readyz is 200; seconds counted from SINCE_EPOCH (a Unix time).

Prints one JSON object with the seconds to recovery; exits 1 when not recovered in 60 s.
Standard library only (the target's system Python).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

TIMEOUT_S = 60.0
POLL_S = 0.05
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def stat_fields(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return rest[0], int(rest[1])


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def children(parent: int) -> list[int]:
    """Live (non-zombie) children of a process."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat_fields(int(name))
            if fields is not None and fields[1] == parent and fields[0] != "Z":
                found.append(int(name))
    return sorted(found)


def ready(url: str) -> bool:
    try:
        with OPENER.open(url + "/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def poll(done: Callable[[], bool], what: str) -> float:
    """Seconds until done() is true (monotonic clock, from now); exits 1 after TIMEOUT_S."""
    start = time.monotonic()
    while time.monotonic() - start < TIMEOUT_S:
        if done():
            return round(time.monotonic() - start, 2)
        time.sleep(POLL_S)
    print(json.dumps({"error": f"not recovered within {TIMEOUT_S} s: {what}"}))
    sys.exit(1)


def kill_worker(url: str, master: int) -> dict[str, object]:
    before = children(master)
    if not before:
        return {"error": f"uWSGI master {master} has no workers"}
    victim = before[0]
    os.kill(victim, signal.SIGKILL)

    def done() -> bool:
        now = children(master)
        return victim not in now and len(now) >= len(before) and ready(url)

    seconds = poll(done, "worker respawned and /readyz 200")
    return {
        "killed_worker": victim,
        "workers_before": before,
        "workers_after": children(master),
        "seconds": seconds,
    }


def kill_master(url: str, master: int, supervisord: int) -> dict[str, object]:
    workers = children(master)
    served_meanwhile: list[float] = []
    marks: dict[str, float] = {}
    start = time.monotonic()
    os.kill(master, signal.SIGKILL)

    def new_masters() -> list[int]:
        return [p for p in children(supervisord) if p != master and "uwsgi" in cmdline(p)]

    def done() -> bool:
        lingering = [w for w in workers if alive(w)]
        if not lingering and "old_workers_gone" not in marks:
            marks["old_workers_gone"] = round(time.monotonic() - start, 2)
        if new_masters() and "new_master" not in marks:
            marks["new_master"] = round(time.monotonic() - start, 2)
        up = ready(url)
        if up and lingering:  # an old worker may have answered: when, since the kill
            served_meanwhile.append(round(time.monotonic() - start, 2))
        return not lingering and bool(new_masters()) and up

    seconds = poll(done, "new uWSGI master, old workers gone, /readyz 200")
    return {
        "killed_master": master,
        "old_workers": workers,
        "new_master": new_masters(),
        "new_workers": children(new_masters()[0]),
        "seconds": seconds,
        "old_workers_gone_s": marks.get("old_workers_gone"),
        "new_master_s": marks.get("new_master"),
        # a worker sees its master's death (no-orphans: the master's signal socket closes) at its
        # next turn of the accept loop, so a request it accepted just before is still answered;
        # an old worker answering later than that is an orphan still serving
        "readyz_answered_while_old_workers_lived_s": served_meanwhile,
    }


def wait_ready(url: str, since: float) -> dict[str, object]:
    poll(lambda: ready(url), "/readyz 200")
    return {"seconds": round(time.time() - since, 2)}


def main(argv: list[str]) -> int:
    url, mode, *args = argv
    if mode == "kill-worker":
        result = kill_worker(url, int(args[0]))
    elif mode == "kill-master":
        result = kill_master(url, int(args[0]), int(args[1]))
    elif mode == "wait-ready":
        result = wait_ready(url, float(args[0]))
    else:
        result = {"error": f"unknown mode {mode}"}
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
