"""Runtime memory of the app with and without jemalloc; writes the "Runtime memory" part of
docs/benchmarks.md (between ``<!-- bench:memory:start -->`` and ``<!-- bench:memory:end -->``).

Run ``.venv/bin/python bench/memory.py`` from the checkout (``--help`` for the knobs). In one run,
for each configuration in turn, on one private redis-server (free loopback port, no persistence):

1. starts uWSGI (``--master --processes 2``, production options, lazy-apps unless the
   configuration says otherwise) and two ``dramatiq coinex_chatbot.tasks --processes 1
   --threads 4`` programs (as Supervisor's numprocs), all with the configuration's allocator
   environment (``LD_PRELOAD`` of the host's libjemalloc.so.2, ``MALLOC_CONF``, ...);
2. drives the mix of GET /healthz, POST .../messages and GET .../messages with wrk until N
   responses and M accepted messages, then waits until the workers have answered (or
   escalated) every message and checks every status. The target pair (glibc vs jemalloc) runs
   at full size (100,000 / 20,000); the other variants (MALLOC_CONF tuning, no lazy-apps,
   gc.freeze(), max-requests) and a second glibc baseline at short size (10,000 / 2,000), to
   keep the run near 10 minutes on 2 cores. Workers' RSS is sampled during the load, and the
   uWSGI CPU time (recycled workers included) is measured;
3. reads VmRSS/VmHWM (/proc/<pid>/status) and Rss/Pss/USS/Anonymous (/proc/<pid>/smaps_rollup)
   of every process, checks from /proc/<pid>/maps that libjemalloc is mapped exactly where it
   was preloaded, then stops everything it started.

Memory is per process and robust to other load on the machine; the run time is not. The
hand-written analysis between the notes markers inside the section survives a re-run.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from common import (
    REDIS_SERVER,
    ROOT,
    VENV_BIN,
    WRK,
    BenchError,
    Proc,
    free_port,
    http_status,
    lua_tables,
    machine,
    start_redis,
    tool_version,
    wait_for,
    write_section,
)
from questions import QUESTIONS

DOC = ROOT / "docs" / "benchmarks.md"
START = "<!-- bench:memory:start -->"
END = "<!-- bench:memory:end -->"
NOTES_START = "<!-- bench:memory:notes:start (kept by bench/memory.py) -->"
NOTES_END = "<!-- bench:memory:notes:end -->"
TARGET = 0.8  # jemalloc RSS / glibc RSS
APP = "coinex_chatbot.wsgi:application"
FREEZE_MODULE = "bench_gc_freeze"
TUNED_CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
KINDS = ("uWSGI worker", "uWSGI master", "Dramatiq worker", "Dramatiq main")


@dataclass(frozen=True)
class Config:
    """One configuration of the allocator and of uWSGI, applied to all processes of a slot."""

    name: str
    jemalloc: bool
    malloc_conf: str = ""
    env: tuple[tuple[str, str], ...] = ()
    lazy_apps: bool = True
    gc_freeze: bool = False
    uwsgi_extra: tuple[str, ...] = ()

    def environment(self, base: dict[str, str], jemalloc_path: str) -> dict[str, str]:
        env = dict(base)
        if self.jemalloc:
            env["LD_PRELOAD"] = jemalloc_path
        if self.malloc_conf:
            env["MALLOC_CONF"] = self.malloc_conf
        env.update(self.env)
        return env

    def describe(self) -> str:
        parts = ["LD_PRELOAD=libjemalloc.so.2" if self.jemalloc else "glibc malloc"]
        if self.malloc_conf:
            parts.append(f"MALLOC_CONF={self.malloc_conf}")
        parts += [f"{k}={v}" for k, v in self.env]
        parts.append("lazy-apps" if self.lazy_apps else "no lazy-apps (master imports the app)")
        if self.gc_freeze:
            parts.append("gc.freeze() in the master after import")
        parts += list(self.uwsgi_extra)
        return "; ".join(parts)


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        Config("glibc", jemalloc=False),
        Config("jemalloc", jemalloc=True),
        Config("jemalloc-tuned", jemalloc=True, malloc_conf=TUNED_CONF),
        Config("jemalloc-narenas1", jemalloc=True, malloc_conf=TUNED_CONF + ",narenas:1"),
        Config(
            "jemalloc-pymalloc-off",
            jemalloc=True,
            malloc_conf=TUNED_CONF,
            env=(("PYTHONMALLOC", "malloc"),),
        ),
        Config("glibc-arena2", jemalloc=False, env=(("MALLOC_ARENA_MAX", "2"),)),
        Config("glibc-prefork", jemalloc=False, lazy_apps=False),
        Config(
            "glibc-prefork-freeze",
            jemalloc=False,
            lazy_apps=False,
            gc_freeze=True,
        ),
        Config(
            "glibc-recycle",
            jemalloc=False,
            uwsgi_extra=("--max-requests", "5000", "--reload-on-rss", "512"),
        ),
    )
}
FULL = "glibc,jemalloc"
SHORT = ",".join(n for n in CONFIGS if n != "jemalloc")


@dataclass(frozen=True)
class Mem:
    """Memory of one process in KiB."""

    pid: int
    kind: str
    rss: int
    hwm: int
    pss: int
    uss: int
    anon: int
    jemalloc_mapped: bool


@dataclass
class SlotResult:
    config: Config
    size: str  # "full" or "short"
    want_requests: int
    want_messages: int
    mems: list[Mem] = field(default_factory=list)
    requests: int = 0
    accepted: int = 0
    non_2xx: int = 0
    messages: int = 0
    answered: int = 0
    escalated: int = 0
    respawns: int = 0
    load_s: float = 0.0
    drain_s: float = 0.0
    uwsgi_cpu_s: float = 0.0  # uWSGI CPU during the load, recycled workers included
    samples: list[tuple[float, str, int]] = field(default_factory=list)  # (s, kind, RSS KiB)

    def of(self, kind: str) -> list[Mem]:
        return [m for m in self.mems if m.kind == kind]

    def rss_at(self, kind: str, fraction: float) -> float:
        """Median RSS of the processes of a kind in the first sample after this much load."""
        times = sorted({t for t, k, _ in self.samples if k == kind and t >= fraction * self.load_s})
        if not times:
            return float("nan")
        return statistics.median(r for t, k, r in self.samples if k == kind and t == times[0])

    def rss_max(self, kind: str) -> int:
        return max((r for _, k, r in self.samples if k == kind), default=0)


def find_jemalloc() -> str:
    """The host's libjemalloc.so.2, found the way the role finds it (ldconfig, then dpkg)."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    candidates = [
        line.split("=>", 1)[1].strip()
        for line in out.splitlines()
        if "=>" in line and line.split("=>", 1)[0].strip().startswith("libjemalloc.so.2 ")
    ]
    out = subprocess.run(
        ["dpkg", "-L", "libjemalloc2"], capture_output=True, text=True, check=False
    ).stdout
    candidates += [line for line in out.splitlines() if line.endswith("/libjemalloc.so.2")]
    for path in candidates:
        if Path(path).exists():
            return str(Path(path).resolve())
    raise BenchError("libjemalloc.so.2 not found (apt-get install libjemalloc2)")


