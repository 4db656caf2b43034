"""PNG plots of the scaling sweeps (matplotlib, no display needed): medians as a line, each
run as a dot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import Runs


def plot(cells: dict[int, Runs], attr: str, path: Path, title: str, **labels: str) -> None:
    """``attr`` of the runs against the points, req/s with p99 (right axis), messages/s with
    linear scaling from WS=1 for scale."""
    xs, color = sorted(cells), "tab:blue" if attr == "rps" else "tab:green"
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(xs, [cells[x].median(attr) for x in xs], "o-", color=color, label=labels["y"])
    for x in xs:
        ax.plot([x] * len(cells[x].runs), [getattr(r, attr) for r in cells[x].runs], ".", c=color)
    if attr == "rps":
        ax.set_xscale("log", base=2)
        p99 = ax.twinx()
        p99.plot(xs, [cells[x].median("p99_ms") for x in xs], "s--", color="tab:red", label="p99")
        p99.set(ylabel="p99 latency, ms", ylim=(0, None))
        ax.legend(ax.get_lines()[:1] + p99.get_lines(), ["req/s", "p99 ms"], fontsize=8)
    elif xs[0] == 1:
        rate = cells[1].median(attr)
        ax.plot(xs, [rate * n for n in xs], ":", color="grey", label="linear (WS x 1)")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set(xlabel=labels["x"], ylabel=labels["y"], ylim=(0, None))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
