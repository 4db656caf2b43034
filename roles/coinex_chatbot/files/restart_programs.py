"""Restart Supervisor programs all at once: stop every one in parallel (each drains on its
stopsignal within its stopwaitsecs), then start every one in parallel (each must reach RUNNING
after its startsecs).

python3 restart_programs.py SUPERVISORCTL [ARG ...] -- PROGRAM [PROGRAM ...]

`supervisorctl restart A B C` does the same one program after the other (stop A, stop B, stop
C, start A, ...), so its time grows with the number of programs. Prints supervisorctl's lines
("NAME: stopped", "NAME: started", errors) in program order; exits with the first non-zero exit
code of supervisorctl, else 0.
"""

import subprocess
import sys


def run_all(ctl: list[str], action: str, programs: list[str]) -> int:
    procs = [
        subprocess.Popen(
            [*ctl, action, name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name in programs
    ]
    rc = 0
    for proc in procs:
        out, _ = proc.communicate()
        sys.stdout.write(out)
        rc = rc or proc.returncode
    return rc


def main(argv: list[str]) -> int:
    if "--" not in argv:
        sys.stderr.write(__doc__)
        return 2
    sep = argv.index("--")
    ctl, programs = argv[:sep], argv[sep + 1 :]
    if not ctl or not programs:
        sys.stderr.write(__doc__)
        return 2
    stopped = run_all(ctl, "stop", programs)
    started = run_all(ctl, "start", programs)
    return stopped or started


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
