"""One Dramatiq worker in this very process: what each Supervisor task program runs.

    python -m coinex_chatbot.worker [--threads N] [--shutdown-timeout MS] [--queues Q ...]

``dramatiq coinex_chatbot.tasks --processes 1`` made every task program two Python processes (a
main process that forks one worker process) and, on TERM, waited in one-second sleeps in both: a
drain took about 2.2 s, 2 s of it those sleeps. This runs the same ``dramatiq.Worker`` (the
runtime's broker, the actors of tasks.py, the middleware's process hooks: WarmUp loads the
knowledge base) in the process Supervisor starts and watches. TERM or INT drains it: the worker
threads finish the messages they hold within the shutdown timeout, the rest of what was fetched
goes back to the queue (runtime.ReconcilingConsumer), and it exits 0. A second signal exits at
once (1). A failing import or boot exits non-zero with its traceback on stderr.

Ready marker: under Supervisor, with ``CHATBOT_READY_DIR`` set (the role sets its run directory),
the process writes its pid to ``$CHATBOT_READY_DIR/$SUPERVISOR_PROCESS_NAME.ready`` once it has
booted (the knowledge base loaded, the consumers started), and removes it when it has drained.
The role's health gate waits for each task process's marker to hold that process's pid, so a
process that dies while booting is caught however long its boot takes (Supervisor's startsecs
alone sees only a death within its first seconds).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger("coinex_chatbot.worker")

EXIT_KILLED = 1  # a second TERM/INT during the drain
WAKE_S = 0.1
READY_DIR_ENV = "CHATBOT_READY_DIR"


def ready_marker() -> Path | None:
    """This process's ready marker, or None outside Supervisor or without ``CHATBOT_READY_DIR``."""
    directory, name = os.environ.get(READY_DIR_ENV), os.environ.get("SUPERVISOR_PROCESS_NAME")
    if not directory or not name or "/" in name:
        return None
    return Path(directory) / f"{name}.ready"


def _write_marker(marker: Path, text: str) -> None:
    part = marker.with_name(f".{marker.name}.{os.getpid()}")
    part.write_text(text)
    part.replace(marker)  # atomic: the gate never reads half a pid


def _remove_marker(marker: Path, pid: str) -> None:
    try:
        if marker.read_text() == pid:  # not a later process's
            marker.unlink()
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coinex_chatbot.worker", description=__doc__)
    parser.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    parser.add_argument(
        "--shutdown-timeout",
        type=int,
        default=600_000,
        help="ms the threads get to finish their messages after TERM (default 600000)",
    )
    parser.add_argument("--queues", nargs="*", help="queues to consume (default: all declared)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.shutdown_timeout < 0:
        parser.error("--threads must be at least 1 and --shutdown-timeout at least 0")

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            log.warning("%s again: exiting without waiting", signal.Signals(signum).name)
            os._exit(EXIT_KILLED)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    marker, pid = ready_marker(), str(os.getpid())
    if marker is not None:
        marker.unlink(missing_ok=True)  # the previous process's: this one is not ready yet

    import dramatiq

    from . import tasks  # noqa: F401  (declares the actor on the runtime's broker)
    from .logs import log_event

    broker = dramatiq.get_broker()
    broker.emit_after("process_boot")  # WarmUp: logging, the knowledge base
    worker = dramatiq.Worker(broker, queues=args.queues, worker_threads=args.threads)
    worker.start()
    if marker is not None:
        _write_marker(marker, pid)
    log_event(log, "worker ready", pid=os.getpid(), threads=args.threads)
    while not stop.wait(WAKE_S):  # a signal handler's set() is seen within WAKE_S
        pass
    log_event(log, "draining", timeout_ms=args.shutdown_timeout)
    worker.stop(timeout=args.shutdown_timeout)
    broker.close()
    if marker is not None:
        _remove_marker(marker, pid)
    log_event(log, "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
