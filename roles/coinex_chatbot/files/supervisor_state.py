"""What supervisord runs, in one round trip (tasks/supervisor.yml runs it with the target Python).

python3 supervisor_state.py SUPERVISORCTL [ARG ...]

Prints one JSON object:
  running    supervisord answers (``supervisorctl pid`` gives a number); when it does not,
             the rest is empty (the three are asked at the same time)
  reread     the output of ``supervisorctl reread`` (which program groups differ from their
             files; it changes no process), and reread_rc its exit code
  status     program (group:name) -> state (RUNNING, STOPPED, EXITED, FATAL, ...)
Exits 0 (no supervisorctl at all, e.g. check mode on a new host, is "not running").
"""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def ctl(argv: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([*argv, *args], capture_output=True, text=True, check=False)
    except FileNotFoundError as error:  # no supervisorctl yet (check mode on a new host)
        return subprocess.CompletedProcess([*argv, *args], 127, "", str(error))


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    # the three questions at the same time (each is a supervisorctl process): as long as one
    with ThreadPoolExecutor(3) as pool:
        pid, reread, status = pool.map(lambda a: ctl(argv, a), ["pid", "reread", "status"])
    state: dict = {
        "running": pid.stdout.strip().isdigit(),
        "reread": "",
        "reread_rc": 0,
        "status": {},
    }
    if state["running"]:
        state["reread"] = (reread.stdout + reread.stderr).strip()
        state["reread_rc"] = reread.returncode
        for line in status.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 2:
                state["status"][fields[0]] = fields[1]
    print(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
