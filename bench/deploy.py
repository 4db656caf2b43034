"""Deploy speed of playbooks/deploy.yml on systemd Debian 12 containers, started the way
Molecule's default scenario does (needs ``scripts/docker-engine start`` and the image of
``molecule/images/build debian12``): a fresh converge of one host (no compiler may end up on
it), no-op reruns against the floor (facts and a ping), module round trips with pipelining on
and off, a code-only release (app/ with its version bumped), a fresh converge of three hosts in
one run. Each connection of --connections in turn, in one run: ``ssh`` as production deploys
(sshd in the container, the user ``deploy`` with NOPASSWD sudo, become, host keys checked
against the run's own known_hosts, the repository's ssh_args: ControlPersist, pipelining) and
``docker`` (Molecule's connection). The controller's wheelhouse cache is warmed first; the
containers are removed at the end.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import common
import yaml
from common import ROOT, VENV_BIN, BenchError

IMAGE = "coinex-chatbot/debian12-systemd:latest"
PLAYBOOK = ROOT / "playbooks" / "deploy.yml"
DOCKER_RUN = [  # the options of molecule/default/molecule.yml's platforms
    "--detach", "--cgroupns=host", "--security-opt=seccomp=unconfined", "--cap-add=SYS_PTRACE",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs=/run", "--tmpfs=/run/lock",
    "--tmpfs=/tmp", "--stop-signal=SIGRTMIN+3", "--sysctl=net.ipv4.tcp_migrate_req=1",
]  # fmt: skip
COMPILERS = "command -v gcc cc c++ g++ clang; ls /usr/bin/*gcc* /usr/bin/*g++* /usr/bin/clang* \
/usr/lib/gcc/*/*/cc1 2>/dev/null; true"
ROUNDTRIP_TASKS = 20
TARGETS = {"fresh1": 120.0, "noop": 3.0, "fresh3": 1.3, "code": 15.0, "make": 1.5}
LOADGEN = ROOT / "molecule" / "fleet" / "files" / "loadgen.py"
# a container made a production host: its own host keys, sshd with keys only, `deploy` with the
# run's key and NOPASSWD sudo (molecule/fleet/tasks/ssh_host.yml does the same for the fleet)
SSH_HOST = """set -eu
ssh-keygen -A >/dev/null
printf 'PasswordAuthentication no\\nKbdInteractiveAuthentication no\\nPermitRootLogin no\\n' \\
  >/etc/ssh/sshd_config.d/bench.conf
