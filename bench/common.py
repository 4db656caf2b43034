"""Shared parts of the benchmarks: the app tests' process harness (app/tests/services.py), uWSGI
configured by the role's own template, CPU and machine figures, docs/benchmarks.md sections."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import psutil
import requests
import yaml
from jinja2 import meta
from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "app" / "tests"))  # the tests' harness: services.py
from services import REDIS_SERVER, Process, RedisServer, free_port, spawn, start_worker  # noqa: E402, I001
from services import wait_for, worker_ready  # noqa: E402

__all__ = ["REDIS_SERVER", "Process", "free_port", "start_worker", "wait_for", "worker_ready"]
BENCH, ROLE, DOC = (
    ROOT / "bench",
    ROOT / "roles" / "coinex_chatbot",
    ROOT / "docs" / "benchmarks.md",
)
VENV_BIN, WRK = ROOT / ".venv" / "bin", "/usr/bin/wrk"
SECRET_KEY = "bench"  # the app's SECRET_KEY: it signs the conversations' tokens
APP = "coinex_chatbot.wsgi:application"
# what the requests ask: both languages, mostly on-topic, a few off-topic (these get escalated)
QUESTIONS = (BENCH / "questions.txt").read_text().splitlines()
# the role's uWSGI worker recycling, off: max-requests, its delta, lifetime and reload-on-rss
NO_RECYCLING = {
    f"coinex_chatbot_uwsgi_{name}": 0
    for name in ("max_requests", "max_requests_delta", "max_worker_lifetime", "reload_on_rss")
}


class BenchError(RuntimeError):
    """Something the benchmark needs did not work; the message says what."""


def role_vars(**overrides: object) -> dict[str, Any]:
    """The role's defaults, then ``overrides``."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    return {"ansible_managed": "rendered by bench/common.py", **defaults, **overrides}


def render(source: str, variables: dict[str, Any]) -> str:
    """Jinja as Ansible does it here: the variables a text uses are rendered first, recursively."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True)
    names = meta.find_undeclared_variables(env.parse(source)) & variables.keys()
    values = {n: variables[n] for n in names}
    values = {n: render(v, variables) if "{{" in str(v) else v for n, v in values.items()}
    return env.from_string(source).render(values)


def uwsgi_ini(base: Path, port: int, options: dict[str, str | None], **variables: object) -> Path:
    """The role's templates/uwsgi.ini.j2 for a local-mode server in ``base`` (its chdir, run and
    shared dirs) on 127.0.0.1:``port``: the role's defaults with ``variables`` over them, then
    the rendered options replaced by ``options`` (None drops one; new ones are appended)."""
    dirs = {"shared": base / "shared", "run_dir": base / "run", "config_dir": base / "config"}
    dirs |= {"current": base / "current"}  # binary-path: used by a re-exec only, never here
    for path in (dirs["shared"] / "prometheus", dirs["run_dir"], dirs["config_dir"]):
        path.mkdir(parents=True, exist_ok=True)
    more = {f"__coinex_chatbot_{k}": str(v) for k, v in dirs.items()}
    # the role's uwsgi_libs.py, which the master imports before it forks (shared-import)
    libs = render((ROLE / "templates" / "uwsgi_libs.py.j2").read_text(), role_vars())
    (dirs["config_dir"] / "uwsgi_libs.py").write_text(libs)
    more |= {"coinex_chatbot_mode": "local", "__coinex_chatbot_local": True}
    more |= {"coinex_chatbot_base_dir": str(base), "coinex_chatbot_http_port": port}
    # uWSGI itself on the port (the role's local mode puts its haproxy there; the bench measures
    # uWSGI, as production's load balancer reaches it)
    more |= {"__coinex_chatbot_uwsgi_bind": f"127.0.0.1:{port}"}
    text = render((ROLE / "templates" / "uwsgi.ini.j2").read_text(), role_vars(**more, **variables))
    lines = [line for line in text.splitlines() if line.split("=")[0].strip() not in options]
    lines += [f"{key} = {value}" for key, value in options.items() if value is not None]
    (base / "uwsgi.ini").write_text("\n".join(lines) + "\n")
    return base / "uwsgi.ini"


def options_text(options: dict[str, str | None], variables: dict[str, object]) -> str:
    """How a run's uWSGI differs from the role's defaults, for the docs."""
    changed = [f"`{k.removeprefix('coinex_chatbot_')}={v}`" for k, v in variables.items()]
    changed += [f"`{k} = {v}`" if v is not None else f"no `{k}`" for k, v in options.items()]
    return "the role's uwsgi.ini.j2 with its defaults and " + ", ".join(changed)


def start_uwsgi(base: Path, env: dict[str, str], ini: Path, port: int) -> Process:
    """uWSGI with ``ini``, its log in ``base``; waited for until /readyz answers 200."""
    return wait_ready(spawn("uwsgi", [str(VENV_BIN / "uwsgi"), "--ini", str(ini)], env, base), port)


def wait_ready(proc: Process, port: int) -> Process:
    def ready() -> bool:
        proc.check()
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200

    wait_for(ready, 90, f"{proc.name} /readyz on port {port}")
    return proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, its live descendants and the children it has reaped."""
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        total += root.cpu_times().children_user + root.cpu_times().children_system
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.cpu_times().user + proc.cpu_times().system
    return total


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy (all cores)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + t.steal