def app_env(redis_url: str, prom_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(
        REDIS_URL=redis_url,
        SECRET_KEY="bench",
        CHATBOT_ENV="production",
        CHATBOT_RATE_LIMIT_CONVERSATION="0",
        CHATBOT_RATE_LIMIT_IP="0",
        PROMETHEUS_MULTIPROC_DIR=str(prom_dir),
    )
    return env


def uwsgi_argv(port: int, cfg: Config, workdir: Path) -> list[str]:
    argv = [str(VENV_BIN / "uwsgi"), "--master"]
    if cfg.lazy_apps:
        argv.append("--lazy-apps")
    module = APP
    if cfg.gc_freeze:
        argv += ["--pythonpath", str(workdir)]
        module = f"{FREEZE_MODULE}:application"
    argv += [
        "--processes", "2",
        "--http-socket", f"127.0.0.1:{port}",
        "--module", module,
        "--disable-logging",
        "--need-app",
        "--enable-threads",
        "--single-interpreter",
        "--die-on-term",
        *cfg.uwsgi_extra,
    ]  # fmt: skip
    return argv


def write_freeze_module(workdir: Path) -> None:
    (workdir / f"{FREEZE_MODULE}.py").write_text(
        '"""The app, then gc.freeze(): objects made by the import leave the GC\'s generations,\n'
        'so collections in forked workers do not write to (and un-share) their pages."""\n'
        "import gc\n\n"
        "from coinex_chatbot.wsgi import application\n\n"
        "gc.freeze()\n"
        '__all__ = ["application"]\n'
    )


def lua_script(
    path: Path, conversation_ids: list[str], responses: int, posts: int, counts: Path
) -> Path:
    """wrk script: 1 in 5 POST a message, 2 in 5 GET messages, 2 in 5 GET /healthz.

    wrk runs for a duration, not a count, and ``thread:stop()`` does not end it early: once the
    (single) thread has ``responses`` responses of which ``posts`` were 202 (a message accepted),
    it writes its counts to ``counts`` and exits the process.
    """
    path.write_text(
        "-- generated by bench/memory.py\n"
        + lua_tables(conversation_ids, QUESTIONS)
        + "local n, got, accepted, bad = 0, 0, 0, 0\n"
        f"local want, want_posts = {responses}, {posts}\n"
        "function request()\n"
        "  n = n + 1\n"
        "  local kind = n % 5\n"
        "  local id = ids[(n % #ids) + 1]\n"
        "  if kind == 0 or (got >= want and accepted < want_posts) then\n"
        '    return wrk.format("POST", "/api/v1/conversations/" .. id .. "/messages", headers,\n'
        "      bodies[(n % #bodies) + 1])\n"
        "  elseif kind <= 2 then\n"
        '    return wrk.format("GET", "/api/v1/conversations/" .. id .. "/messages")\n'
        "  end\n"
        '  return wrk.format("GET", "/healthz")\n'
        "end\n"
        "function response(status, headers, body)\n"
        "  got = got + 1\n"
        "  if status == 202 then accepted = accepted + 1 end\n"
        "  if status < 200 or status > 299 then bad = bad + 1 end\n"
        "  if got >= want and accepted >= want_posts then\n"
        f'    local f = assert(io.open("{counts}", "w"))\n'
        '    f:write(string.format("%d %d %d\\n", got, accepted, bad))\n'
        "    f:close()\n"
        "    os.exit(0)\n"
        "  end\n"
        "end\n"
    )
    return path


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(x) for x in task.read_text().split()]
        except OSError:
            continue
    return out


