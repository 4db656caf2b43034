"""Deploy speed of playbooks/deploy.yml on real systemd Debian 12 containers; writes the
"Deploy speed" part of docs/benchmarks.md (between ``<!-- bench:deploy:start -->`` and
``<!-- bench:deploy:end -->``).

Run ``.venv/bin/python bench/run.py deploy`` from the checkout (``--help`` for the knobs). It
needs a Docker engine (``scripts/docker-engine start``) and the Molecule image
``coinex-chatbot/debian12-systemd`` (``molecule/images/build debian12``). In one run it:

1. starts one container the way Molecule's ``default`` scenario does (systemd as PID 1, cgroupns
   host, tmpfs /run and /tmp, the community.docker connection) and converges it with
   playbooks/deploy.yml in production mode with Molecule's variables (WS=3, throw-away secrets);
   then checks that no compiler is on the host;
2. re-runs deploy.yml on it (nothing changed, so changed=0) alternately with the floor, an empty
   play that gathers facts and pings the same host, ``--repeats`` times each (medians);
3. deploys a code-only release (a copy of app/ with its version bumped) to it, reload and health
   gate included;
4. starts three more containers and converges them together in one run (one wheelhouse build on
   the controller, hosts in parallel), compared with the one-host converge of step 1;
5. removes the containers it started (names ``bench-deploy-<run>-N``), and writes the table.

The controller's wheelhouse cache (``~/.cache/coinex_chatbot``) is warmed before any timing, so
fresh converges measure the hosts' work, not PyPI. The repository's ansible.cfg is used as it is,
only with the fact cache in the run's own temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import ROOT, VENV_BIN, BenchError, machine, tool_version, write_section

DOC = ROOT / "docs" / "benchmarks.md"
NOTES = Path(__file__).resolve().parent / "deploy_notes.md"
START = "<!-- bench:deploy:start -->"
END = "<!-- bench:deploy:end -->"
IMAGE = "coinex-chatbot/debian12-systemd:latest"
PLAYBOOK = ROOT / "playbooks" / "deploy.yml"
# The same options as molecule/default/molecule.yml's platforms.
DOCKER_RUN = [
    "--detach",
    "--cgroupns=host",
    "--security-opt=seccomp=unconfined",
    "--cap-add=SYS_PTRACE",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs=/run",
    "--tmpfs=/run/lock",
    "--tmpfs=/tmp",
    "--stop-signal=SIGRTMIN+3",
]
COMPILERS = ("gcc", "cc", "c++", "g++", "clang")
ROUNDTRIP_TASKS = 20
TARGETS = {"fresh1": 120.0, "noop": 2.0, "fresh3": 1.3, "code": 20.0}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="no-op reruns and floor runs (medians)")
    p.add_argument("--ws", type=int, default=3, help="coinex_chatbot_ws of the deploys")
    p.add_argument("--no-three", action="store_true", help="skip the three-host converge")
    p.add_argument("--keep", action="store_true", help="leave the containers running")
    p.add_argument(
        "--mitogen",
        type=Path,
        help="opt-in: directory holding the ansible_mitogen package; runs every play with its "
        "mitogen_linear strategy (connection `docker`, which Mitogen wraps)",
    )
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument(
        "--from-json",
        type=Path,
        help="measure nothing: write the section again from a --json file (e.g. after editing "
        "bench/deploy_notes.md)",
    )
    p.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    p.add_argument("--output", type=Path, default=DOC)
    return p.parse_args(argv)


def sources_digest() -> str:
    """Hash of what a deploy reads (role, playbooks, ansible.cfg, app source): the checkout is
    shared, so a change during the run is reported next to the figures."""
    h = hashlib.sha256()
    paths = [ROOT / "ansible.cfg"]
    for base in ("roles", "playbooks", "app/src", "app/pyproject.toml", "app/requirements.lock"):
        top = ROOT / base
        paths += sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
    for path in paths:
        if "__pycache__" not in path.parts:
            h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_cmd(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Run:
    """One ansible-playbook run: wall time, recap counters per host, the load around it."""

    what: str
    seconds: float
    rc: int
    recap: dict[str, dict[str, int]]
    load_before: str
    load_after: str
    log: str
    slowest: list[str] = field(default_factory=list)

    def changed(self) -> int:
        return sum(r.get("changed", 0) for r in self.recap.values())

    def failed(self) -> int:
        return sum(r.get("failed", 0) + r.get("unreachable", 0) for r in self.recap.values())


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """Counters of each host's last PLAY RECAP line."""
    recap: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        m = re.match(r"^(\S+)\s+:\s+(ok=.*)$", line)
        if in_recap and m:
            recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return recap


