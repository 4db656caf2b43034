"""What supervisord runs, in one round trip (tasks/supervisor.yml runs it with the target Python).

python3 supervisor_state.py SUPERVISORCTL [ARG ...]

Prints one JSON object:
  running    supervisord answers (``supervisorctl pid`` gives a number); when it does not,
             the rest is empty
  reread     what ``supervisorctl reread`` prints (which program groups differ from their files;
             it changes no process), and reread_rc its exit code
  status     program (group:name) -> state (RUNNING, STOPPED, EXITED, FATAL, ...)
  via        "xmlrpc" or "supervisorctl": how it asked
Exits 0 (no supervisorctl at all, e.g. check mode on a new host, is "not running").

The three questions go to supervisord's unix socket as one XML-RPC ``system.multicall`` (the
socket and the [supervisorctl] section come from the configuration supervisorctl would read: its
``-c`` file, else its default search list), and the answers are written the way supervisorctl
writes them. Starting supervisorctl three times costs about 0.15 s of CPU each, which a no-op
deploy's probe pays on every host. When supervisorctl's configuration cannot be used that way (no
file found, a TCP server URL, a username), it asks supervisorctl itself, three processes at once.
"""

from __future__ import annotations

import configparser
import http.client
import json
import os
import socket
import subprocess
import sys
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor

CANT_REREAD, SHUTDOWN_STATE = 92, 6  # supervisor.xmlrpc.Faults


def ctl(argv: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([*argv, *args], capture_output=True, text=True, check=False)
    except FileNotFoundError as error:  # no supervisorctl yet (check mode on a new host)
        return subprocess.CompletedProcess([*argv, *args], 127, "", str(error))


def config_file(argv: list[str]) -> str | None:
    """The file supervisorctl ``argv`` reads: its -c/--configuration, else the first of its search
    list (supervisor.options.Options) that exists."""
    for i, arg in enumerate(argv[1:], 1):
        if arg in ("-c", "--configuration") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--configuration="):
            return arg.split("=", 1)[1]
    here = os.path.dirname(os.path.dirname(os.path.abspath(argv[0])))
    for path in (
        os.path.join(here, "etc", "supervisord.conf"),
        os.path.join(here, "supervisord.conf"),
        "supervisord.conf",
        "etc/supervisord.conf",
        "/etc/supervisord.conf",
        "/etc/supervisor/supervisord.conf",
    ):
        if os.path.isfile(path):
            return path
    return None


def socket_path(argv: list[str]) -> str | None:
    """The unix socket supervisorctl ``argv`` talks to; None when it is configured otherwise
    (or when its options go beyond -c): supervisorctl is asked instead."""
    opts = argv[1:]
    if opts and not (
        (len(opts) == 2 and opts[0] in ("-c", "--configuration"))
        or (len(opts) == 1 and opts[0].startswith("--configuration="))
    ):
        return None
    path = config_file(argv)
    if path is None:
        return None
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    try:
        parser.read(path)
    except (OSError, configparser.Error):
        return None
    section = dict(parser.items("supervisorctl")) if parser.has_section("supervisorctl") else {}
    url = section.get("serverurl", "").replace("%(here)s", os.path.dirname(os.path.abspath(path)))
    if not url.startswith("unix://") or section.get("username"):
        return None
    return url.removeprefix("unix://")


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host: object) -> http.client.HTTPConnection:
        return UnixConnection(self.path)


def reread_text(answer: object) -> tuple[str, int]:
    """supervisorctl reread's output and exit code for a reloadConfig answer (or fault)."""
    if isinstance(answer, dict):  # a fault inside the multicall
        code, text = answer.get("faultCode"), answer.get("faultString", "")
        if code == SHUTDOWN_STATE:
            return "ERROR: supervisor shutting down", 1
        return f"ERROR: {text}" if code == CANT_REREAD else f"ERROR: {code} {text}", 1
    added, changed, dropped = answer[0]  # type: ignore[index]
    names = {n: "available" for n in added} | {n: "changed" for n in changed}
    names |= {n: "disappeared" for n in dropped}
    if not names:
        return "No config updates to processes", 0
    return "\n".join(f"{n}: {names[n]}" for n in sorted(names)), 0


def by_xmlrpc(path: str) -> dict:
    proxy = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(path))
    calls = ["supervisor.getPID", "supervisor.reloadConfig", "supervisor.getAllProcessInfo"]
    try:
        pid, reread, infos = proxy.system.multicall(
            [{"methodName": m, "params": []} for m in calls]
        )
    except (OSError, xmlrpc.client.Error, http.client.HTTPException):
        return {"running": False, "reread": "", "reread_rc": 0, "status": {}, "via": "xmlrpc"}
    text, rc = reread_text(reread)
    status = {}
    for info in infos if isinstance(infos, list) else []:  # supervisord's multicall: unwrapped
        group, name = info["group"], info["name"]
        status[name if group == name else f"{group}:{name}"] = info["statename"]
    running = isinstance(pid, int)  # a fault is a dict
    return {"running": running, "reread": text, "reread_rc": rc, "status": status, "via": "xmlrpc"}


def by_supervisorctl(argv: list[str]) -> dict:
    # the three questions at the same time (each is a supervisorctl process): as long as one
    with ThreadPoolExecutor(3) as pool:
        pid, reread, status = pool.map(lambda a: ctl(argv, a), ["pid", "reread", "status"])
    state: dict = {
        "running": pid.stdout.strip().isdigit(),
        "reread": "",
        "reread_rc": 0,
        "status": {},
        "via": "supervisorctl",
    }
    if state["running"]:
        state["reread"] = (reread.stdout + reread.stderr).strip()
        state["reread_rc"] = reread.returncode
        for line in status.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 2:
                state["status"][fields[0]] = fields[1]
    return state


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(__doc__ or "")
        return 2
    path = socket_path(argv)
    print(json.dumps(by_xmlrpc(path) if path else by_supervisorctl(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
