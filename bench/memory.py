"""Runtime memory of the app: glibc malloc vs jemalloc, gc.freeze() before fork, worker recycling.

For each configuration in turn, on one private redis-server: uWSGI (the role's uwsgi.ini.j2 and
its process and thread counts) and WS task programs as the role runs them (``python -m
coinex_chatbot.worker``, one process each; the preload and freeze variants run Dramatiq's own
``--processes 1`` main process, which forks; the task program's numprocs; production's WS=4
by default) with the configuration's environment; wrk
(bench/wrk/mix.lua) sends exactly N requests, M of them POST .../messages; once
the workers have answered every message, psutil reads the memory of every process.
The task processes load the knowledge base's prebuilt indexes, as a deployed release's do: the
bench writes them first (``python -m coinex_chatbot.prebuilt``) and removes them at the end.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import common
import psutil
from common import BENCH, NO_RECYCLING, BenchError, Lab, Process

TARGET = 0.8  # total PSS of all the programs / the glibc run's (issue 13)
KINDS = ("uWSGI worker", "uWSGI master", "Dramatiq worker", "Dramatiq main")
TARGET_KINDS = ("uWSGI worker", "Dramatiq worker", "Dramatiq main")  # the summary's RSS ratios
UWSGI: dict[str, int] = {}  # the role's processes and threads (main() may override them)
OPTIONS = {"disable-logging": "true"}  # no request log: the memory of the app, not of logging
TUNED = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1"
PYMALLOC_OFF = ("PYTHONMALLOC", "malloc")  # jemalloc then serves the small objects too
PRELOAD = "no lazy-apps (uWSGI master imports the app); Dramatiq main imports the tasks and \
builds the knowledge base before its fork"
PRELOAD_UWSGI = "no lazy-apps (uWSGI master imports the app); Dramatiq as deployed"
LIBS = "lazy-apps; the uWSGI master imports the web libraries (not the app) and calls \
gc.freeze() before the fork (the role's `shared-import` of uwsgi_libs.py)"
NO_LIBS = "lazy-apps; no `shared-import` (each uWSGI worker imports its own libraries)"
COW = "gc.freeze() in the uWSGI master after the import, before the fork (bench/uwsgi_freeze.py)"
FREEZE = "gc.freeze() before the fork in the Dramatiq main (dramatiq only), after the app import \
in each uWSGI worker (lazy-apps: the master has no app)"
TWO_PROCESS = "task programs as deployed until 2026-11-30: `dramatiq coinex_chatbot.tasks \
--processes 1`, a Dramatiq main and one worker process each (the role now runs one process)"
FREEZE_PRELOADED = "gc.freeze() before the fork in the uWSGI master and the Dramatiq main"


def uwsgi_option(variable: str) -> str:
    """The uWSGI option a role variable sets: coinex_chatbot_uwsgi_max_requests, max-requests."""
    return variable.removeprefix("coinex_chatbot_uwsgi_").replace("_", "-")


@dataclass(frozen=True)
class Config:
    """One configuration of the allocator and of uWSGI, applied to all processes of a slot."""

    name: str
    jemalloc: bool = False  # LD_PRELOAD of the host's libjemalloc.so.2
    env: tuple[tuple[str, str], ...] = ()
    task_env: tuple[tuple[str, str], ...] = ()  # for the task programs only (uWSGI without it)
    preload: bool = False  # masters import the app before forking (uWSGI without lazy-apps)
    gc_freeze: bool = False  # gc.freeze() in the masters before the fork (see uwsgi_freeze.py)
    uwsgi_only: bool = False  # preload and gc_freeze apply to uWSGI alone (Dramatiq as deployed)
    # lazy-apps, the uWSGI master imports the libraries alone (the role's uwsgi_libs.py, as
    # deployed); without it the role's shared-import is left out of uwsgi.ini
    libs: bool = False
    # each task program as the role ran it until 2026-11-30: Dramatiq's command line, a main
    # process that forks one worker process (today: one process, python -m coinex_chatbot.worker)
    two_process_tasks: bool = False
    # role variables of uWSGI's recycling: none by default, () = the role's defaults
    recycling: tuple[tuple[str, object], ...] = tuple(NO_RECYCLING.items())
    # reload-on-rss this many MiB above the glibc run's worker RSS at 10 % of its load (rounded
    # up; the glibc run comes first), so that the growth seen after that triggers it
    rss_margin: int | None = None

    def describe(self, uwsgi_vars: dict[str, Any]) -> str:
        parts = ["LD_PRELOAD=libjemalloc.so.2" if self.jemalloc else "glibc malloc"]
        parts += [f"{k}={v}" for k, v in self.env]
        parts += [f"{k}={v} (task programs only)" for k, v in self.task_env]
        parts += [LIBS] * self.libs
        parts += [TWO_PROCESS] * self.two_process_tasks
        if self.uwsgi_only:
            parts += [PRELOAD_UWSGI if self.preload else NO_LIBS] + [COW] * self.gc_freeze
        else:
            parts += [PRELOAD if self.preload else NO_LIBS] * (not self.libs)
            parts += [FREEZE_PRELOADED if self.preload else FREEZE] * self.gc_freeze
        role = common.role_vars(**uwsgi_vars)
        on = ", ".join(f"{uwsgi_option(n)} = {role[n]}" for n in NO_RECYCLING if int(role[n]))
        if self.rss_margin is not None:
            margin = f"glibc worker RSS at 10 % of the load + {self.rss_margin} MiB"
            on = f"reload-on-rss = {margin}: `{on}`"
        elif on:
            on = f"`{on}`" + ("" if self.recycling else " (the role's defaults)")
        return "; ".join([*parts, on] if on else parts)


CONFIGS = {
    c.name: c
    for c in (
        Config("glibc"),
        Config("glibc-two-process-tasks", two_process_tasks=True),
        Config("jemalloc", jemalloc=True),
        Config("jemalloc-tuned", jemalloc=True, env=(("MALLOC_CONF", TUNED),)),
        Config("jemalloc-malloc", jemalloc=True, env=(PYMALLOC_OFF,)),
        Config("jemalloc-malloc-tuned", jemalloc=True, env=(PYMALLOC_OFF, ("MALLOC_CONF", TUNED))),
        # the role's default of 2026-11-30 evening: tuned jemalloc everywhere, and the task
        # programs without pymalloc (jemalloc returns what their boot frees)
        Config(
            "jemalloc-tuned-tasks-malloc",
            jemalloc=True,
            env=(("MALLOC_CONF", TUNED),),
            task_env=(PYMALLOC_OFF,),
        ),
        # the role's default since 2026-12-01: that, and the web libraries shared by the uWSGI
        # master (a release with other libraries re-executes the master instead of a chain reload)
        Config(
            "jemalloc-tuned-tasks-malloc-uwsgi-libs",
            jemalloc=True,
            env=(("MALLOC_CONF", TUNED),),
            task_env=(PYMALLOC_OFF,),
            libs=True,
        ),
        Config("glibc-uwsgi-libs", libs=True),
        Config("glibc-uwsgi-cow", preload=True, gc_freeze=True, uwsgi_only=True),
        Config(
            "jemalloc-tuned-uwsgi-cow",
            jemalloc=True,
            env=(("MALLOC_CONF", TUNED),),
            preload=True,
            gc_freeze=True,
            uwsgi_only=True,
        ),
        Config("glibc-arena2", env=(("MALLOC_ARENA_MAX", "2"),)),
        Config("glibc-freeze", gc_freeze=True),
        Config("glibc-preload", preload=True),
        Config("glibc-preload-freeze", preload=True, gc_freeze=True),
        Config("glibc-recycle-role", recycling=()),
        Config(
            "glibc-max-requests-1000",
            recycling=(*NO_RECYCLING.items(), ("coinex_chatbot_uwsgi_max_requests", 1000)),
        ),
        Config("glibc-reload-on-rss-tight", rss_margin=0),
    )
}
# issue 13's comparison: the allocators and their tuning, and copy-on-write sharing in uWSGI
DEFAULT = "glibc,glibc-two-process-tasks,jemalloc,jemalloc-malloc,jemalloc-tuned,\
jemalloc-malloc-tuned,jemalloc-tuned-tasks-malloc,jemalloc-tuned-tasks-malloc-uwsgi-libs,\
glibc-uwsgi-libs,glibc-uwsgi-cow"


@dataclass
class Slot:
    """One configuration's run and what it measured (memory in KiB)."""

    config: Config
    uwsgi_vars: dict[str, Any] = field(default_factory=dict)  # rss_margin resolved
    mems: list[SimpleNamespace] = field(default_factory=list)  # read_mem of every process
    requests: int = 0  # responses to the N requests
    accepted: int = 0  # 202s
    non_2xx: int = 0
    lost: int = 0  # requests without any response (socket error, timeout)
    loadavg: str = ""  # 1-minute load average when the configuration started
    messages: int = 0
    answered: int = 0
    escalated: int = 0
    respawns: int = 0
    load_s: float = 0.0
    drain_s: float = 0.0
    uwsgi_cpu_s: float = 0.0  # uWSGI CPU during the load, recycled workers included
    samples: list[tuple[float, str, int]] = field(default_factory=list)  # (s, kind, RSS KiB)

    def of(self, kind: str) -> list[SimpleNamespace]:
        return [m for m in self.mems if m.kind == kind]

    def median(self, kind: str, attr: str = "rss") -> float:
        """NaN when the configuration has no process of this kind (a task program run as one
        process has no "Dramatiq main")."""
        values = [getattr(m, attr) for m in self.of(kind)]
        return statistics.median(values) if values else math.nan

    def pss(self, prefix: str) -> int:
        return sum(m.pss for m in self.mems if m.kind.startswith(prefix))

    def rss_at(self, kind: str, fraction: float) -> float:
        """Median RSS of the processes of a kind in the first sample after this much load."""
        times = [t for t, k, _ in self.samples if k == kind and t >= fraction * self.load_s]
        at = [r for t, k, r in self.samples if k == kind and times and t == min(times)]
        return statistics.median(at) if at else math.nan

    failed = property(lambda self: self.non_2xx + self.lost)
    rps = property(lambda self: self.requests / self.load_s if self.load_s else 0.0)
    cpu_us = property(lambda self: self.uwsgi_cpu_s / max(self.requests, 1) * 1e6)


