#!/usr/bin/python
"""Operations on what the coinex_chatbot role deployed on a host (playbooks/supervisorctl.yml,
playbooks/rolling_restart.yml through the role's `ops` entry point).

One call per host gathers (or acts) and returns plain data; every failure an operator can meet is
one line naming the host, the program and what to do (no traceback, no command dump).

op:
  check     the deployed-state record is there and supervisord answers (rows: none)
  status    rows (program, state, pid, uptime) of the target's processes
  start, stop, restart
            `supervisorctl start|stop|restart NAMES` of the target only (no `update`: pending
            changes of other programs stay pending), then its rows
  signal    `supervisorctl signal SIG NAMES`, then its rows
  env       per process: PYTHONPATH, LD_PRELOAD (from /proc/PID/environ), jemalloc mapped
            (/proc/PID/maps), besides the rows
  tail      the last `lines` lines of each target's log file, or of supervisord's own log
            (target=supervisord); works with supervisord down
  reread, update, avail
            `supervisorctl reread`, `update coinex_customer_chatbot` (the group only), `avail`
  releases  the releases on the host, oldest first, with their git commit and times; `current`
            marked
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

GROUP = "coinex_customer_chatbot"
SERVER = "coinex_customer_chatbot_server"
TASK = "coinex_customer_chatbot_task"
REDIS = "coinex_customer_chatbot_redis"
HAPROXY = "coinex_customer_chatbot_haproxy"
DEPLOY = "run the deploy (ansible-playbook playbooks/deploy.yml), which starts it"
SIGNALS = ("HUP", "INT", "QUIT", "KILL", "TERM", "USR1", "USR2", "CONT", "STOP", "TTIN", "TTOU")
ROW_STATES = ("RUNNING", "STARTING", "STOPPED", "STOPPING", "BACKOFF", "EXITED", "FATAL", "UNKNOWN")


class OpsError(Exception):
    """One line for the operator."""


def read_record(base: Path, host: str) -> dict:
    record_file = base / "shared" / "deployed.json"
    try:
        return json.loads(record_file.read_text())
    except FileNotFoundError:
        raise OpsError(
            f"nothing is deployed on {host} under {base} (no {record_file}): run the deploy"
            " (ansible-playbook playbooks/deploy.yml), or pass the base dir it used"
            " (-e coinex_chatbot_base_dir=DIR)"
        ) from None
    except (OSError, ValueError) as error:
        raise OpsError(f"cannot read {record_file} on {host} ({error}): run the deploy") from None


def supervisorctl(record: dict, *args: str) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            [*record["supervisorctl"], *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    except FileNotFoundError:
        return 127, f"{record['supervisorctl'][0]} not found"
    except subprocess.TimeoutExpired:
        return 124, "supervisorctl did not answer within 120 s"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def supervisord_down(output: str) -> bool:
    return (
        re.search(
            r"no such file|refused connection|SHUTDOWN_STATE|not found|did not answer", output
        )
        is not None
    )


def parse_status(output: str) -> dict[str, dict]:
    """supervisorctl status lines -> full name -> {state, pid, uptime, detail}."""
    rows: dict[str, dict] = {}
    for line in output.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2 or parts[1] not in ROW_STATES:
            continue
        detail = parts[2].strip() if len(parts) > 2 else ""
        pid = re.search(r"pid (\d+)", detail)
        uptime = re.search(r"uptime (\S+)", detail)
        rows[parts[0]] = {
            "state": parts[1],
            "pid": int(pid.group(1)) if pid else None,
            "uptime": uptime.group(1) if uptime else "",
            "detail": "" if pid else detail,
        }
    return rows


def short(name: str) -> str:
    return name.split(":", 1)[1] if ":" in name else name


def resolve(target: str, record: dict, listed: dict[str, dict], host: str) -> list[str]:
    """The target as full Supervisor process names on this host (every program of the deployment
    for `all`: the group's processes, then the others of the deployment such as local Redis)."""
    server = f"{GROUP}:{record.get('server', SERVER)}"
    tasks = [f"{GROUP}:{t}" for t in record.get("tasks", [])]
    group = [server, *tasks]
    others = sorted(n for n in listed if n.startswith(GROUP) and n not in group)
    t = target.rstrip("*").rstrip(":")
    if t in ("all", ""):
        return group + others
    if t == GROUP:
        return group
    if t in (SERVER, f"{GROUP}:{SERVER}"):
        return [server]
    if t in (TASK, f"{GROUP}:{TASK}"):
        return tasks
    match = re.fullmatch(rf"(?:{GROUP}:|{TASK}:)?({TASK}_\d\d)", t)
    if match:
        name = f"{GROUP}:{match.group(1)}"
        if name not in tasks:
            raise OpsError(
                f"no {match.group(1)} on {host}: it runs WS={record.get('ws')} task processes"
                f" ({', '.join(short(n) for n in tasks) or 'none'}); pick one of them"
            )
        return [name]
    if t == REDIS:
        if REDIS not in listed:
            raise OpsError(
                f"no {REDIS} program on {host}: only a local-mode deployment without"
                " coinex_chatbot_redis_url runs Redis under its supervisord"
                f" ({record.get('mode', '?')} mode here)"
            )
        return [REDIS]
    if t == HAPROXY:
        if HAPROXY not in listed:
            raise OpsError(
                f"no {HAPROXY} program on {host}: only a local-mode deployment runs haproxy"
                f" under its supervisord ({record.get('mode', '?')} mode here)"
            )
        return [HAPROXY]
    raise OpsError(
        f"no program {target} on {host}: use all, {GROUP}:*, {SERVER}, {TASK}, {TASK}_NN,"
        f" {REDIS} or {HAPROXY}"
    )


def status_rows(names: list[str], listed: dict[str, dict]) -> list[dict]:
    rows = []
    for name in names:
        missing = {"state": "MISSING", "pid": None, "uptime": "", "detail": "not in supervisord"}
        row = listed.get(name, missing)
        rows.append({"program": short(name), **row})
    return rows


def read_status(record: dict, host: str) -> dict[str, dict]:
    rc, output = supervisorctl(record, "status")
    if supervisord_down(output) or rc not in (0, 3):
        raise OpsError(f"supervisord is not running on {host}: {DEPLOY}")
    return parse_status(output)


def act(
    record: dict, host: str, op: str, names: list[str], signal: str, group_target: bool
) -> None:
    """supervisorctl start|stop|restart|signal on the names only (a group target as GROUP:*)."""
    args = [f"{GROUP}:*"] if group_target else names
    command = [op, *args] if op != "signal" else ["signal", signal, *args]
    rc, output = supervisorctl(record, *command)
    if supervisord_down(output):
        raise OpsError(f"supervisord is not running on {host}: {DEPLOY}")
    harmless = {"start": "already started", "stop": "not running", "restart": "not running"}
    harmless = harmless.get(op, "-")
    bad = [ln.strip() for ln in output.splitlines() if "ERROR" in ln and harmless not in ln]
    if bad or (rc != 0 and not output):
        name = short(bad[0].split(": ", 1)[0]) if bad else short(names[0])
        what = f"signal {signal}" if op == "signal" else op
        hint = (
            f"start it first (-e op=start -e target={name})"
            if "not running" in " ".join(bad)
            else f"read its log (-e op=tail -e target={name})"
        )
        problem = "; ".join(bad) or f"exit code {rc}"
        raise OpsError(f"{what} {name} on {host} failed: {problem}: {hint}")


def env_of(pid: int | None) -> dict:
    if not pid:
        return {"pythonpath": "-", "ld_preload": "-", "jemalloc": "-"}
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError as error:
        return {"pythonpath": f"({error.strerror})", "ld_preload": "?", "jemalloc": "?"}
    env = dict(item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {
        "pythonpath": env.get(b"PYTHONPATH", b"(unset)").decode(errors="replace"),
        "ld_preload": env.get(b"LD_PRELOAD", b"(unset)").decode(errors="replace"),
        "jemalloc": "yes" if "libjemalloc" in maps else "no",
    }


def supervisord_log(record: dict) -> Path:
    """supervisord's own log file: its config's [supervisord] logfile (local mode passes -c)."""
    argv = record["supervisorctl"]
    conf = Path("/etc/supervisor/supervisord.conf")
    if "-c" in argv:
        conf = Path(argv[argv.index("-c") + 1])
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(conf)
        logfile = parser.get("supervisord", "logfile", fallback="")
    except configparser.Error:
        logfile = ""
    logfile = logfile.replace("%(here)s", str(conf.parent))
    return Path(logfile or "/var/log/supervisor/supervisord.log")


def tail(path: Path, lines: int, host: str) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 200 * lines - 4096))
            data = handle.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        raise OpsError(f"no log {path} on {host} (the program never started there?)") from None
    except OSError as error:
        raise OpsError(f"cannot read {path} on {host}: {error.strerror}") from None
    return data[-lines:]


