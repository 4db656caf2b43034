"""Redis failover drill of the fleet scenario, run on the controller (Docker CLI, standard library).

``kill``: finds the Redis primary (ROLE on each Redis container), notes the app hosts' supervised
process ids, ``docker kill``s the primary, then measures the seconds until the surviving Sentinels
name another host and until a conversation can be opened through the load balancer again; then
compares the process ids (no process restarted).
``rejoin``: ``docker start``s the old primary and measures the seconds until it is a connected
replica of the new one.
``primary``: the settled primary's container.
``topology``: each Redis container's address, role and link, run_id and maxmemory, and what its
Sentinel knows: the primary, the other Sentinels' and the replicas' addresses, CKQUORUM.
Passwords come from the environment: REDISCLI_AUTH (Redis's default user) and
FLEET_SENTINEL_AUTH (the Sentinels'). Prints the figures as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request


def docker(*argv: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        sys.exit(f"docker {' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def redis_cli(container: str, port: int, *command: str, auth: str = "REDISCLI_AUTH") -> list[str]:
    env = {"REDISCLI_AUTH": os.environ[auth]}
    done = subprocess.run(
        [
            "docker",
            "exec",
            "-e",
            "REDISCLI_AUTH",
            container,
            "timeout",
            "2",
            "redis-cli",
            "-p",
            str(port),
            "--no-auth-warning",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, **env},
    )
    return done.stdout.split() if done.returncode == 0 else []


def address(container: str) -> str:
    return docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container
    ).strip()


def pids(apps: list[str]) -> dict[str, str]:
    found = {}
    for app in apps:
        # supervisorctl status exits non-zero when a process is not RUNNING: its table still counts
        for line in docker("exec", app, "supervisorctl", "status", check=False).splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[1] == "RUNNING" and fields[2] == "pid":
                found[f"{app} {fields[0]}"] = fields[3].rstrip(",")
    return found


def api_ok(url: str) -> bool:
    request = urllib.request.Request(
        f"{url}/api/v1/conversations",
        data=b'{"lang": "en"}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2, context=ssl.create_default_context()) as r:
            return 200 <= r.status < 300
    except (OSError, urllib.error.URLError):
        return False


def settled_primary(args: argparse.Namespace) -> str:
    """The one Redis that says ROLE master and that every Sentinel names (an earlier outage may
    still be settling: at most 30 s)."""
    started = time.monotonic()
    while True:
        primaries = [c for c in args.redis if (redis_cli(c, 6379, "ROLE") or [""])[0] == "master"]
        named = {
            tuple(
                redis_cli(
                    c,
                    26379,
                    "SENTINEL",
                    "get-master-addr-by-name",
                    args.master_name,
                    auth="FLEET_SENTINEL_AUTH",
                )[:1]
            )
            for c in args.redis
        }
        if len(primaries) == 1 and named == {(address(primaries[0]),)}:
            return primaries[0]
        if time.monotonic() - started > 30:
            sys.exit(
                f"no settled Redis primary: ROLE master on {primaries}, Sentinels name {named}"
            )
        time.sleep(0.5)


def kill(args: argparse.Namespace) -> dict[str, object]:
    old = settled_primary(args)
    old_address = address(old)
    survivors = [c for c in args.redis if c != old]
    by_address = {address(c): c for c in survivors}
    before = pids(args.apps)
    started = time.monotonic()
    docker("kill", old)
    promoted_s, new = None, None
    while time.monotonic() - started < args.bound:
        for sentinel in survivors:
            named = redis_cli(
                sentinel,
                26379,
                "SENTINEL",
                "get-master-addr-by-name",
                args.master_name,
                auth="FLEET_SENTINEL_AUTH",
            )
            if named and named[0] != old_address and named[0] in by_address:
                candidate = by_address[named[0]]
                if (redis_cli(candidate, 6379, "ROLE") or [""])[0] == "master":
                    promoted_s, new = time.monotonic() - started, candidate
                    break
        if new:
            break
        time.sleep(0.2)
    api_back_s = None
    while new and time.monotonic() - started < args.bound + 15:
        if api_ok(args.url):
            api_back_s = time.monotonic() - started
            break
        time.sleep(0.2)
    after = pids(args.apps)
    return {
        "old_primary": old,
        "new_primary": new,
        "promoted_s": round(promoted_s, 1) if promoted_s is not None else None,
        "api_back_s": round(api_back_s, 1) if api_back_s is not None else None,
        "processes": len(before),
        "restarted": sorted(name for name in before if after.get(name) != before[name]),
    }


def rejoin(args: argparse.Namespace) -> dict[str, object]:
    new_address = address(args.new)
    started = time.monotonic()
    docker("start", args.old)
    fields: dict[str, str] = {}
    while time.monotonic() - started < args.bound:
        fields = redis_fields(args.old, "replication")
        if (
            fields.get("role") == "slave"
            and fields.get("master_host") == new_address
            and fields.get("master_link_status") == "up"
        ):
            return {
                "rejoined_s": round(time.monotonic() - started, 1),
                "role": "replica",
                "master": args.new,
            }
        time.sleep(0.5)
    return {"rejoined_s": None, "role": fields.get("role"), "master": fields.get("master_host")}


def pairs(flat: list[str]) -> list[dict[str, str]]:
    """redis-cli's lines of an array of maps (SENTINEL sentinels / replicas) as dicts."""
    found: list[dict[str, str]] = []
    for key, value in zip(flat[::2], flat[1::2], strict=False):
        if key == "name":
            found.append({})
        if found:
            found[-1][key] = value
    return found


