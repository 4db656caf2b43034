"""Run commands at the same time and report each one's outcome (tasks/reload_code.yml: the uWSGI
chain reload and the task processes' drain and start, in one round trip instead of a background
job, its polls and its cleanup).

python3 concurrently.py NAME SECONDS ARGV_JSON [NAME SECONDS ARGV_JSON ...]

Each command (ARGV_JSON: its argv as a JSON list) gets SECONDS; one still running then is killed
with its whole process group (it is started in a session of its own, as Ansible's async jobs
are). Prints one JSON object, NAME -> {"rc", "stdout", "stderr", "finished"} ("rc" None and
"finished" false for a command that was killed or could not start), and exits 0: the caller
decides what each outcome means. Exit 2 on bad usage. Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading


def run(argv: list[str], seconds: float, out: dict) -> None:
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        out.update(rc=None, stdout="", stderr=str(exc), finished=False)
        return
    try:
        stdout, stderr = proc.communicate(timeout=seconds)
        out.update(rc=proc.returncode, stdout=stdout, stderr=stderr, finished=True)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        out.update(rc=None, stdout=stdout, stderr=stderr, finished=False)


def main(args: list[str]) -> int:
    if not args or len(args) % 3:
        sys.stderr.write(__doc__)
        return 2
    jobs: dict[str, tuple[list[str], float]] = {}
    for i in range(0, len(args), 3):
        name, seconds, argv = args[i : i + 3]
        try:
            jobs[name] = (json.loads(argv), float(seconds))
        except ValueError:
            sys.stderr.write(f"{name}: SECONDS a number, ARGV_JSON a JSON list\n")
            return 2
        if not isinstance(jobs[name][0], list) or not jobs[name][0]:
            sys.stderr.write(f"{name}: ARGV_JSON must be a non-empty JSON list\n")
            return 2
    results: dict[str, dict] = {name: {} for name in jobs}
    threads = [
        threading.Thread(target=run, args=(argv, seconds, results[name]))
        for name, (argv, seconds) in jobs.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
