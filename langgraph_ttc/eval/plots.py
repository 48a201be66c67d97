"""The evaluation plots, each with a strict and a lenient panel side by side:

- scaling.png: accuracy against budget N (log2 axis), one line per strategy and selection mode,
  pass@N dashed (strict pass@N is an oracle verifier's accuracy), greedy as a horizontal line;
- accuracy_tokens.png: the same accuracies against mean generated tokens per problem (log axis),
  greedy as a single point;
- load.png (one panel): the engine's sequences over the run against the load target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langgraph_ttc.selection import SCORE_SELECTIONS as SELECTIONS

MODE_STYLES = {"naive": ":", "weighted": "-", "majority": "-."}
MODE_MARKERS = {"naive": "s", "weighted": "o", "majority": "^"}
PASS_STYLE = "--"

# (panel title, accuracy key, pass@N key)
PANELS = (
    ("strict: stated answers (\\boxed{} / 'the answer is')", "strict_accuracy", "strict_pass_at_n"),
    ("lenient: + last-number fallback", "accuracy", "pass_at_n"),
)

Point = Mapping[str, Any]


def plot_scaling(points: Sequence[Point], path: Path, title: str = "Accuracy vs. budget") -> Path:
    """Accuracy against budget N; raises ImportError when matplotlib is missing."""
    return _plot(
        points,
        path,
        title,
        x_of=lambda p: float(p["n"]),
        xlabel="budget N (samples / beams / chains)",
        log_base=2,
        budget_ticks=True,
    )


def plot_accuracy_tokens(
    points: Sequence[Point], path: Path, title: str = "Accuracy vs. generated tokens"
) -> Path:
    """Accuracy against mean generated tokens per problem; raises ImportError without
    matplotlib."""
    return _plot(
        points,
        path,
        title,
        x_of=lambda p: max(float(p["mean_tokens"]), 1.0),
        xlabel="mean generated tokens per problem (log scale)",
        log_base=10,
        budget_ticks=False,
    )


def _plot(
    points: Sequence[Point],
    path: Path,
    title: str,
    *,
    x_of: Callable[[Point], float],
    xlabel: str,
    log_base: int,
    budget_ticks: bool,
) -> Path:
    # optional (the eval extra), slow to import
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    # optional (the eval extra), slow to import
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    strategies = [s for s in dict.fromkeys(p["strategy"] for p in points) if s != "greedy"]
    color_of = {s: colors[i % len(colors)] for i, s in enumerate(strategies)}
    greedy = [p for p in points if p["strategy"] == "greedy"]
    values = [10.0]
    for ax, (panel, accuracy_key, pass_key) in zip(axes, PANELS, strict=True):
        for strategy in strategies:
            series = sorted((p for p in points if p["strategy"] == strategy), key=x_of)
            xs = [x_of(p) for p in series]
            for mode in SELECTIONS:
                ys = [100 * p[accuracy_key][mode] for p in series]
                ax.plot(
                    xs,
                    ys,
                    linestyle=MODE_STYLES[mode],
                    marker=MODE_MARKERS[mode],
                    markersize=7 if mode == "majority" else 4,
                    markerfacecolor="none" if mode == "majority" else None,
                    color=color_of[strategy],
                )
                values += ys
            ys = [100 * p[pass_key] for p in series]
            ax.plot(xs, ys, linestyle=PASS_STYLE, linewidth=2, alpha=0.6, color=color_of[strategy])
            values += ys
        for p in greedy:
            y = 100 * p[accuracy_key]["naive"]
            values.append(y)
            if budget_ticks:
                # beneath the strategies' lines, which often lie on it
                ax.axhline(y, color="black", linewidth=1.0, alpha=0.6, zorder=1)
                where, coords = (0.01, y), ("axes fraction", "data")
            else:
                ax.plot([x_of(p)], [y], marker="*", markersize=12, color="black", linestyle="")
                where, coords = (x_of(p), y), ("data", "data")
            ax.annotate(
                f"greedy {y:.1f}%",
                where,
                xycoords=coords,
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
            )
        ax.set_xscale("log", base=log_base)
        if budget_ticks:
            budgets = sorted({p["n"] for p in points})
            ax.set_xticks(budgets, [str(b) for b in budgets])
            ax.minorticks_off()
        else:  # 10, 20, 50, 100, ... in plain numbers
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_title(panel, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].set_ylim(0, min(103, max(values) + 5))  # a line at 100% stays visible
    handles = [Line2D([], [], color=color_of[s], linewidth=3, label=s) for s in strategies]
    handles += [
        Line2D(
            [],
            [],
            color="gray",
            linestyle=MODE_STYLES[m],
            marker=MODE_MARKERS[m],
            markerfacecolor="none" if m == "majority" else None,
            label=m,
        )
        for m in SELECTIONS
    ]
    handles.append(
        Line2D(
            [],
            [],
            color="gray",
            linestyle=PASS_STYLE,
            linewidth=2,
            alpha=0.6,
            label="pass@N (strict: oracle verifier)",
        )
    )
    if greedy:
        handles.append(
            Line2D([], [], color="black", marker="" if budget_ticks else "*", label="greedy")
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.09, 1, 1))  # room for the legend below the panels
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=len(handles))
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_load(
    samples: Sequence[Any],
    target: int | None,
    path: Path,
    title: str = "Engine load during the run",
) -> Path:
    """The engine's running sequences (vLLM's own count) and the sequences the policy has in
    flight over the run, against the load target, with the stretch where problems still
    waited for admission shaded (`LoadSampler.samples`); raises ImportError without
    matplotlib."""
    # optional (the eval extra), slow to import
    import matplotlib

    matplotlib.use("Agg")
    # optional (the eval extra), slow to import
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    seconds = [s.seconds for s in samples]
    running = [(s.seconds, s.engine_running) for s in samples if s.engine_running is not None]
    if running:
        ax.plot(*zip(*running, strict=True), label="running in the engine (vLLM)", lw=1.5)
    in_flight = [(s.seconds, s.sequences) for s in samples if s.sequences is not None]
    if in_flight:
        ax.plot(*zip(*in_flight, strict=True), label="in flight (policy)", lw=1, alpha=0.7)
    waited = [s.seconds for s in samples if not s.queue_empty]
    if waited:
        ax.axvspan(min(waited), max(waited), color="grey", alpha=0.12, label="problems waiting")
    if target:
        ax.axhline(target, color="black", ls="--", lw=1, label=f"target {target}")
    ax.set_xlim(0, max(seconds, default=1.0))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("sequences")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
