"""Markdown for docs/benchmarks.md: this benchmark owns only the text between its markers."""

from __future__ import annotations

import os
from collections.abc import Sequence

from web import ENDPOINTS, Cell, WebSettings
from workers import WorkerCell, WorkerSettings

START = "<!-- bench:app:start -->"
END = "<!-- bench:app:end -->"
POST_TARGET, P99_TARGET_MS, WORKER_TARGET = 1.3, 25.0, 1.8
NOISY_CORES = 0.5  # background load above which a verdict is only indicative


def each_run(runs: Sequence[object], attr: str, fmt: str = ".0f") -> str:
    """One figure of every run, comma-separated: the cells that show the spread of the runs."""
    return ", ".join(format(getattr(run, attr), fmt) for run in runs)


def _verdict(ok: bool, background: float) -> str:
    verdict = "**met**" if ok else "**not met**"
    if background > NOISY_CORES:
        verdict += (
            f" (indicative only: other jobs used up to {background:.2f} of the "
            f"{os.cpu_count()} cores during these runs)"
        )
    return verdict


def web_section(ws: WebSettings, cells: dict[tuple[str, str], Cell]) -> list[str]:
    lines = [
        f"### Web: {ws.connections} connections, {ws.processes} processes per server",
        "",
        f"Median of {ws.repeats} measured wrk runs of {ws.duration} s each, after a "
        f"{ws.warmup} s warm-up per server and endpoint; the two servers run one after the other "
        "within each round (order alternating) so that background load hits both alike.",
        "",
        "| endpoint | server | req/s | p50 ms | p99 ms | server CPU µs/req | errors "
        "| req/s of each run | others' CPU (cores) |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for endpoint in ENDPOINTS:
        for server in ("uWSGI", "gunicorn"):
            cell = cells[(server, endpoint)]
            runs = each_run(cell.runs, "rps")
            others = each_run(cell.runs, "others_cpu", ".2f")
            lines.append(
                f"| `{endpoint}` | {server} | {cell.rps:.0f} | {cell.p50:.2f} | {cell.p99:.2f} "
                f"| {cell.cpu_us:.0f} | {cell.errors} | {runs} | {others} |"
            )
    post, health = ENDPOINTS
    post_ratio = cells[("uWSGI", post)].rps / cells[("gunicorn", post)].rps
    health_ratio = cells[("uWSGI", health)].rps / cells[("gunicorn", health)].rps
    p99 = cells[("uWSGI", post)].p99
    noise = max(cells[(server, post)].others for server in ("uWSGI", "gunicorn"))
    lines += [
        "",
        f"- Enqueue endpoint, uWSGI / gunicorn req/s: **{post_ratio:.2f}x** "
        f"(target >= {POST_TARGET}x): {_verdict(post_ratio >= POST_TARGET, noise)}.",
        f"- Enqueue endpoint p99 under uWSGI: **{p99:.1f} ms** (target < {P99_TARGET_MS:.0f} ms): "
        f"{_verdict(p99 < P99_TARGET_MS, noise)}.",
        f"- `/healthz`, uWSGI / gunicorn req/s: {health_ratio:.2f}x (no target).",
        "- Server CPU per request, gunicorn / uWSGI (less disturbed by background load than "
        f"req/s): enqueue {cells[('gunicorn', post)].cpu_us / cells[('uWSGI', post)].cpu_us:.2f}x, "
        f"`/healthz` {cells[('gunicorn', health)].cpu_us / cells[('uWSGI', health)].cpu_us:.2f}x.",
        "",
        "Server CPU = user + system CPU time of all the server's processes divided by the "
        "requests served (median), a figure that background load disturbs far less than req/s. "
        "Others' CPU = busy CPU time of the machine during the run minus that of the server, Redis "
        "and wrk, per second of the run: load from jobs outside the benchmark (2 = both cores). "
        "Errors = non-2xx responses plus socket errors over all measured runs (a run with more "
        "than 1 % errors stops the benchmark). Every POST run is "
        "checked against Redis: the messages stored and the Dramatiq tasks queued match the 202s "
        "wrk counted. Redis is emptied and fresh conversations are created before every run; no "
        "worker consumes during the web runs.",
    ]
    return lines


def worker_section(wk: WorkerSettings, cells: dict[int, WorkerCell]) -> list[str]:
    lines = [
        "### Workers: answered messages per second",
        "",
        f"{wk.messages} messages preloaded (queued before any worker starts), median of "
        f"{wk.repeats} runs per setting; `--threads {wk.threads}` in every worker process.",
        "",
        "| worker processes | threads each | answered/s | wall s (incl. boot) "
        "| answered/s of each run | others' CPU (cores) |",
        "|---:|---:|---:|---:|---|---|",
    ]
    for n, cell in sorted(cells.items()):
        runs = each_run(cell.runs, "rate")
        others = each_run(cell.runs, "others_cpu", ".2f")
        lines.append(
            f"| {n} | {wk.threads} | {cell.rate:.0f} | {cell.wall:.1f} | {runs} | {others} |"
        )
    lines.append("")
    if 1 in cells and 2 in cells:
        ratio = cells[2].rate / cells[1].rate
        noise = max(r.others_cpu for cell in cells.values() for r in cell.runs)
        lines.append(
            f"- 2 processes / 1 process: **{ratio:.2f}x** (target >= {WORKER_TARGET}x): "
            f"{_verdict(ratio >= WORKER_TARGET, noise)}."
        )
        lines.append("")
    lines.append(
        f"CPU per message after boot: worker processes {cells[1].worker_cpu:.2f} ms, redis-server "
        f"{cells[1].redis_cpu:.2f} ms (1 process; medians)."
        if 1 in cells
        else ""
    )
    lines.append("")
    lines.append(
        "answered/s counts from the workers' own `answered_at` stamps between the 5th and the "
        "95th percentile (worker boot and the last stragglers excluded); every message is checked "
        "answered or escalated, with exactly one escalation ticket per escalated message. Others' "
        "CPU: as above, CPU used by jobs outside the benchmark during the run."
    )
    return lines


def section(
    *,
    command: str,
    machine: dict[str, str],
    versions: dict[str, str],
    settings_lines: list[str],
    web: list[str],
    workers: list[str],
    notes: str,
) -> str:
    lines = [
        START,
        "## App: web and workers",
        "",
        f"Written by `bench/run.py` on {machine['date']}. Command:",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram']} RAM, "
        f"{machine['os']}, kernel {machine['kernel']}, Python {machine['python']}; load average "
        f"{machine['load']} when the run started (a shared machine: other jobs may run).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "Settings:",
        "",
        *settings_lines,
        "",
        *web,
        "",
        *workers,
    ]
    if notes.strip():
        lines += ["", notes.strip()]
    lines += [END, ""]
    return "\n".join(lines)
