"""`ttc tune`: fit the compute-optimal router's table from a `ttc eval` run.

Difficulty bins come from the probe's signal, never from the answers: for each problem, the
first `probe_n` samples of its best-of-N run (what the router's probe would have drawn, same
seed) give the signal (`compute_optimal.probe_signal`); the bin edges are quantiles of the
signals over the problems. Then, per budget N of the run and per bin, the route is the
(strategy, budget <= N, selection) with the best strict accuracy (the selected candidate
states the right answer) on that bin's problems (ties: fewer mean tokens). A bin without
problems gets the best route over all problems at that budget.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph_ttc.errors import TTCError
from langgraph_ttc.strategies.compute_optimal import STRATEGY, RoutingTable, probe_signal
from langgraph_ttc.strategies.registry import strategy_info

PROBE_STRATEGY = "best_of_n"


class TuneError(TTCError, ValueError):
    """The results cannot fit a table (no best-of-N rows to probe with, no rows at all)."""


def probe_signals(rows: Iterable[Mapping[str, Any]], probe_n: int, has_prm: bool) -> dict:
    """Problem id -> probe signal, from each problem's largest best-of-N run."""
    runs: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if row["strategy"] != PROBE_STRATEGY or len(row.get("candidates") or []) < probe_n:
            continue
        if row["id"] not in runs or row["budget"] > runs[row["id"]]["budget"]:
            runs[row["id"]] = row
    return {pid: probe_signal(row["candidates"][:probe_n], has_prm) for pid, row in runs.items()}


def quantile_edges(signals: Sequence[float], bins: int) -> list[float]:
    """Up to bins - 1 ascending, distinct edges splitting the signals into equal-count bins."""
    ordered = sorted(signals)
    if not ordered or bins < 2:
        return []
    edges = {ordered[min(len(ordered) - 1, (k * len(ordered)) // bins)] for k in range(1, bins)}
    return sorted(e for e in edges if e > ordered[0])  # an edge at the minimum empties bin 0


def route_settings(row: Mapping[str, Any], mode: str) -> dict[str, Any]:
    info = strategy_info(row["strategy"])
    if "n" in info.fixed:
        return {}
    settings: dict[str, Any] = {"n": int(row["budget"]), "selection": mode}
    if "beam_width" in info.settings.model_fields:
        settings["beam_width"] = int(row.get("beam_width") or 1)
    return settings


Key = tuple[str, int, str]  # (strategy, budget, selection mode)


@dataclass
class Outcomes:
    """Per (strategy, budget, mode): right/wrong per difficulty bin, and tokens spent."""

    correct: dict[Key, dict[int, list[bool]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    tokens: dict[Key, list[int]] = field(default_factory=lambda: defaultdict(list))
    example_rows: dict[Key, Mapping[str, Any]] = field(default_factory=dict)

    def add(self, row: Mapping[str, Any], bin_index: int) -> None:
        # strict: the selected candidate states the right answer (what `ttc eval` reports
        # first); rows from before strict grading fall back to the lenient reading
        graded = row.get("strict_correct") or row.get("correct") or {}
        for mode, right in graded.items():
            key = (row["strategy"], int(row["budget"]), mode)
            self.correct[key][bin_index].append(bool(right))
            self.tokens[key].append(int(row.get("tokens") or 0))
            self.example_rows.setdefault(key, row)

    def accuracy(self, key: Key, bin_index: int | None) -> float:
        """In one bin, or over every problem (None); -1 without data."""
        by_bin = self.correct[key]
        values = (
            [v for vs in by_bin.values() for v in vs]
            if bin_index is None
            else by_bin.get(bin_index, [])
        )
        return sum(values) / len(values) if values else -1.0

    def mean_tokens(self, key: Key) -> float:
        return sum(self.tokens[key]) / max(1, len(self.tokens[key]))

    def best(self, options: Sequence[Key], bin_index: int) -> Key:
        """Best accuracy in the bin (every problem if no option has data there); ties go to
        fewer mean tokens, then by name (deterministic)."""
        where = bin_index if any(self.correct[k].get(bin_index) for k in options) else None
        return min(options, key=lambda k: (-self.accuracy(k, where), self.mean_tokens(k), k))


def fit_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    probe_n: int = 4,
    bins: int = 3,
    has_prm: bool = True,
    source: str = "",
) -> RoutingTable:
    signals = probe_signals(rows, probe_n, has_prm)
    if not signals:
        raise TuneError(
            f"no {PROBE_STRATEGY} rows with at least {probe_n} candidates: run `ttc eval` with "
            f"--strategy {PROBE_STRATEGY} and a budget >= {probe_n}"
        )
    edges = quantile_edges(list(signals.values()), bins)

    def bin_of(problem_id: str) -> int:
        return sum(signals[problem_id] >= edge for edge in edges)

    outcomes = Outcomes()
    for row in rows:
        if row["strategy"] != STRATEGY and row["id"] in signals:
            outcomes.add(row, bin_of(row["id"]))
    keys = list(outcomes.correct)
    budgets = sorted({b for (s, b, _) in keys if "n" not in strategy_info(s).fixed})
    if not budgets:
        raise TuneError("the results hold no budget to fit (only greedy or router rows)")
    routes: dict[int, list[dict[str, Any]]] = {}
    for budget in budgets:
        options = [key for key in keys if key[1] <= budget]
        chosen = [outcomes.best(options, b) for b in range(len(edges) + 1)]
        routes[budget] = [
            {"strategy": k[0], "settings": route_settings(outcomes.example_rows[k], k[2])}
            for k in chosen
        ]
    counts = [sum(1 for pid in signals if bin_of(pid) == b) for b in range(len(edges) + 1)]
    note = f"{len(signals)} problems, per bin {counts}" + (f"; {source}" if source else "")
    return RoutingTable(probe_n=probe_n, bins=edges, routes=routes, source=f"fitted: {note}")