systemctl restart ssh
id deploy >/dev/null 2>&1 || useradd -m -s /bin/bash deploy
install -d -m 0700 -o deploy -g deploy ~deploy/.ssh
printf '%s\\n' "$1" >~deploy/.ssh/authorized_keys
chown deploy:deploy ~deploy/.ssh/authorized_keys
echo 'deploy ALL=(ALL:ALL) NOPASSWD: ALL' >/etc/sudoers.d/deploy
chmod 0440 /etc/sudoers.d/deploy
cat /etc/ssh/ssh_host_ed25519_key.pub
"""


def sources_digest() -> str:
    """Hash of what a deploy reads (role, playbooks, ansible.cfg, app source): the checkout is
    shared, so a change during the run is reported next to the figures."""
    h = hashlib.sha256()
    for base in (
        "ansible.cfg",
        "roles",
        "playbooks",
        "app/src",
        "app/pyproject.toml",
        "app/requirements.lock",
    ):
        top = ROOT / base
        for path in sorted(top.rglob("*")) if top.is_dir() else [top]:
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def run_cmd(*argv: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def changed(run: dict[str, Any]) -> int:
    return sum(host.get("changed", 0) for host in run["recap"].values())


class Deploy:
    """Containers, inventories and playbook runs of one benchmark run."""

    def __init__(self, workdir: Path, ws: int, ssh: bool, mitogen: Path | None) -> None:
        self.workdir, self.ws, self.runs, self.containers = workdir, ws, 0, []
        self.run_id = uuid.uuid4().hex[:6]
        self.ssh, self.addresses = ssh, {}
        self.connection = "ssh" if ssh else "docker" if mitogen else "community.docker.docker"
        self.env = {k: v for k, v in os.environ.items() if k != "WS"} | {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        }
        if ssh:  # the repository's ssh_args, plus the run's key and known_hosts (checked)
            key = workdir / "id_ed25519"
            made = run_cmd("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
            if made.returncode != 0:
                raise BenchError(f"ssh-keygen: {made.stderr.strip()}")
            cfg = configparser.ConfigParser(interpolation=None)
            cfg.read(ROOT / "ansible.cfg")
            args = cfg.get("ssh_connection", "ssh_args")
            self.env |= {
                "ANSIBLE_PRIVATE_KEY_FILE": str(key),
                "ANSIBLE_SSH_ARGS": f"{args} -o UserKnownHostsFile={workdir / 'known_hosts'} "
                "-o StrictHostKeyChecking=yes",
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(workdir / "cp"),
            }
        if mitogen:  # opt-in: Mitogen's strategy (it wraps the docker connection)
            strategy = mitogen.resolve() / "ansible_mitogen" / "plugins" / "strategy"
            if not strategy.is_dir():
                raise BenchError(f"{strategy} missing: --mitogen wants the directory above it")
            self.env |= {"ANSIBLE_STRATEGY_PLUGINS": str(strategy)}
            self.env |= {"ANSIBLE_STRATEGY": "mitogen_linear"}

    def start_containers(self, count: int) -> list[str]:
        names = [f"bench-deploy-{self.run_id}-{len(self.containers) + i + 1}" for i in range(count)]
        for name in names:
            out = run_cmd("docker", "run", f"--name={name}", f"--hostname={name}", *DOCKER_RUN,
                          IMAGE, "/lib/systemd/systemd")  # fmt: skip
            if out.returncode != 0:
                raise BenchError(f"docker run {name} failed: {out.stderr.strip()}")
            self.containers.append(name)
        for name in names:  # systemd up (degraded is fine: some units cannot run in a container)

            def up(name: str = name) -> bool:
                time.sleep(0.5)  # before PID 1 has its bus, systemctl fails at once
                out = run_cmd("docker", "exec", name, "systemctl", "is-system-running", "--wait")
                return out.stdout.strip() in ("running", "degraded")

            common.wait_for(up, 90, f"systemd in {name}")
            if self.ssh:
                self.ssh_host(name)
        return names

    def ssh_host(self, name: str) -> None:
        """sshd and `deploy` in the container; its address and host key for the inventory."""
        public = (self.workdir / "id_ed25519.pub").read_text().strip()
        out = run_cmd("docker", "exec", name, "bash", "-c", SSH_HOST, "ssh_host", public)
        if out.returncode != 0:
            raise BenchError(f"sshd in {name}: {out.stderr.strip()}")
        key = " ".join(out.stdout.strip().splitlines()[-1].split()[:2])
        template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        address = run_cmd("docker", "inspect", "-f", template, name).stdout.strip()
        with (self.workdir / "known_hosts").open("a") as known:
            known.write(f"{address} {key}\n")
        self.addresses[name] = address

    def remove_containers(self) -> None:
        for name in self.containers:
            run_cmd("docker", "rm", "--force", "--volumes", name)

    def playbook(
        self, what: str, playbook: Path, hosts: list, src: Path = ROOT / "app", **env: str
    ):
        """One ansible-playbook run (production mode, Molecule's variables, throw-away secrets):
        wall time, each host's recap counters, the slowest tasks, the load around it."""
        secret = "{{ lookup('ansible.builtin.password', '%s/%s', length=%d, "
        secret += "chars=['ascii_letters', 'digits']) }}"
        group_vars = {
            "ansible_connection": self.connection,
            **({"ansible_user": "deploy", "ansible_become": True} if self.ssh else {}),
            "coinex_chatbot_mode": "production",
            "coinex_chatbot_ws": self.ws,
            "coinex_chatbot_base_dir": "/opt/coinex_chatbot",
            "coinex_chatbot_app_src": str(src),
            "coinex_chatbot_secret_key": secret % (self.workdir, "secret_key", 40),
            "coinex_chatbot_redis_password": secret % (self.workdir, "redis_password", 32),
            # the load during the code-only release counts every non-2xx answer as failed
            "coinex_chatbot_rate_limit_ip": 0,
            "coinex_chatbot_rate_limit_conversation": 0,
        }
        hostvars = {h: {"ansible_host": self.addresses[h]} if self.ssh else {} for h in hosts}
        chatbot = {"hosts": hostvars, "vars": group_vars}
        inventory = {"chatbot": chatbot, "redis": {"hosts": {}}}
        self.runs += 1
        (inv := self.workdir / f"inventory-{self.runs}.json").write_text(json.dumps(inventory))
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inv), str(playbook)]
        if playbook == PLAYBOOK:  # as molecule/default/converge.yml: all hosts in one batch
            argv += ["-e", '{"coinex_chatbot_serial": ["100%"]}']
        before, started = common.loadavg(), time.monotonic()
        # CPU: the controller's (ansible-playbook and everything it started, reaped when it
        # ends) and the whole machine's busy time (the controller, the hosts' containers, and
        # any other job)
        children, busy = resource.getrusage(resource.RUSAGE_CHILDREN), common.busy_cpu_seconds()
        proc = run_cmd(*argv, timeout=1800, cwd=ROOT, env=self.env | env)
        seconds, output = time.monotonic() - started, proc.stdout + proc.stderr
        busy = common.busy_cpu_seconds() - busy
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        controller = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        (log := self.workdir / f"{self.runs:02d}-{what}.log").write_text(output)
        recap = {
            host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
            for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE)
        }
        slowest = re.findall(r"^(.+?) -+ (\d+\.\d+)s\s*$", output, re.MULTILINE)[:6]
        run = {
            "what": what,
            "seconds": seconds,
            "rc": proc.returncode,
            "recap": recap,
            "log": str(log),
            "controller_cpu_s": controller,
            "busy_cpu_s": busy,
        }
        run |= {"load_before": before, "load_after": common.loadavg()}
        run["slowest"] = [f"{name.strip()} ({secs} s)" for name, secs in slowest]
        load = f"load {before} -> {run['load_after']}"
        print(f"  {what}: {seconds:.1f} s, rc={proc.returncode}, changed={changed(run)}, {load}")
        failed = sum(r.get("failed", 0) + r.get("unreachable", 0) for r in recap.values())
        if proc.returncode != 0 or failed or set(recap) != set(hosts):
            raise BenchError(f"{what} failed (rc {proc.returncode}); log: {log}\n{output[-3000:]}")
        return run

    def play(self, name: str, tasks: list[dict[str, Any]], **play: object) -> Path:
        path = self.workdir / f"{name.split()[0].lower()}.yml"
        path.write_text(
            yaml.safe_dump([{"name": name, "hosts": "chatbot", **play, "tasks": tasks}])
        )
        return path

    def warm_wheelhouse(self, host: str) -> float:
        """Build (or find cached) the controller's wheelhouse for this host, untimed by the
        deploys: the role's own script with the role's default cache and arguments."""
        probe = "import platform; print(platform.python_version(), platform.machine())"
        target = ":".join(run_cmd("docker", "exec", host, "python3", "-c", probe).stdout.split())
        role_vars = common.role_vars()
        supervisor = role_vars["coinex_chatbot_local_supervisor_version"]
        uv = role_vars["coinex_chatbot_uv_version"]
        started = time.monotonic()
        out = run_cmd(
            str(VENV_BIN / "python"), str(common.ROLE / "files" / "build_wheelhouse.py"),
            "--app-src", str(ROOT / "app"), "--lock", str(ROOT / "app" / "requirements.lock"),
            "--cache", str(Path.home() / ".cache" / "coinex_chatbot"),
            "--extra", f"supervisor=={supervisor}", "--extra", f"uv=={uv}", f"--target={target}",
            timeout=900,
        )  # fmt: skip
        if out.returncode != 0:
            raise BenchError(f"wheelhouse build failed: {out.stderr}")
        return time.monotonic() - started