def wait_quiet(threshold: float, max_wait: float) -> None:
    """Wait (at most max_wait s) until the machine's busy CPU over 1 s is below threshold cores.
    Called between runs, when the benchmark's own processes are idle: the load is other jobs'."""
    started = time.monotonic()
    while (load := psutil.cpu_percent(1.0) * psutil.cpu_count() / 100) >= threshold:
        if time.monotonic() - started >= max_wait:
            break
    if (waited := time.monotonic() - started) > 1.5:
        print(f"    waited {waited:.0f} s for a quieter machine: {load:.2f} cores busy")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tool_version(argv: list[str], pattern: str = r"(.+)") -> str:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        if found := re.search(pattern, out.stdout + out.stderr):
            return found.group(1).strip()
    return "unknown"


def machine() -> dict[str, str]:
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    return {
        "cpu": cpu.group(1) if cpu else platform.machine(),
        "cores": str(psutil.cpu_count()),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "unknown"),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": loadavg(),
    }


SECTIONS = jinja2.Environment(  # bench/sections/*.md, with the notes files of bench/
    loader=jinja2.FileSystemLoader([BENCH / "sections", BENCH]), undefined=jinja2.StrictUndefined
)


def section(
    part: str, argv: list[str], host: dict[str, str], started: float, **values: object
) -> str:
    """bench/sections/<part>.md rendered: the part's text around its figures and tables, after
    a title, the command, the machine and the tools (sections/header.md)."""
    tools = {
        "uWSGI (pyuwsgi)": tool_version([str(VENV_BIN / "uwsgi"), "--version"]),
        "gunicorn": tool_version([str(VENV_BIN / "gunicorn"), "--version"], r"\(version (.+)\)"),
        "wrk": tool_version([WRK, "-v"], r"wrk (\S+)"),
        "redis-server": tool_version([REDIS_SERVER, "--version"], r"v=(\S+)"),
    }
    command = shlex.join([".venv/bin/python", "bench/run.py", part, *argv])
    minutes, load_end = (time.monotonic() - started) / 60, loadavg()
    template = SECTIONS.get_template(f"{part}.md")
    return template.render(
        command=command, host=host, minutes=minutes, tools=tools, load_end=load_end, **values
    )


@dataclass
class Lab:
    """What every measurement needs: the app's environment, Redis (client, pid), a workdir."""

    env: dict[str, str]
    client: Any  # redis.Redis
    redis_pid: int
    workdir: Path


@contextlib.contextmanager
def lab(prefix: str) -> Iterator[Lab]:
    """A private redis-server (free loopback port, no persistence) in a fresh directory, removed
    afterwards unless the run failed (its logs are kept then)."""
    import redis

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    server = RedisServer(free_port(), workdir)
    server.start()
    env = app_env(server.url, workdir / "prometheus-workers")
    os.environ.update(env)  # this process enqueues too: coinex_chatbot.tasks reads REDIS_URL
    try:
        yield Lab(env, redis.Redis.from_url(server.url, decode_responses=True), server.pid, workdir)
    except BaseException:
        print(f"logs kept in {workdir}", file=sys.stderr)
        raise
    finally:
        server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def start_replica(lab: Lab) -> RedisServer:
    """A second private redis-server, a connected replica of the lab's."""
    import redis

    server = RedisServer(free_port(), lab.workdir / "replica")
    server.workdir.mkdir(parents=True, exist_ok=True)
    server.start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    primary = lab.client.connection_pool.connection_kwargs
    client.replicaof(primary.get("host", "127.0.0.1"), primary["port"])
    wait_for(
        lambda: client.info("replication").get("master_link_status") == "up",
        15,
        "the replica to sync",
    )
    return server


def app_env(redis_url: str, prom_dir: Path) -> dict[str, str]:
    """The environment of every process of the app: production settings, rate limits off (the
    benchmarks measure capacity, not the limiter), its own Prometheus multiprocess directory."""
    prom_dir.mkdir(parents=True, exist_ok=True)
    return {
        "REDIS_URL": redis_url,
        "SECRET_KEY": SECRET_KEY,
        "CHATBOT_ENV": "production",
        "CHATBOT_RATE_LIMIT_CONVERSATION": "0",
        "CHATBOT_RATE_LIMIT_IP": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
    }


