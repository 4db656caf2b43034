"""Runtime memory of the app: glibc malloc vs jemalloc, gc.freeze() before fork, worker recycling.

Writes the "Runtime memory" part of docs/benchmarks.md (between ``<!-- bench:memory:start -->``
and ``<!-- bench:memory:end -->``). Run ``.venv/bin/python bench/run.py memory`` (or
``bench/memory.py``) from the checkout, ``--help`` for the knobs. In one run, for each
configuration in turn, on one private redis-server (free loopback port, no persistence):

1. starts uWSGI (``--master --processes 2 --threads 2``, the role's options, ``lazy-apps`` unless
   the configuration preloads) and two ``dramatiq coinex_chatbot.tasks --processes 1 --threads 4``
   programs (as Supervisor's numprocs), all with the configuration's environment (``LD_PRELOAD``
   of the host's libjemalloc.so.2, ...);
2. drives exactly N requests (default 100,000: 1 in 5 POST .../messages, so exactly M = 20,000
   messages, the rest GET .../messages and GET /healthz) with wrk, then waits until the workers
   have answered (or escalated) every message and checks every status. Every configuration runs
   at the same size; the workers' RSS is sampled during the load; failed requests (non-2xx, or
   no response at all), req/s and uWSGI CPU per request (recycled workers included) are counted;
3. reads VmRSS/VmHWM (/proc/<pid>/status) and Rss/Pss/USS/Anonymous (/proc/<pid>/smaps_rollup)
   of every process, checks from /proc/<pid>/maps that libjemalloc is mapped exactly where it
   was preloaded, then stops everything it started.

Memory is per process and robust to other load on the machine; req/s is not (the 1-minute load
average at the start of each configuration is in the table). The hand-written analysis between
the notes markers inside the section survives a re-run.
"""

from __future__ import annotations

import argparse
import math
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
    app_env,
    broker_backlog,
    cli,
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
BENCH_DIR = Path(__file__).resolve().parent
TUNED_CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
KINDS = ("uWSGI worker", "uWSGI master", "Dramatiq worker", "Dramatiq main")
UWSGI_PROCESSES, UWSGI_THREADS, TASK_THREADS = 2, 2, 4
# the role's defaults (roles/coinex_chatbot/defaults/main.yml)
ROLE_RECYCLE = ("--max-requests", "5000", "--reload-on-rss", "192", "--max-worker-lifetime", "3600")