def bumped_app(workdir: Path) -> tuple[Path, str]:
    """A copy of app/ whose version is bumped (a new app hash: the role makes a new release)."""
    skip = shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", "build", "dist", ".*cache")
    shutil.copytree(ROOT / "app", dest := workdir / "app-bumped", ignore=skip)
    text = (dest / "pyproject.toml").read_text()
    if not (m := re.search(r'^version = "([^"]+)"$', text, re.MULTILINE)):
        raise BenchError("no version line in app/pyproject.toml")
    new = f"{m.group(1)}.post{int(time.time())}"
    (dest / "pyproject.toml").write_text(text.replace(m.group(0), f'version = "{new}"'))
    return dest, new


class Load:
    """loadgen.py inside the container (copied to /root: `docker cp` does not reach the /tmp
    tmpfs), 4 connections on the host's own URL, GETs and chat
    posts) for the duration of the block; .result holds its figures (requests, failed)."""

    def __init__(self, host: str, port: int = 8000) -> None:
        self.host, self.port, self.result = host, port, {}

    def __enter__(self) -> Load:
        if run_cmd("docker", "cp", str(LOADGEN), f"{self.host}:/root/loadgen.py").returncode:
            raise BenchError("docker cp loadgen.py failed")
        run_cmd("docker", "exec", self.host, "rm", "-f", "/tmp/load.stop", "/tmp/load.json")
        out = run_cmd("docker", "exec", "--detach", self.host, "sh", "-c",
                      f"exec python3 /root/loadgen.py --url http://127.0.0.1:{self.port}"
                      " --connections 4 --stop-file /tmp/load.stop --max-seconds 900"
                      " --settle-seconds 30 --out /tmp/load.json 2>/tmp/load.err")  # fmt: skip
        if out.returncode:
            raise BenchError(f"loadgen did not start: {out.stderr}")
        time.sleep(2)  # under way before the release starts
        return self

    def __exit__(self, *exc: object) -> None:
        run_cmd("docker", "exec", self.host, "touch", "/tmp/load.stop")

        def done() -> bool:
            out = run_cmd("docker", "exec", self.host, "cat", "/tmp/load.json")
            if out.returncode == 0 and out.stdout.strip():
                self.result = json.loads(out.stdout)
                return True
            time.sleep(1)
            return False

        try:
            common.wait_for(done, 300, "loadgen's figures")
        except AssertionError as exc:  # the figures say so; the deploy's own figures stand
            err = run_cmd("docker", "exec", self.host, "tail", "-c", "600", "/tmp/load.err")
            self.result = {"error": f"{exc}; loadgen stderr: {err.stdout.strip()}"}