def _kib(text: str, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    if not match:
        raise BenchError(f"no {key} in /proc memory info")
    return int(match.group(1))


def read_mem(pid: int, kind: str) -> Mem:
    status = Path(f"/proc/{pid}/status").read_text()
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    maps = Path(f"/proc/{pid}/maps").read_text()
    return Mem(
        pid=pid,
        kind=kind,
        rss=_kib(status, "VmRSS"),
        hwm=_kib(status, "VmHWM"),
        pss=_kib(rollup, "Pss"),
        uss=_kib(rollup, "Private_Clean") + _kib(rollup, "Private_Dirty"),
        anon=_kib(rollup, "Anonymous"),
        jemalloc_mapped="libjemalloc" in maps,
    )


def measure_processes(uwsgi: Proc, dramatiqs: list[Proc]) -> list[Mem]:
    mems: list[Mem] = []
    if uwsgi.popen is None:
        raise BenchError("uWSGI is not running")
    master = uwsgi.popen.pid
    workers = children(master)
    if len(workers) != 2:
        raise BenchError(f"uWSGI master {master} has {len(workers)} children, expected 2")
    mems.append(read_mem(master, "uWSGI master"))
    mems += [read_mem(pid, "uWSGI worker") for pid in workers]
    for proc in dramatiqs:
        if proc.popen is None:
            raise BenchError(f"{proc.name} is not running")
        main = proc.popen.pid
        kids = children(main)
        if len(kids) != 1:
            raise BenchError(f"{proc.name} main {main} has {len(kids)} children, expected 1")
        mems.append(read_mem(main, "Dramatiq main"))
        mems.append(read_mem(kids[0], "Dramatiq worker"))
    return mems


def worker_pids(uwsgi: Proc, dramatiqs: list[Proc]) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    if uwsgi.popen is not None:
        found += [("uWSGI worker", pid) for pid in children(uwsgi.popen.pid)]
    for proc in dramatiqs:
        if proc.popen is not None:
            found += [("Dramatiq worker", pid) for pid in children(proc.popen.pid)]
    return found


class Sampler(threading.Thread):
    """Reads the workers' VmRSS every ``interval`` seconds while the load runs."""

    def __init__(self, res: SlotResult, uwsgi: Proc, dramatiqs: list[Proc], interval: float):
        super().__init__(daemon=True)
        self.res, self.uwsgi, self.dramatiqs, self.interval = res, uwsgi, dramatiqs, interval
        self.started = time.monotonic()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            now = time.monotonic() - self.started
            for kind, pid in worker_pids(self.uwsgi, self.dramatiqs):
                try:
                    rss = _kib(Path(f"/proc/{pid}/status").read_text(), "VmRSS")
                except (OSError, BenchError):  # a worker being recycled
                    continue
                self.res.samples.append((now, kind, rss))


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live children, plus the children it has reaped (cutime)."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
        total += int(fields[11]) + int(fields[12])
        if p == pid:
            total += int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


def create_conversations(client: redis.Redis, count: int) -> list[str]:
    from coinex_chatbot.store import Store

    client.flushdb()
    store = Store(client, 3600, "chatbot:escalations")
    return [store.create_conversation(None) for _ in range(count)]


def run_wrk(
    url: str, script: Path, counts: Path, connections: int, timeout: int
) -> tuple[int, int, int]:
    """Responses, accepted messages and non-2xx responses, as counted by the wrk script."""
    counts.unlink(missing_ok=True)
    argv = [WRK, "-t", "1", "-c", str(connections), "-d", f"{timeout}s", "--timeout", "10s"]
    argv += ["-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 60, check=False)
    if out.returncode != 0 or not counts.exists():
        raise BenchError(
            f"wrk ended ({out.returncode}) before the counts were reached: "
            f"{out.stderr}\n{out.stdout}"
        )
    got, accepted, bad = (int(x) for x in counts.read_text().split())
    return got, accepted, bad


def wait_drained(client: redis.Redis, procs: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            proc.check_alive()
        pipe = client.pipeline(transaction=False)
        pipe.llen("dramatiq:default")
        pipe.hlen("dramatiq:default.msgs")
        queued, unacked = pipe.execute()
        if queued == 0 and unacked == 0:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"{queued} queued / {unacked} unacked messages after {timeout} s")
        time.sleep(0.5)


def count_outcomes(client: redis.Redis, conversation_ids: list[str]) -> tuple[int, int, int]:
    pipe = client.pipeline(transaction=False)
    for cid in conversation_ids:
        pipe.lrange(f"chatbot:conv:{cid}:messages", 0, -1)
    mids = [m for ids in pipe.execute() for m in ids]
    statuses: list[str] = []
    for i in range(0, len(mids), 5000):
        pipe = client.pipeline(transaction=False)
        for mid in mids[i : i + 5000]:
            pipe.hget(f"chatbot:msg:{mid}", "status")
        statuses += pipe.execute()
    return len(mids), statuses.count("answered"), statuses.count("escalated")


def run_slot(
    res: SlotResult,
    args: argparse.Namespace,
    client: redis.Redis,
    redis_url: str,
    jemalloc_path: str,
    workdir: Path,
) -> None:
    cfg = res.config
    slot_dir = workdir / f"{res.size}-{cfg.name}"
    prom = slot_dir / "prometheus"
    prom.mkdir(parents=True)
    env = cfg.environment(app_env(redis_url, prom), jemalloc_path)
    ids = create_conversations(client, args.conversations)
    port = free_port()
    uwsgi = Proc(
        "uWSGI", uwsgi_argv(port, cfg, workdir), env, slot_dir / "uwsgi.log", signal.SIGINT
    )
    worker_argv = [
        str(VENV_BIN / "dramatiq"), "coinex_chatbot.tasks", "--processes", "1", "--threads", "4",
    ]  # fmt: skip
    dramatiqs = [
        Proc(f"dramatiq-{i}", worker_argv, env, slot_dir / f"dramatiq-{i}.log") for i in range(2)
    ]
    procs = [uwsgi, *dramatiqs]
    try:
        for proc in procs:
            proc.start()

        def ready() -> bool:
            uwsgi.check_alive()
            return http_status(f"http://127.0.0.1:{port}/readyz") == 200

        wait_for(ready, 90, f"uWSGI /readyz on port {port}")
        for proc in dramatiqs:

            def booted(p: Proc = proc) -> bool:
                p.check_alive()
                return "ready for action" in p.log_tail(50)

            wait_for(booted, 90, f"{proc.name} ready")
        counts = slot_dir / "wrk-counts.txt"
        script = lua_script(slot_dir / "mix.lua", ids, res.want_requests, res.want_messages, counts)
        assert uwsgi.popen is not None
        cpu_before = tree_cpu_seconds(uwsgi.popen.pid)
        sampler = Sampler(res, uwsgi, dramatiqs, args.sample_interval)
        sampler.start()
        started = time.monotonic()
        try:
            res.requests, res.accepted, res.non_2xx = run_wrk(
                f"http://127.0.0.1:{port}/", script, counts, args.connections, args.max_seconds
            )
        finally:
            sampler.halt.set()
            sampler.join()
        res.load_s = time.monotonic() - started
        res.uwsgi_cpu_s = tree_cpu_seconds(uwsgi.popen.pid) - cpu_before
        wait_drained(client, procs, args.max_seconds)
        res.drain_s = time.monotonic() - started - res.load_s
        time.sleep(args.settle)
        for proc in procs:
            proc.check_alive()
        res.mems = measure_processes(uwsgi, dramatiqs)
    finally:
        for proc in procs:
            proc.stop()
    res.messages, res.answered, res.escalated = count_outcomes(client, ids)
    res.respawns = uwsgi.log_path.read_text(errors="replace").count("Respawned uWSGI worker")
    check_slot(res)


def check_slot(res: SlotResult) -> None:
    name = f"{res.size}/{res.config.name}"
    if res.requests < res.want_requests:
        raise BenchError(f"{name}: wrk got {res.requests} < {res.want_requests} responses")
    if res.non_2xx:
        raise BenchError(f"{name}: {res.non_2xx} non-2xx responses")
    if res.accepted < res.want_messages or res.messages < res.accepted:
        raise BenchError(
            f"{name}: {res.accepted} messages accepted (202), {res.messages} stored; "
            f"expected >= {res.want_messages}"
        )
    if res.answered + res.escalated != res.messages:
        raise BenchError(
            f"{name}: {res.messages - res.answered - res.escalated} messages not completed"
        )
    for mem in res.mems:
        if mem.jemalloc_mapped != res.config.jemalloc:
            raise BenchError(
                f"{name}: {mem.kind} {mem.pid} has libjemalloc mapped={mem.jemalloc_mapped}, "
                f"expected {res.config.jemalloc}"
            )


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def median_of(res: SlotResult, kind: str, attr: str = "rss") -> float:
    return statistics.median(getattr(m, attr) for m in res.of(kind))


def total_of(res: SlotResult, prefix: str, attr: str) -> int:
    return sum(getattr(m, attr) for m in res.mems if m.kind.startswith(prefix))


def baseline(results: list[SlotResult], res: SlotResult) -> SlotResult:
    return next(r for r in results if r.size == res.size and r.config.name == "glibc")


def summary_line(res: SlotResult) -> str:
    parts = [
        f"{kind} RSS {mib(median_of(res, kind))} PSS {mib(median_of(res, kind, 'pss'))}"
        for kind in KINDS
    ]
    return f"  {res.size}/{res.config.name}: " + "; ".join(parts) + " (MiB, medians)"


def run_table(results: list[SlotResult]) -> list[str]:
    lines = [
        "| run | config | settings | requests | messages (answered + escalated) | load s "
        "| drain s | uWSGI respawns | uWSGI CPU ms per 1,000 requests |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for res in results:
        lines.append(
            f"| {res.size} | {res.config.name} | {res.config.describe()} | {res.requests:,} "
            f"| {res.messages:,} ({res.answered:,} + {res.escalated:,}) | {res.load_s:.0f} "
            f"| {res.drain_s:.0f} | {res.respawns} "
            f"| {res.uwsgi_cpu_s / res.requests * 1e6:.0f} |"
        )
    return lines


def memory_table(results: list[SlotResult]) -> list[str]:
    lines = [
        "| run | config | process kind | n | RSS median | RSS max | peak (VmHWM) max "
        "| PSS median | USS median | anon median | RSS ratio vs glibc | libjemalloc mapped |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for res in results:
        base = baseline(results, res)
        for kind in KINDS:
            ms = res.of(kind)
            ratio = median_of(res, kind) / median_of(base, kind)
            mapped = {m.jemalloc_mapped for m in ms}
            lines.append(
                f"| {res.size} | {res.config.name} | {kind} | {len(ms)} "
                f"| {mib(median_of(res, kind))} | {mib(max(m.rss for m in ms))} "
                f"| {mib(max(m.hwm for m in ms))} | {mib(median_of(res, kind, 'pss'))} "
                f"| {mib(median_of(res, kind, 'uss'))} | {mib(median_of(res, kind, 'anon'))} "
                f"| {ratio:.2f}x | {'yes' if mapped == {True} else 'no'} |"
            )
    return lines


def totals_table(results: list[SlotResult]) -> list[str]:
    """What the instance costs the host: PSS summed over all processes of a kind of program."""
    lines = [
        "| run | config | uWSGI PSS total (master + 2 workers) | ratio | Dramatiq PSS total "
        "(2 × main + worker) | ratio |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for res in results:
        base = baseline(results, res)
        cells = []
        for prefix in ("uWSGI", "Dramatiq"):
            total = total_of(res, prefix, "pss")
            cells += [mib(total), f"{total / total_of(base, prefix, 'pss'):.2f}x"]
        lines.append(f"| {res.size} | {res.config.name} | " + " | ".join(cells) + " |")
    return lines


def growth_table(results: list[SlotResult]) -> list[str]:
    """Workers' RSS sampled during the load: is it flat (steady) or growing?"""
    lines = [
        "| run | config | process kind | RSS at 10 % of the load | at 50 % | after the load "
        "| max sampled during the load |",
        "|---|---|---|--:|--:|--:|--:|",
    ]
    for res in results:
        for kind in ("uWSGI worker", "Dramatiq worker"):
            lines.append(
                f"| {res.size} | {res.config.name} | {kind} | {mib(res.rss_at(kind, 0.1))} "
                f"| {mib(res.rss_at(kind, 0.5))} | {mib(median_of(res, kind))} "
                f"| {mib(res.rss_max(kind))} |"
            )
    return lines


def target_lines(results: list[SlotResult]) -> list[str]:
    lines = []
    for res in results:
        if not res.config.jemalloc:
            continue
        base = baseline(results, res)
        ratios = [
            f"{kind} {median_of(res, kind) / median_of(base, kind):.2f}x"
            for kind in ("uWSGI worker", "Dramatiq worker")
        ]
        worst = max(
            median_of(res, kind) / median_of(base, kind)
            for kind in ("uWSGI worker", "Dramatiq worker")
        )
        verdict = "met" if worst <= TARGET else "not met"
        lines.append(f"- {res.size}/{res.config.name}: " + ", ".join(ratios) + f": **{verdict}**")
    return lines


def section(
    results: list[SlotResult], args: argparse.Namespace, jemalloc_path: str, wall: float
) -> str:
    info = machine()
    uwsgi_version = tool_version([str(VENV_BIN / "uwsgi"), "--version"])
    redis_version = tool_version([REDIS_SERVER, "--version"]).split(" sha=")[0]
    wrk_version = tool_version([WRK, "-v"]).split(" [")[0]
    command = shlex.join([".venv/bin/python", "bench/memory.py", *sys.argv[1:]])
    lines = [
        START,
        "## Runtime memory: jemalloc vs glibc malloc, gc.freeze(), worker recycling",
        "",
        f"Command: `{command}` — one run of {wall / 60:.1f} min, every configuration in turn on "
        "the same redis-server.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['os']}, kernel "
        f"{info['kernel']}, Python {info['python']}, uWSGI {uwsgi_version} (pyuwsgi), "
        f"{wrk_version}, {redis_version}, {jemalloc_path}; {info['date']}; load average at the "
        f"end {info['load']}. The machine is shared and other benchmarks ran meanwhile: that "
        "changes the load/drain seconds, not the memory of a process.",
        "",
        "Each configuration starts its own uWSGI master + 2 workers (`--master --processes 2 "
        "--http-socket ... --disable-logging --need-app --enable-threads --single-interpreter "
        "--die-on-term`, `--lazy-apps` unless said otherwise) and 2 × `dramatiq "
        "coinex_chatbot.tasks --processes 1 --threads 4` (Supervisor's numprocs), all with the "
        f"configuration's environment. wrk ({args.connections} connections, one Lua script: "
        "2/5 GET /healthz, 2/5 GET .../messages, 1/5 POST .../messages over "
        f"{args.conversations:,} conversations) runs until it has the requests and the accepted "
        "(202) messages of the run: **full** = "
        f"{args.requests:,} requests / {args.messages:,} messages, **short** = "
        f"{args.short_requests:,} / {args.short_messages:,}. Then the workers answer or escalate "
        "every message (each status checked), and after "
        f"{args.settle:g} s of idle the memory is read from /proc: RSS = VmRSS, peak = VmHWM "
        "(/proc/<pid>/status), PSS, USS (private clean + dirty) and anon from smaps_rollup; MiB. "
        'Ratios compare with the glibc run of the same size. "libjemalloc mapped" comes from '
        "/proc/<pid>/maps; the script fails if it differs from the configuration.",
        "",
        *run_table(results),
        "",
        *memory_table(results),
        "",
        *totals_table(results),
        "",
        f"RSS of the workers sampled every {args.sample_interval:g} s during the load (median "
        "over the processes of the sample; the max includes workers recycled since):",
        "",
        *growth_table(results),
        "",
        f"Target: jemalloc RSS <= {TARGET}x glibc (median, uWSGI workers and Dramatiq workers):",
        "",
        *target_lines(results),
    ]
    lines += [END, ""]
    return "\n".join(lines)


def _names(p: argparse.ArgumentParser, value: str, option: str) -> list[Config]:
    names = [n for n in value.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or (names and "glibc" not in names):
        p.error(
            f"{option}: unknown {unknown} or no 'glibc' (the baseline); of: {','.join(CONFIGS)}"
        )
    return [CONFIGS[n] for n in names]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=100_000, help="responses per full run")
    p.add_argument("--messages", type=int, default=20_000, help="accepted messages per full run")
    p.add_argument("--short-requests", type=int, default=10_000)
    p.add_argument("--short-messages", type=int, default=2_000)
    p.add_argument("--full", default=FULL, help=f"configs run at full size (default {FULL})")
    p.add_argument("--short", default=SHORT, help=f"configs run at short size (default {SHORT})")
    p.add_argument("--conversations", type=int, default=4000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--sample-interval", type=float, default=2.0, help="RSS sampling, seconds")
    p.add_argument("--settle", type=float, default=3.0, help="idle seconds before reading")
    p.add_argument("--max-seconds", type=int, default=900, help="bound of each load phase")
    p.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    p.add_argument("--output", type=Path, default=DOC)
    args = p.parse_args(argv)
    args.slots = [
        SlotResult(cfg, "full", args.requests, args.messages)
        for cfg in _names(p, args.full, "--full")
    ] + [
        SlotResult(cfg, "short", args.short_requests, args.short_messages)
        for cfg in _names(p, args.short, "--short")
    ]
    if not args.slots:
        p.error("nothing to run")
    return args


def _terminated(signum: int, frame: object) -> None:
    raise BenchError(f"stopped by signal {signum}")  # the finally blocks stop every process


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    for tool in (WRK, REDIS_SERVER, str(VENV_BIN / "uwsgi"), str(VENV_BIN / "dramatiq")):
        if not Path(tool).exists():
            raise BenchError(f"{tool} is missing")
    jemalloc_path = find_jemalloc()
    print(f"jemalloc: {jemalloc_path}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    write_freeze_module(workdir)
    started = time.monotonic()
    redis_proc, redis_url = start_redis(workdir)
    try:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        for res in args.slots:
            print(f"{res.size}/{res.config.name}: {res.config.describe()}", flush=True)
            run_slot(res, args, client, redis_url, jemalloc_path, workdir)
            print(
                f"  {res.requests} requests in {res.load_s:.0f} s, {res.messages} messages "
                f"({res.answered} answered, {res.escalated} escalated), drained "
                f"{res.drain_s:.0f} s later, {res.respawns} uWSGI respawns",
                flush=True,
            )
            print(summary_line(res), flush=True)
    finally:
        redis_proc.stop()
    text = section(args.slots, args, jemalloc_path, time.monotonic() - started)
    print(text)
    if not args.no_write:
        write_section(args.output, text, START, END, keep=(NOTES_START, NOTES_END))
        print(f"wrote {args.output}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"bench/memory.py: {exc}", file=sys.stderr)
        sys.exit(1)
