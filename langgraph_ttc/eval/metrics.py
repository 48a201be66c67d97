"""Grading of one budget's candidates and the summary arithmetic (no I/O).

A prediction is right when `answers.grade` finds it equal to the reference (math-verify under a
per-item timeout); a timeout counts as wrong and is counted. Two readings of every candidate:

- lenient: the candidate's `answer` as the run read it (by default the last `\\boxed{}`, else
  "the answer is X", else the last number in the text);
- strict: only an answer the candidate states (`\\boxed{}` or "the answer is X",
  `answers.strict_answer`; a length-cut candidate only a boxed one).

Accuracy per selection mode: the run's selection (`selection.select`, on the lenient answers, as
in the strategies) picks a candidate; lenient accuracy grades its answer, strict accuracy grades
what that same candidate states. pass@N is "any candidate right" (strict: any candidate states
the right answer, what an oracle verifier would reach). The format rate is the share of
candidates that state an answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph_ttc.answers import (
    GradingTimeout,
    answers_equivalent,
    grade,
    normalize_answer,
    strict_answer,
)
from langgraph_ttc.candidates import with_answer
from langgraph_ttc.selection import SCORE_SELECTIONS as SELECTIONS
from langgraph_ttc.selection import Equivalence, select
from langgraph_ttc.strategies.registry import STRATEGY_NAMES as STRATEGIES
from langgraph_ttc.types import Candidate

Grader = Callable[[str | None, str, float], bool]  # may raise GradingTimeout


@dataclass
class BudgetGrade:
    predictions: dict[str, str | None]  # selection mode -> chosen answer (lenient)
    correct: dict[str, bool]  # selection mode -> right or not (lenient)
    candidate_correct: list[bool]
    grading_timeouts: int  # distinct answers whose grading timed out
    selected: dict[str, int | None] = field(default_factory=dict)  # mode -> candidate index
    stated_answers: list[str | None] = field(default_factory=list)  # per candidate
    candidate_strict: list[bool] = field(default_factory=list)
    strict_predictions: dict[str, str | None] = field(default_factory=dict)
    strict_correct: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return any(self.candidate_correct)

    @property
    def strict_passed(self) -> bool:
        return any(self.candidate_strict)

    @property
    def stated(self) -> int:
        return sum(answer is not None for answer in self.stated_answers)


def stated_answer(candidate: Mapping[str, Any]) -> str | None:
    """The answer a candidate states (strict reading of its text)."""
    text = candidate.get("text") or ""
    finish = candidate.get("finish_reason")
    return with_answer({"text": text, "finish_reason": finish}, strict_answer)["answer"]


def grade_candidates(
    candidates: Sequence[Candidate],
    reference: str,
    *,
    timeout: float = 5.0,
    grader: Grader = grade,
    equivalent: Equivalence = answers_equivalent,
) -> BudgetGrade:
    """Grade every selection mode and every candidate, lenient and strict; each distinct answer
    is graded once."""
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
    stated = [stated_answer(c) for c in candidates]
    candidate_strict = [is_correct(answer) for answer in stated]
    positions = {id(c): index for index, c in enumerate(candidates)}
    selected: dict[str, int | None] = {}
    for mode in SELECTIONS:
        chosen = select(candidates, mode, equivalent)
        selected[mode] = positions[id(chosen)] if chosen is not None else None
    predictions = {m: None if i is None else candidates[i]["answer"] for m, i in selected.items()}
    strict_predictions = {m: None if i is None else stated[i] for m, i in selected.items()}
    return BudgetGrade(
        predictions,
        {mode: is_correct(answer) for mode, answer in predictions.items()},
        candidate_correct,
        timeouts,
        selected,
        stated,
        candidate_strict,
        strict_predictions,
        {mode: is_correct(answer) for mode, answer in strict_predictions.items()},
    )


def complete_row(
    row: Mapping[str, Any], *, timeout: float = 5.0, grader: Grader = grade
) -> dict[str, Any]:
    """A results row with the strict fields; rows written before they existed get them
    computed from their candidates (the run's selection is re-computed the same way)."""
    if "strict_correct" in row:
        return dict(row)
    candidates = [
        {"score": 0.0, "answer": None, "text": "", "finish_reason": None, **c}
        for c in row.get("candidates") or []
    ]
    graded = grade_candidates(
        candidates, str(row.get("reference", "")), timeout=timeout, grader=grader
    )
    return {**row, **strict_fields(graded)}


def strict_fields(graded: BudgetGrade) -> dict[str, Any]:
    """The row fields of the strict reading."""
    return {
        "strict_predictions": graded.strict_predictions,
        "strict_correct": graded.strict_correct,
        "strict_pass": graded.strict_passed,
        "stated_candidates": graded.stated,
        "num_candidates": len(graded.stated_answers),
    }


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
    strict_correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SELECTIONS, 0))
    strict_passed: int = 0
    stated: int = 0  # candidates that state an answer
    candidates: int = 0
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
        for mode in SELECTIONS:
            self.strict_correct[mode] += bool(row["strict_correct"][mode])
        self.strict_passed += bool(row["strict_pass"])
        self.stated += int(row["stated_candidates"])
        self.candidates += int(row["num_candidates"])
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
            "strict_accuracy": {mode: self.strict_correct[mode] / count for mode in SELECTIONS},
            "strict_correct": dict(self.strict_correct),
            "strict_pass_at_n": self.strict_passed / count,
            "format_rate": self.stated / self.candidates if self.candidates else 0.0,
            "stated_candidates": self.stated,
            "candidates": self.candidates,
            "mean_tokens": self.tokens / count,
            "tokens_exact": self.tokens_exact,
            "mean_wall_time_s": self.wall_time_s / count,
            "grading_timeouts": self.grading_timeouts,
            "errors": self.errors,
        }


def summarize(
    rows: Iterable[Mapping[str, Any]], *, grading_timeout: float = 5.0
) -> list[dict[str, Any]]:
    """One entry per (strategy, budget), in strategy then budget order. `accuracy` and
    `pass_at_n` are lenient, `strict_accuracy` and `strict_pass_at_n` strict; rows without the
    strict fields (older logs) get them graded from their candidates."""
    points: dict[tuple[str, int], BudgetSummary] = {}
    for row in (complete_row(r, timeout=grading_timeout) for r in rows):
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