def make_deploy(workdir: Path, repeats: int) -> dict[str, Any]:
    """Local mode on this machine (a temporary base dir, free ports): one deploy, then no-op runs
    of `make deploy` and of the bare `ansible-playbook deploy.yml`, alternating; then stopped."""
    base = workdir / "local"
    ports = [str(common.free_port()) for _ in range(2)]
    extra = f"-e coinex_chatbot_base_dir={base} -e coinex_chatbot_http_port={ports[0]} "
    extra += f"-e coinex_chatbot_local_redis_port={ports[1]}"
    env = {k: v for k, v in os.environ.items() if k != "WS"} | {"ANSIBLE_NOCOLOR": "1"}
    bare = [str(VENV_BIN / "ansible-playbook"), "deploy.yml", *extra.split()]
    make = ["make", "--no-print-directory", "deploy", f"DEPLOY_ARGS={extra}"]
    res: dict[str, Any] = {"make": [], "bare": []}
    try:
        for i in range(repeats + 1):
            for what, argv in (("bare", bare), ("make", make)):
                started = time.monotonic()
                out = run_cmd(*argv, timeout=1800, cwd=ROOT, env=env)
                seconds = time.monotonic() - started
                if out.returncode != 0 or (not re.search(r"changed=0\s", out.stdout) and i):
                    raise BenchError(f"{' '.join(argv)}: rc {out.returncode}\n{out.stdout[-3000:]}")
                if i:  # the first bare run deploys
                    res[what].append(seconds)
                print(f"  local {what} {'deploy' if not i else 'no-op'}: {seconds:.1f} s")
    finally:
        ctl = base / "tools" / "venv" / "bin" / "supervisorctl"
        if ctl.exists():
            run_cmd(str(ctl), "-c", str(base / "local_supervisord.conf"), "shutdown")
    return res