def find_jemalloc() -> str:
    """The host's libjemalloc.so.2, found the way the role finds it (ldconfig)."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    for path in re.findall(r"^\s*libjemalloc\.so\.2 .*=> (\S+)$", out, re.MULTILINE):
        if Path(path).exists():
            return str(Path(path).resolve())
    raise BenchError("libjemalloc.so.2 not found (apt-get install libjemalloc2)")


def read_mem(pid: int, kind: str) -> SimpleNamespace:
    """RSS, PSS, USS, anonymous memory and the peak RSS (VmHWM, not in psutil) of a process."""
    proc = psutil.Process(pid)
    full, maps = proc.memory_full_info(), proc.memory_maps()
    hwm = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return SimpleNamespace(
        pid=pid,
        kind=kind,
        rss=full.rss // 1024,
        hwm=int(hwm.group(1)) if hwm else 0,
        pss=full.pss // 1024,
        uss=full.uss // 1024,
        anon=sum(m.anonymous for m in maps) // 1024,
        jemalloc_mapped=any("libjemalloc" in m.path for m in maps),
    )


def workers_of(procs: list[Process]) -> Iterator[tuple[Process, str | None, str, list]]:
    """Each program's process, its kind, its workers' kind and its workers: the children of a
    uWSGI master or of a Dramatiq main; a task program without children is one process
    (``python -m coinex_chatbot.worker``): its kind is None, and it is its own worker."""
    kinds = [("uWSGI master", "uWSGI worker")] + [("Dramatiq main", "Dramatiq worker")] * (
        len(procs) - 1
    )
    for proc, (main, worker) in zip(procs, kinds, strict=True):
        top = psutil.Process(proc.proc.pid)
        kids = top.children()
        if main == "Dramatiq main" and not kids:
            yield proc, None, worker, [top]
        else:
            yield proc, main, worker, kids


def sample(slot: Slot, procs: list[Process], interval: float, halt: threading.Event) -> None:
    """Reads the workers' RSS every ``interval`` seconds while the load runs."""
    started = time.monotonic()
    while not halt.wait(interval):
        with contextlib.suppress(psutil.Error):  # a worker being recycled
            for _, _, kind, kids in workers_of(procs):
                now = time.monotonic() - started
                slot.samples += [(now, kind, kid.memory_info().rss // 1024) for kid in kids]


def run_wrk(port: int, slot_dir: Path, ids: list[str], args: Any) -> list[int]:
    """bench/wrk/mix.lua: exactly the requests of a slot. Its counts: responses, accepted
    messages, non-2xx responses and POSTs sent."""
    counts, data = slot_dir / "wrk-counts.txt", common.lua_data(slot_dir / "data.lua", ids)
    argv = [common.WRK, "-t", "1", "-c", str(args.connections), "-d", f"{args.max_seconds}s"]
    argv += ["--timeout", "10s", "-s", str(BENCH / "wrk" / "mix.lua"), f"http://127.0.0.1:{port}/"]
    argv += ["--", str(data), str(args.requests), str(args.messages), str(20 * args.connections)]
    out = subprocess.run([*argv, str(counts)], capture_output=True, text=True, check=False)
    if out.returncode != 0 or not counts.exists():
        raise BenchError(f"wrk ended ({out.returncode}) before the counts were reached: {out}")
    return [int(x) for x in counts.read_text().split()]


def run_slot(slot: Slot, args: Any, lab: Lab, jemalloc: str) -> None:
    cfg, slot_dir, port = slot.config, lab.workdir / slot.config.name, common.free_port()
    env = common.app_env(lab.env["REDIS_URL"], slot_dir / "prom") | dict(cfg.env)
    env["LD_PRELOAD"] = jemalloc if cfg.jemalloc else ""
    ids = common.create_conversations(lab.client, args.conversations)
    options = OPTIONS | ({"lazy-apps": None} if cfg.preload else {})
    if cfg.gc_freeze:
        options |= {"module": "uwsgi_freeze:application", "pythonpath": str(BENCH)}
    if not cfg.libs:
        options |= {"shared-import": None}
    ini = common.uwsgi_ini(slot_dir, port, options, **UWSGI, **slot.uwsgi_vars)
    tasks = not cfg.uwsgi_only  # the Dramatiq mains get the preload and freeze too
    flags = ["--bench-preload"] * (cfg.preload and tasks) + ["--bench-freeze"] * (
        cfg.gc_freeze and tasks
    )
    script = [str(common.VENV_BIN / "python"), str(BENCH / "dramatiq_main.py"), *flags]
    # dramatiq itself, or through dramatiq_main.py for its flags; none: one process per program
    head = script if flags else [str(common.VENV_BIN / "dramatiq")] if cfg.two_process_tasks else []
    threads = common.role_vars()["coinex_chatbot_task_threads"]
    slot.loadavg = common.loadavg().split()[0]  # the 1-minute load average
    procs: list[Process] = []
    try:
        procs.append(common.start_uwsgi(slot_dir, env, ini, port))
        for i in range(args.ws):
            task_env = env | dict(cfg.task_env)
            procs.append(common.start_worker(task_env, slot_dir, f"dramatiq-{i}", threads, head))
        cpu_before, halt = common.cpu_seconds(procs[0].proc.pid), threading.Event()
        sampler = threading.Thread(target=sample, args=(slot, procs, args.sample_interval, halt))
        started = time.monotonic()
        sampler.start()
        try:
            slot.requests, slot.accepted, slot.non_2xx, posted = run_wrk(port, slot_dir, ids, args)
        finally:
            halt.set()
            sampler.join()
        slot.load_s, slot.lost = time.monotonic() - started, args.requests - slot.requests
        if posted != args.messages:
            raise BenchError(f"{cfg.name}: the wrk script sent {posted} POSTs, not {args.messages}")
        slot.uwsgi_cpu_s = common.cpu_seconds(procs[0].proc.pid) - cpu_before

        def drained() -> bool:
            for proc in procs:
                proc.check()
            return common.broker_backlog(lab.client) == (0, 0)

        common.wait_for(drained, args.max_seconds, "every message answered", interval=0.5)
        slot.drain_s = time.monotonic() - started - slot.load_s
        time.sleep(args.settle)
        for proc, main, worker, kids in workers_of(procs):
            proc.check()
            if main is None:  # python -m coinex_chatbot.worker
                slot.mems.append(read_mem(proc.proc.pid, worker))
                continue
            if len(kids) != (want := uwsgi_processes() if main == "uWSGI master" else 1):
                raise BenchError(f"{proc.name} has {len(kids)} children, not {want}")
            slot.mems += [read_mem(proc.proc.pid, main), *(read_mem(k.pid, worker) for k in kids)]
    finally:
        for proc in procs:
            proc.stop(signal.SIGINT if proc is procs[0] else signal.SIGTERM)
    pipe = lab.client.pipeline(transaction=False)
    for cid in ids:
        pipe.lrange(f"chatbot:conv:{cid}:messages", 0, -1)
    mids = [m for conversation in pipe.execute() for m in conversation]
    pipe = lab.client.pipeline(transaction=False)
    for mid in mids:
        pipe.hget(f"chatbot:msg:{mid}", "status")
    statuses = pipe.execute()
    slot.messages, slot.answered = len(mids), statuses.count("answered")
    slot.escalated = statuses.count("escalated")
    slot.respawns = procs[0].output().count("Respawned uWSGI worker")
    problems = [f"{slot.non_2xx} non-2xx and {slot.lost} lost responses"] * (
        slot.failed > args.requests // 100
    )
    if not slot.accepted <= slot.messages <= args.messages or (
        slot.failed == 0 and slot.messages != args.messages
    ):
        problems.append(
            f"{slot.accepted} accepted (202), {slot.messages} stored, {args.messages} sent"
        )
    if slot.answered + slot.escalated != slot.messages:
        problems.append(f"{slot.messages - slot.answered - slot.escalated} messages not completed")
    problems += [
        f"{m.kind} {m.pid} has libjemalloc mapped={m.jemalloc_mapped}"
        for m in slot.mems
        if m.jemalloc_mapped != cfg.jemalloc
    ]
    if problems:  # recycling may fail a few requests, more than 1 % means something is broken
        raise BenchError(f"{cfg.name}: " + "; ".join(problems))


def uwsgi_processes() -> int:
    return int(common.role_vars(**UWSGI)["coinex_chatbot_uwsgi_processes"])


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def section(slots: list[Slot], args: Any, jemalloc: str, host: dict, started: float) -> str:
    base, runs, summary, memory, growth, target = slots[0], [], [], [], [], []  # glibc first
    for s in slots:
        ratio = {k: s.median(k) / base.median(k) for k in KINDS}
        name = {"config": s.config.name}
        runs.append(name | {
            "settings": s.config.describe(s.uwsgi_vars),
            "requests answered": f"{s.requests:,}",
            "failed (non-2xx + no response)": f"{s.failed} ({s.non_2xx} + {s.lost})",
            "messages (answered + escalated)": f"{s.messages:,} ({s.answered:,} + {s.escalated:,})",
            "load s": f"{s.load_s:.0f}",
            "req/s": f"{s.rps:.0f}",
            "drain s": f"{s.drain_s:.0f}",
            "uWSGI respawns": s.respawns,
            "uWSGI CPU µs per request": f"{s.cpu_us:.0f}",
            "load avg at start": s.loadavg,
        })  # fmt: skip
        summary.append(name | {f"{k} RSS": times(ratio[k]) for k in TARGET_KINDS} | {
            f"uWSGI PSS total (master + {uwsgi_processes()} workers)": pss(s, base, "uWSGI"),
            f"Dramatiq PSS total ({args.ws} programs)": pss(s, base, "Dramatiq"),
            "all programs PSS total": pss(s, base, ""),
            "req/s": f"{s.rps / base.rps:.2f}x",
            "uWSGI CPU per request": f"{s.cpu_us / base.cpu_us:.2f}x",
            "failed requests": s.failed,
        })  # fmt: skip
        for kind, ms in ((k, s.of(k)) for k in KINDS if s.of(k)):
            memory.append(name | {
                "process kind": kind,
                "n": len(ms),
                "RSS median": mib(s.median(kind)),
                "RSS max": mib(max(m.rss for m in ms)),
                "peak (VmHWM) max": mib(max(m.hwm for m in ms)),
                "PSS median": mib(s.median(kind, "pss")),
                "USS median": mib(s.median(kind, "uss")),
                "anon median": mib(s.median(kind, "anon")),
                "RSS ratio vs glibc": times(ratio[kind]),
                "libjemalloc mapped": "yes" if all(m.jemalloc_mapped for m in ms) else "no",
            })  # fmt: skip
        for kind in ("uWSGI worker", "Dramatiq worker"):
            top = max((r for _, k, r in s.samples if k == kind), default=0)
            growth.append(name | {
                "process kind": kind,
                "RSS at 10 % of the load": mib(s.rss_at(kind, 0.1)),
                "at 50 %": mib(s.rss_at(kind, 0.5)),
                "after the load": mib(s.median(kind)),
                "max sampled during the load": mib(top),
            })  # fmt: skip
        if s is not base:
            total = s.pss("") / base.pss("")
            met = "met" if total <= TARGET else "not met"
            reload = (
                "no chain reload (preloaded master)"
                if s.config.preload
                else "chain reload; a master re-exec after a release with other libraries"
                if s.config.libs
                else "chain reload"
            )
            target.append(
                f"- {s.config.name}: {mib(s.pss(''))} MiB against {mib(base.pss(''))} MiB = "
                f"**{total:.2f}x**: **{met}** ({reload})"
            )
    tables = [(runs, "llrrrrrrrrr"), (summary, "lrrrrrrrrr"), (memory, "llrrrrrrrrl")]
    return common.section(
        "memory",
        args.argv,
        host,
        started,
        args=args,
        jemalloc=jemalloc,
        uwsgi=common.options_text(OPTIONS, UWSGI),
        uwsgi_processes=uwsgi_processes(),
        threads=common.role_vars()["coinex_chatbot_task_threads"],
        tables=[common.table(*t) for t in [*tables, (growth, "llrrrr")]],
        target=target,
    )


def times(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.2f}x"


def pss(s: Slot, base: Slot, prefix: str) -> str:
    return f"{mib(s.pss(prefix))} MiB = {s.pss(prefix) / base.pss(prefix):.2f}x"


def stopped(signum: int, frame: object) -> None:
    raise BenchError(f"stopped by signal {signum}")  # the finally blocks stop every process


@contextlib.contextmanager
def prebuilt_indexes() -> Iterator[None]:
    """The knowledge base's prebuilt indexes in the source tree, as the role writes them into
    a release (app/src/coinex_chatbot/prebuilt.py), for the duration of the runs."""
    python = str(common.VENV_BIN / "python")
    out = subprocess.run(
        [python, "-m", "coinex_chatbot.prebuilt"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    path = Path(out.stdout.split()[-1])
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    p = common.parser(
        "memory", __doc__, ("conversations", "messages"), conversations=4000, messages=20_000
    )
    p.add_argument("--requests", type=int, default=100_000, help="requests per configuration")
    p.add_argument(
        "--configs", default=DEFAULT, help=f"glibc first, then any of {','.join(CONFIGS)}"
    )
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--ws", type=int, default=4, help="task programs (numprocs), WS")
    p.add_argument("--uwsgi-processes", type=int, help="uWSGI workers (default: the role's)")
    p.add_argument("--sample-interval", type=float, default=2.0, help="RSS sampling, seconds")
    p.add_argument("--settle", type=float, default=3.0, help="idle seconds before reading")
    p.add_argument("--max-seconds", type=int, default=900, help="bound of each load phase")
    args = p.parse_args(argv)
    args.argv, names = argv, args.configs.split(",")
    if args.uwsgi_processes:
        UWSGI["coinex_chatbot_uwsgi_processes"] = args.uwsgi_processes
    if not set(names) <= CONFIGS.keys() or names[0] != "glibc" or args.messages > args.requests:
        p.error("--configs: glibc (the baseline) first; 0 < --messages <= --requests")
    signal.signal(signal.SIGTERM, stopped)
    slots, jemalloc = [Slot(CONFIGS[n]) for n in names], find_jemalloc()
    host, started = common.machine(), time.monotonic()
    with common.lab("bench-memory-") as lab, prebuilt_indexes():
        for slot in slots:
            slot.uwsgi_vars = dict(slot.config.recycling)
            if slot.config.rss_margin is not None:  # glibc ran first
                early = slots[0].rss_at("uWSGI worker", 0.1)
                early = slots[0].median("uWSGI worker") if math.isnan(early) else early
                limit = math.ceil(early / 1024) + slot.config.rss_margin
                slot.uwsgi_vars["coinex_chatbot_uwsgi_reload_on_rss"] = limit
            print(f"{slot.config.name}: {slot.config.describe(slot.uwsgi_vars)}")
            run_slot(slot, args, lab, jemalloc)
            print(
                f"  {slot.requests} requests in {slot.load_s:.0f} s ({slot.rps:.0f}/s, "
                f"{slot.failed} failed), {slot.messages} messages ({slot.answered} answered, "
                f"{slot.escalated} escalated), drained {slot.drain_s:.0f} s later, "
                f"{slot.respawns} uWSGI respawns; RSS MiB "
                + ", ".join(f"{k} {mib(slot.median(k))}" for k in KINDS)
            )
    return common.publish(args, section(slots, args, jemalloc, host, started), "memory")


if __name__ == "__main__":
    common.cli(main, "bench/memory.py")