@dataclass(frozen=True)
class Config:
    """One configuration of the allocator and of uWSGI, applied to all processes of a slot."""

    name: str
    jemalloc: bool
    malloc_conf: str = ""
    env: tuple[tuple[str, str], ...] = ()
    preload: bool = False  # masters import the app before forking (uWSGI without lazy-apps)
    gc_freeze: bool = False  # gc.freeze() in the masters before the fork (see uwsgi_freeze.py)
    uwsgi_extra: tuple[str, ...] = ()
    # --reload-on-rss this many MiB above the glibc run's worker RSS at 10 % of its load (rounded
    # up; the glibc run comes first), so that the growth seen after that triggers it
    rss_margin: int | None = None

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
        if self.preload:
            parts.append(
                "no lazy-apps (uWSGI master imports the app); Dramatiq main imports the tasks "
                "and builds the knowledge base before its fork"
            )
        else:
            parts.append("lazy-apps")
        if self.gc_freeze:
            parts.append(
                "gc.freeze() before the fork in the uWSGI master and the Dramatiq main"
                if self.preload
                else "gc.freeze() before the fork in the Dramatiq main (dramatiq only), "
                "after the app import in each uWSGI worker (lazy-apps: the master has no app)"
            )
        if self.uwsgi_extra:
            parts.append(" ".join(self.uwsgi_extra))
        if self.rss_margin is not None:
            parts.append(
                f"--reload-on-rss = glibc worker RSS at 10 % of the load + {self.rss_margin} MiB"
            )
        return "; ".join(parts)


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        Config("glibc", jemalloc=False),
        Config("jemalloc", jemalloc=True),
        Config("jemalloc-tuned", jemalloc=True, malloc_conf=TUNED_CONF + ",narenas:1"),
        Config("glibc-arena2", jemalloc=False, env=(("MALLOC_ARENA_MAX", "2"),)),
        Config("glibc-freeze", jemalloc=False, gc_freeze=True),
        Config("glibc-preload", jemalloc=False, preload=True),
        Config("glibc-preload-freeze", jemalloc=False, preload=True, gc_freeze=True),
        Config("glibc-recycle-role", jemalloc=False, uwsgi_extra=ROLE_RECYCLE),
        Config("glibc-max-requests-1000", jemalloc=False, uwsgi_extra=("--max-requests", "1000")),
        Config("glibc-reload-on-rss-tight", jemalloc=False, rss_margin=0),
    )
}
DEFAULT = ",".join(n for n in CONFIGS if n not in ("jemalloc-tuned", "glibc-arena2"))


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
    want_requests: int
    want_messages: int
    mems: list[Mem] = field(default_factory=list)
    requests: int = 0  # responses to the N requests
    accepted: int = 0  # 202s
    non_2xx: int = 0
    lost: int = 0  # requests without any response (socket error, timeout)
    uwsgi_extra: tuple[str, ...] = ()  # the uWSGI options of this run (rss_margin resolved)
    loadavg: str = ""  # 1-minute load average when the configuration started
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

    @property
    def failed(self) -> int:
        return self.non_2xx + self.lost

    @property
    def rps(self) -> float:
        return self.requests / self.load_s if self.load_s else 0.0

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


def uwsgi_argv(port: int, cfg: Config, extra: tuple[str, ...]) -> list[str]:
    """uWSGI with the role's options (uwsgi.ini.j2) that matter here, logging off."""
    argv = [str(VENV_BIN / "uwsgi"), "--master"]
    if not cfg.preload:
        argv.append("--lazy-apps")
    module = APP
    if cfg.gc_freeze:
        argv += ["--pythonpath", str(BENCH_DIR)]
        module = "uwsgi_freeze:application"
    argv += [
        "--processes", str(UWSGI_PROCESSES),
        "--threads", str(UWSGI_THREADS),
        "--http-socket", f"127.0.0.1:{port}",
        "--add-header", "Connection: close",  # it closes anyway; without it wrk sees read errors
        "--module", module,
        "--disable-logging",
        "--need-app",
        "--enable-threads",
        "--single-interpreter",
        "--die-on-term",
        *extra,
    ]  # fmt: skip
    return argv


def dramatiq_argv(cfg: Config) -> list[str]:
    """The task program's command; through bench/dramatiq_main.py when the main process must do
    something before its fork."""
    flags = (["--bench-preload"] if cfg.preload else []) + (
        ["--bench-freeze"] if cfg.gc_freeze else []
    )
    head = [str(VENV_BIN / "dramatiq")]
    if flags:
        head = [str(VENV_BIN / "python"), str(BENCH_DIR / "dramatiq_main.py"), *flags]
    return [*head, "coinex_chatbot.tasks", "--processes", "1", "--threads", str(TASK_THREADS)]