def measure(args: Any, d: Deploy) -> dict[str, Any]:
    floor = d.play("Floor (facts and a ping)", [{"ansible.builtin.ping": {}}], gather_facts=True)
    stats = [{"ansible.builtin.stat": {"path": "/etc/hostname"}} for _ in range(ROUNDTRIP_TASKS)]
    trips = d.play("Module round trips", stats, gather_facts=False, become=True)
    print("one fresh host")
    one = d.start_containers(1)
    res: dict[str, Any] = {"wheelhouse_warm_s": d.warm_wheelhouse(one[0])}
    res["fresh1"] = d.playbook("fresh-1-host", PLAYBOOK, one)
    print(f"no-op reruns and the floor, {args.repeats} each, alternating")
    for i in range(args.repeats):
        res.setdefault("floors", []).append(d.playbook(f"floor-{i + 1}", floor, one))
        res.setdefault("noops", []).append(d.playbook(f"noop-{i + 1}", PLAYBOOK, one))
    print(f"module round trips: {ROUNDTRIP_TASKS} stat tasks, pipelining on and off")
    res["roundtrips"] = {"on": [], "off": []}
    for i, mode in enumerate(("on", "off") * 2):
        pipelining = {"ANSIBLE_PIPELINING": str(mode == "on")}
        run = d.playbook(f"roundtrip-pipelining-{mode}-{i // 2 + 1}", trips, one, **pipelining)
        res["roundtrips"][mode].append(run["seconds"])
    print("code-only release")
    before = run_cmd("docker", "exec", one[0], "readlink", "/opt/coinex_chatbot/current").stdout
    app_src, version = bumped_app(d.workdir)
    with Load(one[0]) as load:
        res["code"] = d.playbook("code-release", PLAYBOOK, one, app_src)
    res["code_load"] = load.result
    after = run_cmd("docker", "exec", one[0], "readlink", "/opt/coinex_chatbot/current").stdout
    if after == before or not Path(after.strip()).name.startswith(version + "-"):
        raise BenchError(f"code release: current went {before} -> {after}, not to {version}-*")
    res["code_release"] = f"{Path(before.strip()).name} -> {Path(after.strip()).name}"
    hosts = one
    if not args.no_three:
        print("three fresh hosts in one run")
        hosts = one + (three := d.start_containers(3))
        res["fresh3"] = d.playbook("fresh-3-hosts", PLAYBOOK, three)
    res["compilers"] = {
        host: sorted(set(run_cmd("docker", "exec", host, "bash", "-c", COMPILERS).stdout.split()))
        for host in hosts
    }
    return res


def cpu_detail(run: dict[str, Any], cores: int) -> str:
    """What a playbook run cost in CPU: the controller's, and the whole machine's busy time."""
    if "busy_cpu_s" not in run:  # a run recorded before the CPU was measured
        return "CPU not measured"
    busy, controller = run["busy_cpu_s"], run["controller_cpu_s"]
    average = busy / run["seconds"]
    return (
        f"CPU: controller {controller:.1f} s, machine busy {busy:.1f} core-s "
        f"({average:.2f} of {cores} cores on average)"
    )


