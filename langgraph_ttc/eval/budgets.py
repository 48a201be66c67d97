"""Which strategy runs a budget curve needs, and how a smaller budget is read from a larger run.

Best-of-N samples are independent, so one run at the largest N gives every smaller budget k
(its first k samples). DVTS subtrees are independent too: budget k is the first
k / beam_width whole subtrees of one run. Beam search and self-refinement depend on N as a
whole (the pool size; the number of chains), so each budget is its own run; so do particle
filtering (particles interact through resampling), adaptive majority (N caps its rounds) and
the compute-optimal router (budget N is N x max_tokens generated tokens).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from langgraph_ttc.strategies.registry import strategy_info
from langgraph_ttc.types import Candidate


@dataclass(frozen=True)
class RunSpec:
    """One graph configuration to run on every problem, and the budgets read from it."""

    strategy: str
    n: int
    beam_width: int = 1
    budgets: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.strategy}/n={self.n}/m={self.beam_width}"


def parse_budgets(text: str) -> list[int]:
    """ "1,2,4,8" -> [1, 2, 4, 8] (sorted, unique); a clear ValueError otherwise."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--n takes comma-separated positive integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise ValueError(f"--n takes comma-separated positive integers, got {text!r}")
    return values


def width_for(budget: int, beam_width: int) -> int:
    """The largest expansion width <= beam_width that divides the budget (1 for N = 1)."""
    return max(d for d in range(1, min(beam_width, budget) + 1) if budget % d == 0)


def plan_runs(strategies: Iterable[str], budgets: Sequence[int], beam_width: int) -> list[RunSpec]:
    """The runs that produce every (strategy, budget) point; greedy has the single budget 1."""
    budgets = sorted(set(budgets))
    if not budgets or budgets[0] < 1:
        raise ValueError(f"budgets must be positive integers, got {budgets}")
    if not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam width must be a positive integer, got {beam_width!r}")
    specs: list[RunSpec] = []
    for strategy in dict.fromkeys(strategies):
        info = strategy_info(strategy)
        if "n" in info.fixed:  # greedy: one sample, whatever the budget
            specs.append(RunSpec(strategy, 1, 1, (1,)))
        elif info.budgets == "prefix":
            specs.append(RunSpec(strategy, budgets[-1], 1, tuple(budgets)))
        elif info.budgets == "subtrees":
            whole = [k for k in budgets if k % beam_width == 0]
            if whole:
                specs.append(RunSpec(strategy, whole[-1], beam_width, tuple(whole)))
            rest = [k for k in budgets if k % beam_width != 0]
            specs += [RunSpec(strategy, k, width_for(k, beam_width), (k,)) for k in rest]
        else:
            widths = info.steps and "beam_width" in info.settings.model_fields
            width = (lambda k: width_for(k, beam_width)) if widths else (lambda k: 1)
            specs += [RunSpec(strategy, k, width(k), (k,)) for k in budgets]
    return specs


def subsample(candidates: Sequence[Candidate], spec: RunSpec, budget: int) -> list[Candidate]:
    """The candidates a run at `spec.n` would have had at the smaller `budget`."""
    if budget == spec.n:
        return list(candidates)
    if budget > spec.n or budget not in spec.budgets:
        raise ValueError(f"budget {budget} cannot be read from run {spec.key}")
    kind = strategy_info(spec.strategy).budgets
    if kind == "prefix":
        return list(candidates[:budget])
    if kind == "subtrees":
        groups = _groups(candidates, spec.beam_width)
        keep = set(list(dict.fromkeys(groups))[: budget // spec.beam_width])
        return [c for c, g in zip(candidates, groups, strict=True) if g in keep]
    raise ValueError(f"{spec.strategy} budgets are separate runs, not subsamples")


def _groups(candidates: Sequence[Candidate], beam_width: int) -> list[int]:
    """DVTS subtree of each candidate ("group"; older outputs: consecutive blocks of width)."""
    return [c.get("group", i // beam_width) for i, c in enumerate(candidates)]


def budget_tokens(
    spec: RunSpec, budget: int, subset: Sequence[Candidate], run_tokens: int
) -> tuple[int, bool]:
    """Generated tokens at `budget`, and whether the number is exact.

    Best-of-N samples own their tokens, so the subset's sum is exact. DVTS candidates share
    their subtree's prefix, so a subsample is estimated as the run's share of subtrees.
    """
    if budget == spec.n:
        return run_tokens, True
    if strategy_info(spec.strategy).budgets == "prefix":
        return sum(c["num_tokens"] for c in subset), True
    return round(run_tokens * budget / spec.n), False
