"""uWSGI workers from the stats socket; with --fifo, chain-reload and wait for new workers.

python3 uwsgi_workers.py --stats SOCK (or just SOCK)       print [{"pid", "status"}] as JSON
python3 uwsgi_workers.py --stats SOCK --fifo FIFO --processes N --timeout S
    write "c" (chain reload) to the master FIFO, then wait until N workers accept requests and
    none of the workers seen before is left; exit 1 with the reason on stderr when that fails.
python3 uwsgi_workers.py --stats SOCK --wait --processes N --timeout S
    wait until the stats socket answers and N workers accept requests (a uWSGI that has just
    started); exit 1 with the reason on stderr when that fails.
"""

import argparse
import errno
import json
import os
import socket
import sys
import time

# How often the stats socket is read. uWSGI's master moves a chain reload on to the next worker
# only when its event loop wakes (an event, or each second): each read is such an event, so a
# tenth of a second between reads keeps the chain moving (a 4-worker chain reload of a local
# deploy: 1.8-2.0 s at 0.1 s, 2.1-2.9 s at 0.25 s).
POLL_S = 0.1


def workers(stats: str) -> list[dict]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(stats)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return [
        {"pid": w["pid"], "status": w["status"], "accepting": w.get("accepting", 0)}
        for w in json.loads(data)["workers"]
    ]


def accepting(now: list[dict]) -> set[int]:
    """Pids of the workers that have loaded the app and accept requests."""
    return {w["pid"] for w in now if w["pid"] > 0 and w["accepting"]}


def wait_ready(stats: str, processes: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    now: list[dict] = []
    error = "no answer yet"
    while time.monotonic() < deadline:
        try:
            now = workers(stats)
            error = ""
        except (OSError, ValueError) as exc:
            error = str(exc)
        if len(accepting(now)) == processes:
            print(json.dumps({"ready": sorted(accepting(now))}))
            return 0
        time.sleep(POLL_S)
    sys.stderr.write(
        f"uWSGI at {stats}: {processes} workers not all accepting within {timeout:.0f} s"
        f" ({error or now})\n"
    )
    return 1


def chain_reload(stats: str, fifo: str, processes: int, timeout: float) -> int:
    before = {w["pid"] for w in workers(stats)}
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        reason = "no uWSGI master reads it" if exc.errno == errno.ENXIO else exc.strerror
        sys.stderr.write(f"cannot write to the master FIFO {fifo}: {reason}\n")
        return 1
    with os.fdopen(fd, "w") as pipe:
        pipe.write("c")
    deadline = time.monotonic() + timeout
    now: list[dict] = []
    while time.monotonic() < deadline:
        time.sleep(POLL_S)  # the stats socket is cheap to read; the reload ends between two reads
        try:
            now = workers(stats)
        except OSError:
            continue
        pids = accepting(now)
        if len(pids) == processes and not pids & before:
            print(json.dumps({"before": sorted(before), "after": sorted(pids)}))
            return 0
    sys.stderr.write(
        f"uWSGI workers not all replaced within {timeout:.0f} s (the new release does not load?);"
        f" before {sorted(before)}, now {now}\n"
    )
    return 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stats_socket", nargs="?", help="same as --stats")
    parser.add_argument("--stats")
    parser.add_argument("--fifo")
    parser.add_argument("--wait", action="store_true", help="wait until the workers are ready")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    args.stats = args.stats or args.stats_socket
    if not args.stats:
        parser.error("the stats socket is required")
    if args.wait:
        return wait_ready(args.stats, args.processes, args.timeout)
    if args.fifo:
        return chain_reload(args.stats, args.fifo, args.processes, args.timeout)
    print(json.dumps(workers(args.stats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
