"""scaling.png: accuracy against budget N (log2 axis), one line per strategy and selection mode,
the greedy baseline as a horizontal line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langgraph_ttc.selection import SELECTIONS

MODE_STYLES = {"naive": ":", "weighted": "-", "majority": "--"}
MODE_MARKERS = {"naive": "s", "weighted": "o", "majority": "^"}


def plot_scaling(
    points: Sequence[Mapping[str, Any]], path: Path, title: str = "Accuracy vs. budget"
) -> Path:
    """Draw the scaling curves; raises ImportError when matplotlib is missing."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    strategies = [s for s in dict.fromkeys(p["strategy"] for p in points) if s != "greedy"]
    budgets = sorted({p["n"] for p in points})
    for index, strategy in enumerate(strategies):
        series = sorted((p for p in points if p["strategy"] == strategy), key=lambda p: p["n"])
        xs = [p["n"] for p in series]
        for mode in SELECTIONS:
            ax.plot(
                xs,
                [100 * p["accuracy"][mode] for p in series],
                linestyle=MODE_STYLES[mode],
                marker=MODE_MARKERS[mode],
                color=colors[index % len(colors)],
                label=f"{strategy} ({mode})",
            )
    for p in points:
        if p["strategy"] == "greedy":
            ax.axhline(
                100 * p["accuracy"]["naive"],
                color="black",
                linewidth=1.2,
                label=f"greedy ({100 * p['accuracy']['naive']:.1f}%)",
            )
    values = [100 * p["accuracy"][m] for p in points for m in SELECTIONS]
    ax.set_ylim(0, min(100, max([10.0, *values]) + 5))
    ax.set_xscale("log", base=2)
    if budgets:
        ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("budget N (samples / beams / chains)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