def slowest_tasks(output: str, count: int = 6) -> list[str]:
    """The first lines of ansible.posix.profile_tasks' summary (slowest tasks first)."""
    lines = re.findall(r"^(.+?) -+ (\d+\.\d+)s\s*$", output, re.MULTILINE)
    return [f"{name.strip()} ({secs} s)" for name, secs in lines[:count]]


class Bench:
    """Containers, inventories and playbook runs of one benchmark run; cleans up after itself."""

    def __init__(self, workdir: Path, ws: int, mitogen: Path | None = None) -> None:
        self.workdir = workdir
        self.ws = ws
        self.connection = "docker" if mitogen else "community.docker.docker"
        self.run_id = uuid.uuid4().hex[:6]
        self.containers: list[str] = []
        self.env = {k: v for k, v in os.environ.items() if k != "WS"}
        self.env.update(
            PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
            ANSIBLE_CACHE_PLUGIN_CONNECTION=str(workdir / "facts"),
        )
        if mitogen:
            strategy = mitogen.resolve() / "ansible_mitogen" / "plugins" / "strategy"
            if not strategy.is_dir():
                raise BenchError(f"{strategy} missing: --mitogen wants the directory above it")
            self.env.update(
                ANSIBLE_STRATEGY_PLUGINS=str(strategy), ANSIBLE_STRATEGY="mitogen_linear"
            )
        self.runs = 0

    # containers ---------------------------------------------------------------------------
    def start_containers(self, count: int) -> list[str]:
        names = [f"bench-deploy-{self.run_id}-{len(self.containers) + i + 1}" for i in range(count)]
        for name in names:
            out = run_cmd(
                [
                    "docker",
                    "run",
                    f"--name={name}",
                    f"--hostname={name}",
                    *DOCKER_RUN,
                    IMAGE,
                    "/lib/systemd/systemd",
                ]
            )
            if out.returncode != 0:
                raise BenchError(f"docker run {name} failed: {out.stderr.strip()}")
            self.containers.append(name)
        for name in names:  # systemd up (degraded is fine: some units cannot run in a container)
            deadline = time.monotonic() + 90
            state = ""
            while state not in ("running", "degraded"):
                if time.monotonic() > deadline:
                    raise BenchError(f"systemd in {name} did not come up (state {state!r})")
                time.sleep(0.5)  # before PID 1 has its bus, systemctl fails at once
                out = run_cmd(["docker", "exec", name, "systemctl", "is-system-running", "--wait"])
                state = out.stdout.strip()
        return names

    def remove_containers(self) -> None:
        for name in self.containers:
            run_cmd(["docker", "rm", "--force", "--volumes", name])
        self.containers = []

    def compilers(self, host: str) -> list[str]:
        """Compiler programs on the host: on PATH, or any gcc/g++/clang binary or cc1."""
        script = "; ".join(f"command -v {c} || true" for c in COMPILERS)
        script += (
            "; shopt -s nullglob; for f in /usr/bin/*gcc* /usr/bin/*g++* /usr/bin/clang*"
            " /usr/lib/gcc/*/*/cc1; do echo $f; done"
        )
        out = run_cmd(["docker", "exec", host, "bash", "-c", script])
        if out.returncode != 0:
            raise BenchError(f"compiler check on {host} failed: {out.stderr}")
        return sorted(set(out.stdout.split()))

    def current_release(self, host: str) -> str:
        out = run_cmd(["docker", "exec", host, "readlink", "/opt/coinex_chatbot/current"])
        return out.stdout.strip()

    # ansible ------------------------------------------------------------------------------
    def inventory(self, hosts: list[str], app_src: Path) -> Path:
        secret = self.workdir / "secrets"
        inv = {
            "chatbot": {
                "hosts": {h: {} for h in hosts},
                "vars": {
                    "ansible_connection": self.connection,
                    "coinex_chatbot_mode": "production",
                    "coinex_chatbot_ws": self.ws,
                    "coinex_chatbot_base_dir": "/opt/coinex_chatbot",
                    "coinex_chatbot_app_src": str(app_src),
                    "coinex_chatbot_secret_key": "{{ lookup('ansible.builtin.password', '"
                    f"{secret}/secret_key', length=40, chars=['ascii_letters', 'digits']) }}}}",
                    "coinex_chatbot_redis_password": "{{ lookup('ansible.builtin.password', '"
                    f"{secret}/redis_password', length=32, chars=['ascii_letters', 'digits']) }}}}",
                },
            },
            "redis": {"hosts": {}},
        }
        self.runs += 1
        path = self.workdir / f"inventory-{self.runs}.json"
        path.write_text(json.dumps(inv, indent=1))
        return path

    def playbook(
        self,
        what: str,
        playbook: Path,
        hosts: list[str],
        app_src: Path,
        env: dict[str, str] | None = None,
    ) -> Run:
        inv = self.inventory(hosts, app_src)
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inv), str(playbook)]
        if playbook == PLAYBOOK:  # as molecule/default/converge.yml: all hosts in one batch
            argv += ["-e", '{"coinex_chatbot_serial": ["100%"]}']
        log = self.workdir / f"{self.runs:02d}-{what}.log"
        before = loadavg()
        started = time.monotonic()
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        seconds = time.monotonic() - started
        output = proc.stdout + proc.stderr
        log.write_text(output)
        run = Run(
            what,
            seconds,
            proc.returncode,
            parse_recap(output),
            before,
            loadavg(),
            str(log),
            slowest_tasks(output),
        )
        print(
            f"  {what}: {seconds:.1f} s, rc={run.rc}, changed={run.changed()}, "
            f"load {run.load_before} -> {run.load_after}",
            flush=True,
        )
        if run.rc != 0 or run.failed() or set(run.recap) != set(hosts):
            raise BenchError(f"{what} failed (rc {run.rc}); log: {log}\n{output[-3000:]}")
        return run

    def floor_playbook(self) -> Path:
        path = self.workdir / "floor.yml"
        path.write_text(
            "---\n- name: Floor (facts and a ping)\n  hosts: chatbot\n  gather_facts: true\n"
            "  tasks:\n    - name: Ping\n      ansible.builtin.ping:\n"
        )
        return path

    def roundtrip_playbook(self, tasks: int) -> Path:
        """A play of `tasks` stat tasks (no facts): the cost of one module round trip."""
        path = self.workdir / "roundtrip.yml"
        body = "".join(
            f"    - name: Stat {i}\n      ansible.builtin.stat:\n        path: /etc/hostname\n"
            for i in range(tasks)
        )
        path.write_text(
            "---\n- name: Module round trips\n  hosts: chatbot\n  gather_facts: false\n"
            "  become: true\n  tasks:\n" + body
        )
        return path

    def warm_wheelhouse(self, host: str) -> float:
        """Build (or find cached) the controller's wheelhouse for this host, untimed by the
        deploys: the role's own script with the role's default cache and arguments."""
        probe = run_cmd(
            [
                "docker",
                "exec",
                host,
                "/usr/bin/python3",
                "-c",
                "import platform; print(platform.python_version(), platform.machine())",
            ]
        )
        pyver, arch = probe.stdout.split()
        role = ROOT / "roles" / "coinex_chatbot"
        supervisor = re.search(
            r'coinex_chatbot_local_supervisor_version: "([^"]+)"',
            (role / "defaults" / "main.yml").read_text(),
        )
        if not supervisor:
            raise BenchError("coinex_chatbot_local_supervisor_version not found in the defaults")
        started = time.monotonic()
        out = run_cmd(
            [
                str(VENV_BIN / "python"),
                str(role / "files" / "build_wheelhouse.py"),
                "--app-src",
                str(ROOT / "app"),
                "--lock",
                str(ROOT / "app" / "requirements.lock"),
                "--cache",
                str(Path.home() / ".cache" / "coinex_chatbot"),
                "--extra",
                f"supervisor=={supervisor.group(1)}",
                f"--target={pyver}:{arch}",
            ],
            900,
        )
        if out.returncode != 0:
            raise BenchError(f"wheelhouse build failed: {out.stderr}")
        return time.monotonic() - started