def lua_script(
    path: Path, conversation_ids: list[str], requests: int, posts: int, counts: Path, give_up: int
) -> Path:
    """wrk script: exactly ``requests`` requests, ``posts`` of them POST .../messages (evenly
    spread), the others alternately GET .../messages and GET /healthz.

    wrk runs for a duration, not a count, and ``thread:stop()`` does not end it early. After the
    N requests the (single) thread sends filler requests to a path that answers 404 and does not
    count them (wrk's own check of the script before the run gets one too); once the N requests
    all have their response (or ``give_up`` fillers came back, so any request still missing got
    no response at all), it writes its counts to ``counts`` and exits the process.
    """
    path.write_text(
        "-- generated by bench/memory.py\n"
        + lua_tables(conversation_ids, QUESTIONS)
        + "local issued, posted, got, accepted, bad, filler = 0, 0, 0, 0, 0, 0\n"
        f"local want, want_posts, give_up = {requests}, {posts}, {give_up}\n"
        "local verified = false\n"
        "function request()\n"
        "  -- wrk calls request() once before the run to check it: give that call a filler\n"
        "  if issued >= want or not verified then\n"
        "    verified = true\n"
        '    return wrk.format("GET", "/bench-filler-404")\n'
        "  end\n"
        "  issued = issued + 1\n"
        "  local id = ids[(issued % #ids) + 1]\n"
        "  if math.floor(issued * want_posts / want) > posted then\n"
        "    posted = posted + 1\n"
        '    return wrk.format("POST", "/api/v1/conversations/" .. id .. "/messages", headers,\n'
        "      bodies[(posted % #bodies) + 1])\n"
        "  elseif issued % 2 == 0 then\n"
        '    return wrk.format("GET", "/api/v1/conversations/" .. id .. "/messages")\n'
        "  end\n"
        '  return wrk.format("GET", "/healthz")\n'
        "end\n"
        "function response(status, headers, body)\n"
        "  if status == 404 then\n"
        "    filler = filler + 1\n"
        "  else\n"
        "    got = got + 1\n"
        "    if status == 202 then accepted = accepted + 1 end\n"
        "    if status < 200 or status > 299 then bad = bad + 1 end\n"
        "  end\n"
        "  if got >= want or filler >= give_up then\n"
        f'    local f = assert(io.open("{counts}", "w"))\n'
        '    f:write(string.format("%d %d %d %d\\n", got, accepted, bad, posted))\n'
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
) -> tuple[int, int, int, int]:
    """Responses, accepted messages, non-2xx responses and POSTs sent, as the wrk script counted."""
    counts.unlink(missing_ok=True)
    argv = [WRK, "-t", "1", "-c", str(connections), "-d", f"{timeout}s", "--timeout", "10s"]
    argv += ["-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 60, check=False)
    if out.returncode != 0 or not counts.exists():
        raise BenchError(
            f"wrk ended ({out.returncode}) before the counts were reached: "
            f"{out.stderr}\n{out.stdout}"
        )
    got, accepted, bad, posted = (int(x) for x in counts.read_text().split())
    return got, accepted, bad, posted


def wait_drained(client: redis.Redis, procs: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            proc.check_alive()
        queued, unacked = broker_backlog(client)
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
    slot_dir = workdir / cfg.name
    prom = slot_dir / "prometheus"
    prom.mkdir(parents=True)
    env = cfg.environment(app_env(redis_url, prom), jemalloc_path)
    ids = create_conversations(client, args.conversations)
    port = free_port()
    res.loadavg = Path("/proc/loadavg").read_text().split()[0]
    uwsgi_cmd = uwsgi_argv(port, cfg, res.uwsgi_extra)
    uwsgi = Proc("uWSGI", uwsgi_cmd, env, slot_dir / "uwsgi.log", signal.SIGINT)
    dramatiqs = [
        Proc(f"dramatiq-{i}", dramatiq_argv(cfg), env, slot_dir / f"dramatiq-{i}.log")
        for i in range(2)
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
        script = lua_script(
            slot_dir / "mix.lua",
            ids,
            res.want_requests,
            res.want_messages,
            counts,
            give_up=20 * args.connections,
        )
        assert uwsgi.popen is not None
        cpu_before = tree_cpu_seconds(uwsgi.popen.pid)
        sampler = Sampler(res, uwsgi, dramatiqs, args.sample_interval)
        sampler.start()
        started = time.monotonic()
        try:
            res.requests, res.accepted, res.non_2xx, posted = run_wrk(
                f"http://127.0.0.1:{port}/", script, counts, args.connections, args.max_seconds
            )
        finally:
            sampler.halt.set()
            sampler.join()
        res.load_s = time.monotonic() - started
        res.lost = res.want_requests - res.requests
        if posted != res.want_messages:
            raise BenchError(
                f"{cfg.name}: the wrk script sent {posted} POSTs, not {res.want_messages}"
            )
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
    """Every message accepted is stored and completed; failed requests are counted (recycling
    may cause some) but more than 1 % means something is broken."""
    name = res.config.name
    if res.failed > res.want_requests // 100:
        raise BenchError(f"{name}: {res.non_2xx} non-2xx and {res.lost} lost responses")
    if not res.accepted <= res.messages <= res.want_messages:
        raise BenchError(
            f"{name}: {res.accepted} messages accepted (202), {res.messages} stored; "
            f"{res.want_messages} sent"
        )
    if res.failed == 0 and res.messages != res.want_messages:
        raise BenchError(f"{name}: {res.messages} messages stored, {res.want_messages} sent")
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


def baseline(results: list[SlotResult]) -> SlotResult:
    return next(r for r in results if r.config.name == "glibc")


def summary_line(res: SlotResult) -> str:
    parts = [
        f"{kind} RSS {mib(median_of(res, kind))} PSS {mib(median_of(res, kind, 'pss'))}"
        for kind in KINDS
    ]
    return f"  {res.config.name}: " + "; ".join(parts) + " (MiB, medians)"


def cpu_per_request_us(res: SlotResult) -> float:
    return res.uwsgi_cpu_s / max(res.requests, 1) * 1e6


def run_table(results: list[SlotResult]) -> list[str]:
    lines = [
        "| config | settings | requests answered | failed (non-2xx + no response) "
        "| messages (answered + escalated) | load s | req/s | drain s | uWSGI respawns "
        "| uWSGI CPU µs per request | load avg at start |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for res in results:
        settings = res.config.describe()
        if res.config.rss_margin is not None:
            settings += f" = `{' '.join(res.uwsgi_extra)}`"
        lines.append(
            f"| {res.config.name} | {settings} | {res.requests:,} "
            f"| {res.failed} ({res.non_2xx} + {res.lost}) "
            f"| {res.messages:,} ({res.answered:,} + {res.escalated:,}) | {res.load_s:.0f} "
            f"| {res.rps:.0f} | {res.drain_s:.0f} | {res.respawns} "
            f"| {cpu_per_request_us(res):.0f} | {res.loadavg} |"
        )
    return lines


def memory_table(results: list[SlotResult]) -> list[str]:
    base = baseline(results)
    lines = [
        "| config | process kind | n | RSS median | RSS max | peak (VmHWM) max "
        "| PSS median | USS median | anon median | RSS ratio vs glibc | libjemalloc mapped |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for res in results:
        for kind in KINDS:
            ms = res.of(kind)
            ratio = median_of(res, kind) / median_of(base, kind)
            mapped = {m.jemalloc_mapped for m in ms}
            lines.append(
                f"| {res.config.name} | {kind} | {len(ms)} "
                f"| {mib(median_of(res, kind))} | {mib(max(m.rss for m in ms))} "
                f"| {mib(max(m.hwm for m in ms))} | {mib(median_of(res, kind, 'pss'))} "
                f"| {mib(median_of(res, kind, 'uss'))} | {mib(median_of(res, kind, 'anon'))} "
                f"| {ratio:.2f}x | {'yes' if mapped == {True} else 'no'} |"
            )
    return lines


def summary_table(results: list[SlotResult]) -> list[str]:
    """Each configuration against the glibc run: memory, and what it costs in speed."""
    base = baseline(results)
    lines = [
        "| config | uWSGI worker RSS | Dramatiq worker RSS | Dramatiq main RSS "
        "| uWSGI PSS total (master + 2 workers) | Dramatiq PSS total (2 × main + worker) "
        "| req/s | uWSGI CPU per request | failed requests |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for res in results:
        cells = [
            f"{median_of(res, kind) / median_of(base, kind):.2f}x"
            for kind in ("uWSGI worker", "Dramatiq worker", "Dramatiq main")
        ]
        for prefix in ("uWSGI", "Dramatiq"):
            total = total_of(res, prefix, "pss")
            cells.append(f"{mib(total)} MiB = {total / total_of(base, prefix, 'pss'):.2f}x")
        cells += [
            f"{res.rps / base.rps:.2f}x",
            f"{cpu_per_request_us(res) / cpu_per_request_us(base):.2f}x",
            str(res.failed),
        ]
        lines.append(f"| {res.config.name} | " + " | ".join(cells) + " |")
    return lines


def growth_table(results: list[SlotResult]) -> list[str]:
    """Workers' RSS sampled during the load: is it flat (steady) or growing?"""
    lines = [
        "| config | process kind | RSS at 10 % of the load | at 50 % | after the load "
        "| max sampled during the load |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for res in results:
        for kind in ("uWSGI worker", "Dramatiq worker"):
            lines.append(
                f"| {res.config.name} | {kind} | {mib(res.rss_at(kind, 0.1))} "
                f"| {mib(res.rss_at(kind, 0.5))} | {mib(median_of(res, kind))} "
                f"| {mib(res.rss_max(kind))} |"
            )
    return lines


TARGET_KINDS = ("uWSGI worker", "Dramatiq worker", "Dramatiq main")


def target_lines(results: list[SlotResult]) -> list[str]:
    base = baseline(results)
    lines = []
    for res in results:
        if not res.config.jemalloc:
            continue
        ratios = {kind: median_of(res, kind) / median_of(base, kind) for kind in TARGET_KINDS}
        verdict = "met" if max(ratios.values()) <= TARGET else "not met"
        lines.append(
            f"- {res.config.name}: "
            + ", ".join(f"{kind} {r:.2f}x" for kind, r in ratios.items())
            + f": **{verdict}**"
        )
    return lines


def section(
    results: list[SlotResult], args: argparse.Namespace, jemalloc_path: str, wall: float
) -> str:
    info = machine()
    uwsgi_version = tool_version([str(VENV_BIN / "uwsgi"), "--version"])
    redis_version = tool_version([REDIS_SERVER, "--version"]).split(" sha=")[0]
    wrk_version = tool_version([WRK, "-v"]).split(" [")[0]
    command = shlex.join([".venv/bin/python", "bench/run.py", "memory", *args.argv])
    lines = [
        START,
        "## Runtime memory: jemalloc vs glibc malloc, gc.freeze(), worker recycling",
        "",
        f"Command: `{command}` (part of `make bench`) — one run of {wall / 60:.1f} min, every "
        "configuration in turn on the same redis-server.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['os']}, kernel "
        f"{info['kernel']}, Python {info['python']}, uWSGI {uwsgi_version} (pyuwsgi), "
        f"{wrk_version}, {redis_version}, {jemalloc_path}; {info['date']}; load average "
        f"(/proc/loadavg) at the start {args.load_start}, at the end {info['load']}. The machine "
        "is shared and other jobs ran meanwhile: that changes req/s and the load/drain seconds "
        "(compare them only within this run), not the memory of a process.",
        "",
        f"Each configuration starts its own uWSGI master + {UWSGI_PROCESSES} workers (`--master "
        f"--processes {UWSGI_PROCESSES} --threads {UWSGI_THREADS} --http-socket ... "
        "--disable-logging --need-app --enable-threads --single-interpreter --die-on-term`, "
        "`--lazy-apps` as in the role unless the configuration preloads) and 2 × `dramatiq "
        f"coinex_chatbot.tasks --processes 1 --threads {TASK_THREADS}` (Supervisor's numprocs), "
        f"all with the configuration's environment. wrk ({args.connections} connections, one Lua "
        f"script) sends exactly {args.requests:,} requests: {args.messages:,} POST .../messages "
        "(evenly spread, so exactly that many messages) and, alternately, GET .../messages and "
        f"GET /healthz, over {args.conversations:,} conversations. Then the workers answer or "
        f"escalate every message (each status checked), and after {args.settle:g} s of idle the "
        "memory is read from /proc: RSS = VmRSS, peak = VmHWM (/proc/<pid>/status), PSS, USS "
        "(private clean + dirty) and anon from smaps_rollup; MiB. Ratios compare with the glibc "
        'run (no recycling, lazy-apps). "libjemalloc mapped" comes from /proc/<pid>/maps; the '
        "script fails if it differs from the configuration. Failed = non-2xx responses + "
        "requests that got no response (more than 1 % stops the run).",
        "",
        *run_table(results),
        "",
        "Each configuration against glibc (ratios of medians; PSS totals = what the programs "
        "cost the host together):",
        "",
        *summary_table(results),
        "",
        *memory_table(results),
        "",
        f"RSS of the workers sampled every {args.sample_interval:g} s during the load (median "
        "over the processes of the sample; the max includes workers recycled since):",
        "",
        *growth_table(results),
        "",
        f"Target: jemalloc RSS <= {TARGET}x glibc (medians of the uWSGI workers, the Dramatiq "
        "workers and the Dramatiq main processes):",
        "",
        *target_lines(results),
    ]
    lines += [END, ""]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=100_000, help="requests per configuration")
    p.add_argument(
        "--messages", type=int, default=20_000, help="of which POST .../messages (messages)"
    )
    p.add_argument(
        "--configs", default=DEFAULT, help=f"glibc first, then any of {','.join(CONFIGS)}"
    )
    p.add_argument("--conversations", type=int, default=4000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--sample-interval", type=float, default=2.0, help="RSS sampling, seconds")
    p.add_argument("--settle", type=float, default=3.0, help="idle seconds before reading")
    p.add_argument("--max-seconds", type=int, default=900, help="bound of each load phase")
    p.add_argument("--no-write", action="store_true", help="print only, leave the docs alone")
    p.add_argument("--output", type=Path, default=DOC)
    args = p.parse_args(argv)
    args.argv = argv
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names or names[0] != "glibc":
        p.error(f"--configs: unknown {unknown} or not glibc (the baseline) first")
    if not 0 < args.messages <= args.requests:
        p.error("--messages must be between 1 and --requests")
    args.slots = [SlotResult(CONFIGS[n], args.requests, args.messages) for n in names]
    return args


def _terminated(signum: int, frame: object) -> None:
    raise BenchError(f"stopped by signal {signum}")  # the finally blocks stop every process


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.load_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    signal.signal(signal.SIGTERM, _terminated)
    for tool in (WRK, REDIS_SERVER, str(VENV_BIN / "uwsgi"), str(VENV_BIN / "dramatiq")):
        if not Path(tool).exists():
            raise BenchError(f"{tool} is missing")
    jemalloc_path = find_jemalloc()
    print(f"jemalloc: {jemalloc_path}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    started = time.monotonic()
    redis_proc, redis_url = start_redis(workdir)
    try:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        for res in args.slots:
            res.uwsgi_extra = res.config.uwsgi_extra
            if res.config.rss_margin is not None:  # glibc ran first
                base = baseline(args.slots)
                early = base.rss_at("uWSGI worker", 0.1)
                early_mib = (median_of(base, "uWSGI worker") if math.isnan(early) else early) / 1024
                limit = math.ceil(early_mib) + res.config.rss_margin
                res.uwsgi_extra += ("--reload-on-rss", str(limit))
            print(f"{res.config.name}: {res.config.describe()} {res.uwsgi_extra}", flush=True)
            run_slot(res, args, client, redis_url, jemalloc_path, workdir)
            print(
                f"  {res.requests} requests in {res.load_s:.0f} s ({res.rps:.0f}/s, "
                f"{res.failed} failed), {res.messages} messages ({res.answered} answered, "
                f"{res.escalated} escalated), drained {res.drain_s:.0f} s later, "
                f"{res.respawns} uWSGI respawns",
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
    cli(main, "bench/memory.py", sys.argv[1:])