def cpu_bound(fresh3: dict[str, Any], fresh1: dict[str, Any], cores: int) -> str:
    """The shortest the 3-host converge could be on this machine's cores: its CPU work spread
    perfectly over every core, as a ratio to the 1-host converge."""
    if "busy_cpu_s" not in fresh3:
        return "CPU bound not measured"
    floor = fresh3["busy_cpu_s"] / cores
    return (
        f"its CPU work alone, spread over all {cores} cores, takes {floor:.1f} s "
        f"= {floor / fresh1['seconds']:.2f}x the 1-host converge"
    )


def rows(res: dict[str, Any]) -> list[dict[str, str]]:
    """The table's rows: measurement, wall s, ratio, target, met, detail."""
    fresh1, fresh3, code, noops = res["fresh1"], res.get("fresh3"), res["code"], res["noops"]
    no_cc = not any(res["compilers"].values())
    floor, noop = (statistics.median(r["seconds"] for r in res[k]) for k in ("floors", "noops"))
    noop_changed = max(changed(r) for r in noops)
    ratio3 = [fresh3["seconds"] / fresh1["seconds"]] if fresh3 else []
    load = res.get("code_load", {})
    code_ok = code["seconds"] <= TARGETS["code"] and load.get("failed", 1) == 0

    runs = {k: ", ".join(f"{r['seconds']:.1f}" for r in res[k]) for k in ("floors", "noops")}
    cores = os.cpu_count() or 1
    compilers = "none" if no_cc else json.dumps(res["compilers"])
    table = [
        ("Fresh converge, 1 host", fresh1["seconds"], "-", f"<= {TARGETS['fresh1']:.0f} s",
         fresh1["seconds"] <= TARGETS["fresh1"] and no_cc,
         f"compilers on the hosts: {compilers}; {cpu_detail(fresh1, cores)}"),
        ("Floor: facts + ping, 1 host", floor, "1.00", "-", None, "facts gathered once, as "
         "the no-op rerun gathers them (ansible.cfg: in-memory facts, one run); runs: "
         + runs["floors"]),
        ("No-op rerun, 1 host", noop, f"{noop / floor:.2f}", f"<= {TARGETS['noop']:.1f}x floor, "
         "changed=0", noop / floor <= TARGETS["noop"] and noop_changed == 0,
         f"runs: {runs['noops']}; changed (max of runs) = {noop_changed}"),
        *[("Fresh converge, 3 hosts in one run", fresh3["seconds"], f"{ratio:.2f}",
           f"<= {TARGETS['fresh3']:.1f}x 1 host", ratio <= TARGETS["fresh3"] and no_cc,
           f"ratio to the 1-host converge; {cpu_detail(fresh3, cores)}; "
           f"{cpu_bound(fresh3, fresh1, cores)}") for ratio in ratio3],
        ("Code-only release under load (reload + health gate), 1 host", code["seconds"], "-",
         f"<= {TARGETS['code']:.0f} s, 0 failed requests", code_ok,
         f"release {res['code_release']}, changed={changed(code)}; load: "
         f"{load.get('requests', '?')} requests, {load.get('failed', '?')} failed"),
    ]  # fmt: skip
    met = {None: "-", True: "**met**", False: "**not met**"}
    headers = ["measurement", "wall s", "ratio", "target", "met", "detail"]
    return [
        dict(zip(headers, [w, f"{s:.1f}", r, t, met[ok], d], strict=True))
        for w, s, r, t, ok, d in table
    ]


def local_rows(local: dict[str, Any]) -> list[dict[str, str]]:
    """The local-mode row: a no-op `make deploy` against the bare playbook's no-op."""
    make, bare = (statistics.median(local[k]) for k in ("make", "bare"))
    ok = make / bare <= TARGETS["make"]
    detail = f"bare `ansible-playbook deploy.yml` no-op: {bare:.1f} s (median); runs make "
    detail += ", ".join(f"{x:.1f}" for x in local["make"]) + "; bare "
    detail += ", ".join(f"{x:.1f}" for x in local["bare"])
    met = "**met**" if ok else "**not met**"
    row = ["No-op `make deploy` (local mode, this machine)", f"{make:.1f}", f"{make / bare:.2f}",
           f"<= {TARGETS['make']:.1f}x the bare playbook", met, detail]  # fmt: skip
    headers = ["measurement", "wall s", "ratio", "target", "met", "detail"]
    return [dict(zip(headers, row, strict=True))]