def bumped_app(workdir: Path) -> tuple[Path, str]:
    """A copy of app/ whose version is bumped (a new app hash: the role makes a new release)."""
    dest = workdir / "app-bumped"
    shutil.copytree(
        ROOT / "app",
        dest,
        ignore=shutil.ignore_patterns(
            ".venv", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache"
        ),
    )
    pyproject = dest / "pyproject.toml"
    text = pyproject.read_text()
    m = re.search(r'^version = "([^"]+)"$', text, re.MULTILINE)
    if not m:
        raise BenchError("no version line in app/pyproject.toml")
    new = f"{m.group(1)}.post{int(time.time())}"
    pyproject.write_text(text.replace(m.group(0), f'version = "{new}"'))
    return dest, new


def measure(args: argparse.Namespace, bench: Bench) -> dict[str, object]:
    floor_pb = bench.floor_playbook()
    print("one fresh host", flush=True)
    one = bench.start_containers(1)
    warm = bench.warm_wheelhouse(one[0])
    fresh1 = bench.playbook("fresh-1-host", PLAYBOOK, one, ROOT / "app")
    compilers = {h: bench.compilers(h) for h in one}
    print(f"no-op reruns and the floor, {args.repeats} each, alternating", flush=True)
    floors: list[Run] = []
    floors_gathered: list[Run] = []
    noops: list[Run] = []
    no_cache = {"ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory"}
    for i in range(args.repeats):
        floors.append(bench.playbook(f"floor-{i + 1}", floor_pb, one, ROOT / "app"))
        floors_gathered.append(
            bench.playbook(f"floor-gathered-{i + 1}", floor_pb, one, ROOT / "app", no_cache)
        )
        noops.append(bench.playbook(f"noop-{i + 1}", PLAYBOOK, one, ROOT / "app"))
    print(f"module round trips: {ROUNDTRIP_TASKS} stat tasks, pipelining on and off", flush=True)
    trips: dict[str, list[float]] = {"on": [], "off": []}
    trip_pb = bench.roundtrip_playbook(ROUNDTRIP_TASKS)
    for i in range(2):
        for mode in ("on", "off"):
            run = bench.playbook(
                f"roundtrip-pipelining-{mode}-{i + 1}",
                trip_pb,
                one,
                ROOT / "app",
                {"ANSIBLE_PIPELINING": "True" if mode == "on" else "False"},
            )
            trips[mode].append(run.seconds)
    print("code-only release", flush=True)
    before = bench.current_release(one[0])
    app_src, version = bumped_app(bench.workdir)
    code = bench.playbook("code-release", PLAYBOOK, one, app_src)
    after = bench.current_release(one[0])
    if after == before or not Path(after).name.startswith(version + "-"):
        raise BenchError(f"code release: current went {before} -> {after}, not to {version}-*")
    result: dict[str, object] = {
        "wheelhouse_warm_s": warm,
        "fresh1": asdict(fresh1),
        "floors": [asdict(r) for r in floors],
        "floors_gathered": [asdict(r) for r in floors_gathered],
        "roundtrips": trips,
        "noops": [asdict(r) for r in noops],
        "code": asdict(code),
        "code_release": f"{Path(before).name} -> {Path(after).name}",
    }
    if not args.no_three:
        print("three fresh hosts in one run", flush=True)
        three = bench.start_containers(3)
        fresh3 = bench.playbook("fresh-3-hosts", PLAYBOOK, three, ROOT / "app")
        compilers.update({h: bench.compilers(h) for h in three})
        result["fresh3"] = asdict(fresh3)
    result["compilers"] = compilers
    return result