def create_conversations(client: Any, count: int) -> list[str]:
    """An emptied Redis with ``count`` fresh conversations."""
    from coinex_chatbot.store import Store

    client.flushdb()
    store = Store(client, 3600, "chatbot:escalations")
    return [store.create_conversation(None) for _ in range(count)]


def broker_backlog(client: Any) -> tuple[int, int]:
    """Messages still queued and still unacknowledged on Dramatiq's default queue."""
    pipe = client.pipeline(transaction=False)
    return tuple(pipe.llen("dramatiq:default").hlen("dramatiq:default.msgs").execute())


def lua_data(path: Path, conversation_ids: list[str]) -> Path:
    """The Lua tables the wrk scripts (bench/wrk/*.lua) load: conversation ids, the
    Authorization header of each (same index), JSON bodies."""
    from coinex_chatbot.web import conversation_token

    ids = ", ".join(f'"{c}"' for c in conversation_ids)
    auths = ", ".join(f'"Bearer {conversation_token(SECRET_KEY, c)}"' for c in conversation_ids)
    bodies = ", ".join(f"[==[{json.dumps({'text': q})}]==]" for q in QUESTIONS)
    path.write_text(f"return {{ids = {{{ids}}}, auths = {{{auths}}}, bodies = {{{bodies}}}}}\n")
    return path


def table(rows: Iterable[dict[str, object]], align: str) -> str:
    """A markdown table of rows keyed by column header; ``align``: l or r for each column."""
    colalign = ["left" if a == "l" else "right" for a in align]
    return tabulate(list(rows), "keys", tablefmt="pipe", colalign=colalign, disable_numparse=True)


@dataclass
class Runs:
    """The measured runs of one point; tables show their medians and each run's figure."""

    runs: list[Any] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(run, attr) for run in self.runs)

    def each(self, attr: str, fmt: str = ".0f") -> str:
        return ", ".join(format(getattr(run, attr), fmt) for run in self.runs)


KNOBS = {  # the web and worker knobs: type, default ("role": the role's variable), help
    "processes": (int, "coinex_chatbot_uwsgi_processes", "uWSGI (and gunicorn) processes"),
    "uwsgi_threads": (int, "coinex_chatbot_uwsgi_threads", "threads per uWSGI process"),
    "duration": (int, 10, "seconds per measured wrk run"),
    "warmup": (int, 3, "seconds of warm-up per point"),
    "repeats": (int, 3, "measured wrk runs per point"),
    "conversations": (int, 2000, "conversations the requests go to"),
    "worker_threads": (int, "coinex_chatbot_task_threads", "--threads of each Dramatiq process"),
    "messages": (int, 5000, "messages per run"),
    "worker_repeats": (int, 3, "worker runs per process count"),
    "quiet": (float, 0.3, "before each measured run, wait until other jobs use fewer cores"),
    "quiet_wait": (float, 30, "... for at most this many s"),
}


def parser(prog: str, doc: str, knobs: Iterable[str] = KNOBS, **defaults: object) -> Any:
    """A part's parser: the ``knobs`` (their defaults overridden by ``defaults``), --no-write
    and --output."""
    p = argparse.ArgumentParser(prog=f"bench/run.py {prog}", description=doc.split("\n\n")[0])
    for name in knobs:
        kind, default, text = KNOBS[name]
        default = defaults.get(name, role_vars().get(str(default), default))
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=text)
    p.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    p.add_argument("--output", type=Path, default=DOC, help="the markdown file to write")
    return p


def publish(args: argparse.Namespace, text: str, part: str) -> int:
    """Print a part's section; unless --no-write, replace the text between its markers in
    --output (re-read right before, so other parts survive), its hand-written notes kept."""
    print(f"\n{text}")
    if args.no_write:
        return 0
    start, end = f"<!-- bench:{part}:start -->", f"<!-- bench:{part}:end -->"
    current = args.output.read_text() if args.output.exists() else "# Benchmarks\n"
    notes = re.search(f"<!-- bench:{part}:notes:start.*?:notes:end -->\n", current, re.DOTALL)
    text = f"{start}\n{text.strip()}\n{notes.group(0) if notes else ''}{end}\n"
    before, found, rest = current.partition(start)
    after = rest.partition(end)[2].lstrip("\n") if found else ""
    before = before if found else before.rstrip("\n") + "\n\n"
    args.output.write_text(before + text.replace(f"{ROOT}/", "") + (f"\n{after}" if after else ""))
    print(f"wrote {args.output}")
    return 0


def cli(main: Callable[[list[str]], int], prog: str) -> None:
    """Run a bench entry point: its exit code, or 1 with the message of what went wrong."""
    sys.stdout.reconfigure(line_buffering=True)  # progress lines as they come
    try:
        sys.exit(main(sys.argv[1:]))
    except (BenchError, AssertionError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(1)
