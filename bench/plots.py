"""PNG plots of the scaling sweeps (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from web import Cell
from workers import WorkerCell


def _save(fig: Figure, ax: Axes, path: Path, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def rps_vs_connections(cells: dict[int, Cell], path: Path, title: str) -> None:
    """uWSGI req/s (left axis) and p99 latency (right axis) against wrk connections."""
    levels = sorted(cells)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(levels, [cells[c].rps for c in levels], "o-", color="tab:blue", label="req/s")
    for c in levels:
        ax.plot([c] * len(cells[c].runs), [r.rps for r in cells[c].runs], ".", color="tab:blue")
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_xlabel("wrk connections")
    ax.set_ylabel("requests/s (median, dots = runs)", color="tab:blue")
    ax.set_ylim(bottom=0)
    p99 = ax.twinx()
    p99.plot(levels, [cells[c].p99 for c in levels], "s--", color="tab:red", label="p99")
    p99.set_ylabel("p99 latency, ms", color="tab:red")
    p99.set_ylim(bottom=0)
    handles = ax.get_lines()[:1] + p99.get_lines()
    ax.legend(handles, ["req/s", "p99 ms"], loc="upper left", fontsize=8)
    _save(fig, ax, path, title)


def messages_vs_processes(cells: dict[int, WorkerCell], path: Path, title: str) -> None:
    """Dramatiq answered messages/s against worker processes, with linear scaling for scale."""
    counts = sorted(cells)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    rates = [cells[n].rate for n in counts]
    ax.plot(counts, rates, "o-", color="tab:green", label="answered/s (median)")
    for n in counts:
        ax.plot([n] * len(cells[n].runs), [r.rate for r in cells[n].runs], ".", color="tab:green")
    if counts and counts[0] == 1:
        ax.plot(counts, [rates[0] * n for n in counts], ":", color="grey", label="linear (WS x 1)")
    ax.set_xticks(counts)
    ax.set_xlabel("Dramatiq worker processes (WS)")
    ax.set_ylabel("answered messages/s")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, ax, path, title)
