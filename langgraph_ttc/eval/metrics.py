"""Grading of one budget's candidates and the summary arithmetic (no I/O).

A prediction is right when `answers.grade` finds it equal to the reference (math-verify under a
per-item timeout); a timeout counts as wrong and is counted. Accuracy per selection mode reads
the answer `selection.select_all` picks; pass@N is "any candidate right".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph_ttc.answers import GradingTimeout, answers_equivalent, grade, normalize_answer
from langgraph_ttc.selection import SELECTIONS, Equivalence, select_all
from langgraph_ttc.strategies.registry import STRATEGY_NAMES as STRATEGIES
from langgraph_ttc.types import Candidate

Grader = Callable[[str | None, str, float], bool]  # may raise GradingTimeout


@dataclass
class BudgetGrade:
    predictions: dict[str, str | None]  # selection mode -> chosen answer
    correct: dict[str, bool]  # selection mode -> right or not
    candidate_correct: list[bool]
    grading_timeouts: int  # distinct answers whose grading timed out

    @property
    def passed(self) -> bool:
        return any(self.candidate_correct)


def grade_candidates(
    candidates: Sequence[Candidate],
    reference: str,
    *,
    timeout: float = 5.0,
    grader: Grader = grade,
    equivalent: Equivalence = answers_equivalent,
) -> BudgetGrade:
    """Grade every selection mode and every candidate; each distinct answer is graded once."""
    verdicts: dict[str, bool] = {}
    timeouts = 0

    def is_correct(answer: str | None) -> bool:
        nonlocal timeouts
        if answer is None:
            return False
        key = normalize_answer(answer)
        if key not in verdicts:
            try:
                verdicts[key] = bool(grader(answer, reference, timeout))
            except GradingTimeout:
                verdicts[key] = False
                timeouts += 1
        return verdicts[key]

    candidate_correct = [is_correct(c["answer"]) for c in candidates]
    predictions = select_all(candidates, equivalent)
    correct = {mode: is_correct(answer) for mode, answer in predictions.items()}
    return BudgetGrade(predictions, correct, candidate_correct, timeouts)


@dataclass
class BudgetSummary:
    """Totals for one (strategy, budget) point over the problems evaluated."""

    strategy: str
    budget: int
    run_n: int
    beam_width: int
    problems: int = 0
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SELECTIONS, 0))
    passed: int = 0
    tokens: int = 0
    tokens_exact: bool = True
    wall_time_s: float = 0.0
    grading_timeouts: int = 0
    errors: int = 0

    def add(self, row: Mapping[str, Any]) -> None:
        self.problems += 1
        for mode in SELECTIONS:
            self.correct[mode] += bool(row["correct"][mode])
        self.passed += bool(row["pass"])
        self.tokens += int(row["tokens"])
        self.tokens_exact = self.tokens_exact and bool(row.get("tokens_exact", True))
        self.wall_time_s += float(row["wall_time_s"])
        self.grading_timeouts += int(row["grading_timeouts"])
        self.errors += row.get("error") is not None

    def as_dict(self) -> dict[str, Any]:
        count = max(self.problems, 1)
        return {
            "strategy": self.strategy,
            "n": self.budget,
            "run_n": self.run_n,
            "beam_width": self.beam_width,
            "problems": self.problems,
            "accuracy": {mode: self.correct[mode] / count for mode in SELECTIONS},
            "correct": dict(self.correct),
            "pass_at_n": self.passed / count,
            "mean_tokens": self.tokens / count,
            "tokens_exact": self.tokens_exact,
            "mean_wall_time_s": self.wall_time_s / count,
            "grading_timeouts": self.grading_timeouts,
            "errors": self.errors,
        }


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (strategy, budget), in strategy then budget order."""
    points: dict[tuple[str, int], BudgetSummary] = {}
    for row in rows:
        key = (row["strategy"], int(row["budget"]))
        if key not in points:
            points[key] = BudgetSummary(
                row["strategy"], key[1], int(row["run_n"]), int(row.get("beam_width", 1))
            )
        points[key].add(row)

    def order(key: tuple[str, int]) -> tuple[int, str, int]:
        strategy, budget = key
        rank = STRATEGIES.index(strategy) if strategy in STRATEGIES else len(STRATEGIES)
        return rank, strategy, budget

    return [points[key].as_dict() for key in sorted(points, key=order)]