def verdicts(res: dict[str, object]) -> list[tuple[str, str, str, str, bool | None, str]]:
    """(measurement, wall s, ratio, target, met, detail) rows."""
    fresh1 = res["fresh1"]
    floors = res["floors"]
    noops = res["noops"]
    code = res["code"]
    assert isinstance(fresh1, dict) and isinstance(floors, list) and isinstance(noops, list)
    assert isinstance(code, dict)
    compilers = res["compilers"]
    assert isinstance(compilers, dict)
    no_cc = all(not v for v in compilers.values())
    floor = statistics.median(r["seconds"] for r in floors)
    noop = statistics.median(r["seconds"] for r in noops)
    gathered = statistics.median(r["seconds"] for r in res.get("floors_gathered", floors))
    noop_changed = max(sum(h.get("changed", 0) for h in r["recap"].values()) for r in noops)
    rows = [
        (
            "Fresh converge, 1 host",
            f"{fresh1['seconds']:.1f}",
            "-",
            f"<= {TARGETS['fresh1']:.0f} s",
            fresh1["seconds"] <= TARGETS["fresh1"] and no_cc,
            "compilers on the hosts: " + ("none" if no_cc else json.dumps(compilers)),
        ),
        (
            "Floor: facts + ping, 1 host",
            f"{floor:.1f}",
            "1.00",
            "-",
            None,
            "facts from the fact cache (ansible.cfg: gathering = smart, jsonfile cache), as the "
            "no-op rerun has them; runs: " + ", ".join(f"{r['seconds']:.1f}" for r in floors),
        ),
        (
            "Floor, facts gathered (no fact cache), 1 host",
            f"{gathered:.1f}",
            f"{gathered / floor:.2f}",
            "-",
            None,
            f"for comparison: the no-op rerun is {noop / gathered:.2f}x this",
        ),
        (
            "No-op rerun, 1 host",
            f"{noop:.1f}",
            f"{noop / floor:.2f}",
            f"<= {TARGETS['noop']:.1f}x floor, changed=0",
            noop / floor <= TARGETS["noop"] and noop_changed == 0,
            "runs: "
            + ", ".join(f"{r['seconds']:.1f}" for r in noops)
            + f"; changed (max of runs) = {noop_changed}",
        ),
    ]
    code_changed = sum(h.get("changed", 0) for h in code["recap"].values())
    fresh3 = res.get("fresh3")
    if isinstance(fresh3, dict):
        ratio = fresh3["seconds"] / fresh1["seconds"]
        rows.append(
            (
                "Fresh converge, 3 hosts in one run",
                f"{fresh3['seconds']:.1f}",
                f"{ratio:.2f}",
                f"<= {TARGETS['fresh3']:.1f}x 1 host",
                ratio <= TARGETS["fresh3"] and no_cc,
                "ratio to the 1-host converge",
            )
        )
    rows.append(
        (
            "Code-only release (reload + health gate), 1 host",
            f"{code['seconds']:.1f}",
            "-",
            f"<= {TARGETS['code']:.0f} s",
            code["seconds"] <= TARGETS["code"],
            f"release {res['code_release']}, changed={code_changed}",
        )
    )
    return rows


