"""uWSGI workers from the stats socket; with --fifo, chain-reload and wait for new workers.

python3 uwsgi_workers.py --stats SOCK (or just SOCK)       print [{"pid", "status"}] as JSON
python3 uwsgi_workers.py --stats SOCK --fifo FIFO --processes N --timeout S [--venv VENV]
    write "c" (chain reload) to the master FIFO, then wait until N workers accept requests and
    none of the workers seen before is left; exit 1 with the reason on stderr when that fails.
    With --venv (`current`'s venv): when the library files the master has mapped from its
    site-packages are not VENV's own (a release with another lock or Python: its venv's hard
    links lead to another dependency venv), write "r" instead, a graceful reload that re-executes
    the master, so that it imports the new release's libraries (uwsgi.ini's shared-import); the
    socket stays open meanwhile. Prints {"reload": "chain" | "re-exec", "why", "before", "after"}.
python3 uwsgi_workers.py --stats SOCK --wait --processes N --timeout S
    wait until the stats socket answers and N workers accept requests (a uWSGI that has just
    started); exit 1 with the reason on stderr when that fails.
"""

import argparse
import errno
import glob
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


def read_stats(stats: str) -> dict:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(stats)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data)


def workers(stats: str) -> list[dict]:
    return [
        {"pid": w["pid"], "status": w["status"], "accepting": w.get("accepting", 0)}
        for w in read_stats(stats)["workers"]
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


def other_libraries(pid: int, venv: str) -> str:
    """Why the master ``pid`` must be re-executed to load ``venv``'s libraries ('' if it need
    not): a file it has mapped from a site-packages directory that is not the same file (a hard
    link of it) in ``venv``'s."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            fields = [line.split(maxsplit=5) for line in maps]
    except OSError as exc:
        return f"the master's mappings cannot be read ({exc.strerror})"
    mapped = {parts[5].strip() for parts in fields if len(parts) == 6}
    site = sorted(glob.glob(os.path.join(venv, "lib", "python*", "site-packages")))
    files = sorted(path for path in mapped if "/site-packages/" in path)
    if not site or not files:
        return f"no site-packages in {venv}" if not site else "the master maps no library file"
    for path in files:
        mine = os.path.join(site[-1], path.split("/site-packages/", 1)[1])
        try:
            same = os.path.samefile(path, mine)
        except OSError:  # (deleted), or not in this venv
            same = False
        if not same:
            return f"{path} is not {mine}"
    return ""


def chain_reload(stats: str, fifo: str, processes: int, timeout: float, venv: str | None) -> int:
    now = read_stats(stats)
    before = {w["pid"] for w in now["workers"]}
    why = other_libraries(int(now["pid"]), venv) if venv else ""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        reason = "no uWSGI master reads it" if exc.errno == errno.ENXIO else exc.strerror
        sys.stderr.write(f"cannot write to the master FIFO {fifo}: {reason}\n")
        return 1
    with os.fdopen(fd, "w") as pipe:
        pipe.write("r" if why else "c")
    deadline = time.monotonic() + timeout
    seen: list[dict] = []
    while time.monotonic() < deadline:
        time.sleep(POLL_S)  # the stats socket is cheap to read; the reload ends between two reads
        try:
            seen = workers(stats)
        except (OSError, ValueError):  # a re-executed master opens its stats socket anew
            continue
        pids = accepting(seen)
        if len(pids) == processes and not pids & before:
            reload = {"reload": "re-exec" if why else "chain", "why": why}
            print(json.dumps(reload | {"before": sorted(before), "after": sorted(pids)}))
            return 0
    sys.stderr.write(
        f"uWSGI workers not all replaced within {timeout:.0f} s (the new release does not load?);"
        f" {'re-exec: ' + why if why else 'chain reload'}; before {sorted(before)}, now {seen}\n"
    )
    return 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stats_socket", nargs="?", help="same as --stats")
    parser.add_argument("--stats")
    parser.add_argument("--fifo")
    parser.add_argument("--venv", help="with --fifo: re-exec a master whose libraries are not its")
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
        return chain_reload(args.stats, args.fifo, args.processes, args.timeout, args.venv)
    print(json.dumps(workers(args.stats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