def section(res: dict[str, Any]) -> str:
    runs = res["runs"]
    return common.SECTIONS.get_template("deploy.md").render(
        res=res,
        runs=runs,
        meta=res["meta"],
        host=res["meta"]["machine"],
        ansible=common.tool_version([str(VENV_BIN / "ansible-playbook"), "--version"]),
        tables={name: common.table(rows(run), "lrrlll") for name, run in runs.items()},
        local=common.table(local_rows(res["local"]), "lrrlll") if res.get("local") else "",
        tasks=ROUNDTRIP_TASKS,
        trips={
            name: [statistics.median(run["roundtrips"][m]) for m in ("on", "off")]
            for name, run in runs.items()
        },
    )


def main(argv: list[str]) -> int:
    p = common.parser("deploy", __doc__, ())
    p.add_argument("--repeats", type=int, default=3, help="no-op reruns and floor runs (medians)")
    p.add_argument("--ws", type=int, default=3, help="coinex_chatbot_ws of the deploys")
    p.add_argument("--no-three", action="store_true", help="skip the three-host converge")
    p.add_argument(
        "--connections", default="ssh,docker", help="measured in turn: ssh, docker or both"
    )
    p.add_argument("--no-make", action="store_true", help="skip the local make deploy no-op")
    p.add_argument("--mitogen", type=Path, help="opt-in: directory holding ansible_mitogen")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep each connection's playbook logs")
    p.add_argument("--from-json", type=Path, help="measure nothing: the section of a --json file")
    args = p.parse_args(argv)
    connections = args.connections.split(",")
    if not connections or set(connections) - {"ssh", "docker"}:
        raise BenchError(f"--connections {args.connections}: ssh, docker or ssh,docker")
    if args.mitogen and "ssh" in connections:
        raise BenchError("--mitogen wraps the docker connection only: --connections docker")
    if args.from_json:
        res = json.loads(args.from_json.read_text())
    else:
        if run_cmd("docker", "image", "inspect", IMAGE, timeout=60).returncode != 0:
            raise BenchError(f"no Docker engine or no {IMAGE}: see the --help")
        started, load, digest = time.monotonic(), common.loadavg(), sources_digest()
        host = common.machine()
        res = {"runs": {}}
        for connection in connections:
            print(f"connection {connection}")
            workdir = Path(tempfile.mkdtemp(prefix="coinex-bench-deploy-"))
            d = Deploy(workdir, args.ws, connection == "ssh", args.mitogen)
            try:
                run = measure(args, d)
            except BaseException:
                print(f"logs kept in {d.workdir}", file=sys.stderr)
                raise
            finally:
                d.remove_containers()
            mitogen = " (Mitogen mitogen_linear)" if args.mitogen else ""
            res["runs"][connection] = run | {"connection": d.connection + mitogen}
            if args.keep:
                print(f"logs kept in {d.workdir}")
            else:
                shutil.rmtree(d.workdir, ignore_errors=True)
        if not args.no_make:
            print("local mode: no-op make deploy against the bare playbook")
            res["local"] = make_deploy(
                Path(tempfile.mkdtemp(prefix="coinex-bench-make-")), args.repeats
            )
        res.update(ws=args.ws, sources=[digest, sources_digest()])
        command = " ".join([".venv/bin/python", "bench/run.py", "deploy", *argv])
        load, elapsed = [load, common.loadavg()], time.monotonic() - started
        res["meta"] = dict(command=command, machine=host, load=load, elapsed=elapsed)
        if args.json:
            args.json.write_text(json.dumps(res, indent=1))
    return common.publish(args, section(res), "deploy")