def section(
    res: dict[str, object],
    command: str,
    host: dict[str, str],
    load: tuple[str, str],
    elapsed: float,
) -> str:
    rows = verdicts(res)
    lines = [
        START,
        "## Deploy speed (playbooks/deploy.yml on systemd Debian 12 containers)",
        "",
        f"- Command: `{command}` (from the checkout; Docker engine: `scripts/docker-engine start`,"
        " image: `molecule/images/build debian12`)",
        f"- Machine: {host['cores']} cores ({host['cpu']}), {host['ram']} RAM, kernel "
        f"{host['kernel']}, {host['os']}; date {host['date']}",
        f"- Load average (1/5/15 min) before the run: {load[0]}; after: {load[1]}. The machine "
        "is shared: other jobs (Molecule scenarios, tests) may run at the same time, so ratios "
        "are taken within one run.",
        f"- {tool_version([str(VENV_BIN / 'ansible-playbook'), '--version'])}; connection "
        f"`{res['connection']}`; production mode, WS={res['ws']}, Molecule's variables; the "
        "repository's ansible.cfg (fact cache in the run's temporary directory).",
        "- Sources (role, playbooks, ansible.cfg, app) "
        + (
            f"unchanged during the run (digest {res['sources'][0]})."
            if res["sources"][0] == res["sources"][1]
            else f"**changed during the run** ({res['sources'][0]} -> {res['sources'][1]}): "
            "another engineer edited them; figures are indicative."
        ),
        f"- Controller wheelhouse cache warmed before the timings ({res['wheelhouse_warm_s']:.1f} s"
        " for the check/build).",
        "",
        "| measurement | wall s | ratio | target | met | detail |",
        "|---|---:|---:|---|---|---|",
    ]
    for what, secs, ratio, target, ok, detail in rows:
        lines.append(
            f"| {what} | {secs} | {ratio} | {target} | "
            f"{'-' if ok is None else '**met**' if ok else '**not met**'} | {detail} |"
        )
    fresh1 = res["fresh1"]
    code = res["code"]
    assert isinstance(fresh1, dict) and isinstance(code, dict)
    trips = res.get("roundtrips")
    if isinstance(trips, dict):
        on, off = (statistics.median(trips[m]) for m in ("on", "off"))
        lines += [
            "",
            f"Module round trips (a play of {ROUNDTRIP_TASKS} `ansible.builtin.stat` tasks with "
            f"become, no facts, on the same host, 2 runs each, medians): pipelining on {on:.1f} s, "
            f"off {off:.1f} s, i.e. about {(off - on) / ROUNDTRIP_TASKS * 1000:.0f} ms saved per "
            "module call by `[connection] pipelining = true`.",
        ]
    lines += [
        "",
        "Slowest tasks of the 1-host fresh converge (ansible.posix.profile_tasks): "
        + "; ".join(fresh1["slowest"])
        + ".",
        "",
        "Slowest tasks of the code-only release: " + "; ".join(code["slowest"]) + ".",
        "",
        f"Whole benchmark took {elapsed / 60:.1f} min.",
        "",
    ]
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip(), ""]
    lines.append(END)
    return "\n".join(lines)