def redis_fields(container: str, section: str) -> dict[str, str]:
    """One INFO section of a Redis container as a dict."""
    info = redis_cli(container, 6379, "INFO", section)
    return dict(item.split(":", 1) for item in info if ":" in item)


def topology(args: argparse.Namespace) -> dict[str, object]:
    hosts: dict[str, object] = {}
    for c in args.redis:
        fields = redis_fields(c, "replication")

        def sentinel(*command: str, container: str = c) -> list[str]:
            return redis_cli(container, 26379, "SENTINEL", *command, auth="FLEET_SENTINEL_AUTH")

        hosts[c] = {
            "address": address(c),
            "role": fields.get("role"),
            "master_host": fields.get("master_host"),
            "link": fields.get("master_link_status"),
            "bind": redis_cli(c, 6379, "CONFIG", "GET", "bind")[1:],
            "maxmemory": "".join(redis_cli(c, 6379, "CONFIG", "GET", "maxmemory")[1:]),
            "run_id": redis_fields(c, "server").get("run_id"),
            "sentinel_primary": sentinel("get-master-addr-by-name", args.master_name)[:1],
            "sentinels": sorted(s["ip"] for s in pairs(sentinel("sentinels", args.master_name))),
            "replicas": sorted(r["ip"] for r in pairs(sentinel("replicas", args.master_name))),
            "ckquorum": " ".join(sentinel("ckquorum", args.master_name)[:1]),
        }
    return hosts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="phase", required=True)
    killing = sub.add_parser("kill")
    killing.add_argument("--redis", nargs="+", required=True, help="the Redis containers")
    killing.add_argument("--apps", nargs="+", required=True, help="the app containers")
    killing.add_argument("--url", required=True, help="the load balancer")
    killing.add_argument("--master-name", required=True)
    killing.add_argument("--bound", type=float, default=30, help="longest wait for a promotion")
    joining = sub.add_parser("rejoin")
    joining.add_argument("--old", required=True)
    joining.add_argument("--new", required=True)
    joining.add_argument("--bound", type=float, default=60)
    for name in ("primary", "topology"):
        reading = sub.add_parser(name)
        reading.add_argument("--redis", nargs="+", required=True, help="the Redis containers")
        reading.add_argument("--master-name", required=True)
    args = parser.parse_args()
    phases = {
        "kill": kill,
        "rejoin": rejoin,
        "primary": lambda a: {"primary": settled_primary(a)},
        "topology": topology,
    }
    print(json.dumps(phases[args.phase](args)))


if __name__ == "__main__":
    main()
