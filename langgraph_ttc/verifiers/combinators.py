"""Verifier combinators: a weighted ensemble, and running (prefix) aggregation of step scores.

Aggregation reuses `langgraph_ttc.selection.aggregate`, the same function strategies use to rank
candidates, so "min" means the same thing everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from langgraph_ttc.selection import AGGREGATIONS, aggregate, validate_choice
from langgraph_ttc.types import PRM
from langgraph_ttc.verifiers.engine import PRMError, check_score


def running_aggregate(step_scores: Sequence[float], how: str) -> list[float]:
    """Score of step i = aggregate(scores of steps 0..i): e.g. "min" makes a step no better than
    any step before it."""
    return [aggregate(step_scores[: i + 1], how) for i in range(len(step_scores))]


class EnsemblePRM:
    """Weighted mean, step by step, of several verifiers' scores.

    >>> EnsemblePRM([(ArithmeticVerifier(), 1.0), (TokenProbPRM(...), 2.0)])

    Members run concurrently. With `running="min"` (any of last / min / prod / mean) each
    member's scores are first turned into running aggregates, which puts a cumulative verifier
    (arithmetic) and a per-step one on the same footing. A failing member fails the call (the
    strategies then retry candidates one by one); `skip_failed=True` instead averages the
    members that answered and fails only if none did.
    """

    name = "ensemble"

    def __init__(
        self,
        members: Sequence[PRM | tuple[PRM, float]],
        *,
        running: str | None = None,
        skip_failed: bool = False,
    ) -> None:
        pairs = [m if isinstance(m, tuple) else (m, 1.0) for m in members]
        if not pairs:
            raise ValueError("an ensemble needs at least one verifier")
        if any(w < 0 for _, w in pairs) or sum(w for _, w in pairs) <= 0:
            raise ValueError("ensemble weights must be >= 0 with a positive sum")
        if running is not None:
            validate_choice("aggregation", running, AGGREGATIONS)
        self.members = pairs
        self.running = running
        self.skip_failed = skip_failed

    async def score(self, problem: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        if not solutions:
            return []
        results = await asyncio.gather(
            *(prm.score(problem, solutions) for prm, _ in self.members),
            return_exceptions=True,
        )
        answered: list[tuple[list[list[float]], float]] = []
        for (prm, weight), result in zip(self.members, results, strict=True):
            if isinstance(result, BaseException):
                if not self.skip_failed or not isinstance(result, Exception):
                    raise result
                continue
            if len(result) != len(solutions) or any(
                len(row) != len(steps) for row, steps in zip(result, solutions, strict=True)
            ):
                raise PRMError(f"ensemble member {prm!r} returned scores of the wrong shape")
            answered.append((result, weight))
        total = sum(w for _, w in answered)
        if not answered or total <= 0:
            raise PRMError("no ensemble member with a positive weight returned scores")
        combined: list[list[float]] = []
        for j, steps in enumerate(solutions):
            row = [0.0] * len(steps)
            for scores, weight in answered:
                member = [check_score(s, f"ensemble candidate {j}") for s in scores[j]]
                if self.running:
                    member = running_aggregate(member, self.running)
                row = [acc + weight * s for acc, s in zip(row, member, strict=True)]
            combined.append([check_score(v / total, f"ensemble candidate {j}") for v in row])
        return combined