def render(res: dict[str, object], args: argparse.Namespace) -> None:
    """Print the section of a result (a fresh one or one read back with --from-json), write it
    to the docs unless --no-write."""
    meta = res["meta"]
    assert isinstance(meta, dict)
    text = section(res, meta["command"], meta["machine"], tuple(meta["load"]), meta["elapsed"])
    text = text.replace(f"{ROOT}/", "")
    print("\n" + text)
    if not args.no_write:
        write_section(args.output, text, START, END)
        print(f"wrote {args.output}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.from_json:
        render(json.loads(args.from_json.read_text()), args)
        return 0
    if run_cmd(["docker", "info"], 60).returncode != 0:
        raise BenchError("no Docker engine answers: run scripts/docker-engine start")
    if run_cmd(["docker", "image", "inspect", IMAGE]).returncode != 0:
        raise BenchError(f"image {IMAGE} missing: run molecule/images/build debian12")
    started = time.monotonic()
    load_start = loadavg()
    digest_start = sources_digest()
    host = machine()
    workdir = Path(tempfile.mkdtemp(prefix="coinex-bench-deploy-"))
    bench = Bench(workdir, args.ws, args.mitogen)
    ok = False
    try:
        res = measure(args, bench)
        res["ws"] = args.ws
        res["connection"] = bench.connection + (" (Mitogen mitogen_linear)" if args.mitogen else "")
        res["sources"] = [digest_start, sources_digest()]
        ok = True
    finally:
        if not args.keep:
            bench.remove_containers()
        elif bench.containers:
            print("containers kept: " + " ".join(bench.containers))
        if not ok:
            print(f"logs kept in {workdir}", file=sys.stderr)
    res["meta"] = {
        "command": ".venv/bin/python bench/run.py deploy"
        + (" " + shlex.join(argv) if argv else ""),
        "machine": host,
        "load": [load_start, loadavg()],
        "elapsed": time.monotonic() - started,
    }
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    render(res, args)
    if args.keep or args.json:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