def releases(base: Path, record: dict) -> list[dict]:
    rel_dir = base / "releases"
    current = os.path.realpath(base / "current") if (base / "current").is_symlink() else ""
    rows = []
    for path in sorted(p for p in rel_dir.glob("*") if p.is_dir()):
        info: dict = {}
        try:
            info = json.loads((path / ".release.json").read_text())
        except (OSError, ValueError):
            info = {}
        try:
            went_live = (path / ".went_live").read_text().strip()
        except OSError:
            went_live = ""
        try:  # health.yml: the time and the check it failed (rollback.yml skips it)
            failed_gate = (path / ".failed_gate").read_text().strip()
        except OSError:
            failed_gate = ""
        commit = info.get("git_commit") or ""
        rows.append(
            {
                "release": path.name,
                "current": os.path.realpath(path) == current,
                "complete": (path / ".fingerprint").exists(),
                "git_commit": commit[:12] + ("+dirty" if info.get("git_dirty") else "")
                if commit
                else "unknown",
                "built": info.get("built_at", ""),
                "went_live": went_live,
                "failed_gate": failed_gate,
            }
        )
    if not rows:
        raise OpsError(f"no releases under {rel_dir} on {record.get('host', '')}: run the deploy")
    return rows


def run(module: AnsibleModule) -> dict:
    p = module.params
    host, op, target = p["host"], p["op"], p["target"]
    base = Path(p["base_dir"])
    record = read_record(base, host)
    release = Path(record.get("release", "")).name
    result: dict = {"changed": False, "ws": record.get("ws"), "release": release}
    if op == "releases":
        result["releases"] = releases(base, {**record, "host": host})
        return result
    if op == "tail":
        if target.rstrip("*").rstrip(":") == "supervisord":
            files = [("supervisord", supervisord_log(record))]
        else:
            try:
                listed = read_status(record, host)
            except OpsError:
                listed = {}
            # supervisord down: its logs are still there (local Redis included, if it has a log)
            names = resolve(target, record, listed or {REDIS: {}}, host)
            files = [(short(n), Path(record["log_dir"]) / f"{short(n)}.log") for n in names]
        result["logs"] = [
            {"program": name, "path": str(path), "lines": tail(path, p["lines"], host)}
            for name, path in files
        ]
        return result
    if target.rstrip("*").rstrip(":") == "supervisord":
        raise OpsError("target=supervisord is for op=tail (supervisord's own log) only")
    listed = read_status(record, host)
    if op == "check":
        return result
    if op in ("reread", "update", "avail"):
        if op == "update" and module.check_mode:
            result["output"] = ["(check mode: supervisorctl update not run)"]
            return result
        rc, output = supervisorctl(record, *([op, GROUP] if op == "update" else [op]))
        if rc != 0 or "ERROR" in output:
            raise OpsError(f"supervisorctl {op} on {host} failed: {output.splitlines()[-1:]}")
        result["output"] = output.splitlines()
        result["changed"] = (
            op == "update"
            and re.search(r"(updated|added|removed) process group", output) is not None
        )
        return result
    names = resolve(target, record, listed, host)
    if op in ("start", "stop", "restart", "signal"):
        result["changed"] = True
        if not module.check_mode:
            group_target = target.rstrip("*").rstrip(":") in (GROUP,) and op != "signal"
            act(record, host, op, names, p["signal"], group_target)
            listed = read_status(record, host)
    rows = status_rows(names, listed)
    if op == "env":
        for row in rows:
            row.update(env_of(row["pid"]))
    result["rows"] = rows
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "base_dir": {"type": "path", "required": True},
            "host": {"type": "str", "required": True},
            "op": {
                "type": "str",
                "required": True,
                "choices": [
                    *("check", "status", "start", "stop", "restart", "signal"),
                    *("env", "tail", "releases", "reread", "update", "avail"),
                ],
            },
            "target": {"type": "str", "default": "all"},
            "lines": {"type": "int", "default": 20},
            "signal": {"type": "str", "default": "HUP", "choices": list(SIGNALS)},
        },
        supports_check_mode=True,
    )
    try:
        module.exit_json(**run(module))
    except OpsError as error:
        module.fail_json(msg=str(error))


if __name__ == "__main__":
    main()
