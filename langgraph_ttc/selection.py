"""Step splitting, step-score aggregation and final-answer selection (pure logic).

Every strategy ends with `select`, so best-of-N, beam search and DVTS choose their answer the
same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

from langgraph_ttc.actions import group_equivalent
from langgraph_ttc.answers import answers_equivalent, normalize_answer
from langgraph_ttc.types import Candidate

Aggregation = Literal["last", "min", "prod", "mean"]
Selection = Literal["naive", "weighted", "majority", "self_certainty", "confidence"]
AGGREGATIONS: tuple[str, ...] = ("last", "min", "prod", "mean")
# the selections that read the verifier's scores or none (what an evaluation reports)
SCORE_SELECTIONS: tuple[str, ...] = ("naive", "weighted", "majority")
# votes weighted by the model's own token confidences: the candidate field each reads
CONFIDENCE_SELECTIONS: dict[str, str] = {
    "self_certainty": "self_certainty",
    "confidence": "confidence",
}
SELECTIONS: tuple[str, ...] = (*SCORE_SELECTIONS, *CONFIDENCE_SELECTIONS)
DEFAULT_STEP_DELIMITER = "\n\n"


def split_steps(text: str, delimiter: str = DEFAULT_STEP_DELIMITER) -> list[str]:
    """Split a solution into steps, dropping empty pieces.

    A partial solution ends with the delimiter, so a plain split yields a trailing "" that must
    not be scored as a step.
    """
    return [step.strip() for step in text.split(delimiter) if step.strip()]


def aggregate(step_scores: Sequence[float], how: str = "last") -> float:
    """Collapse per-step scores into one solution score; no steps scores 0."""
    if not step_scores:
        return 0.0
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "prod":
        return float(math.prod(step_scores))
    if how == "mean":
        return float(sum(step_scores) / len(step_scores))
    raise ValueError(f"unknown aggregation {how!r}; choose one of {AGGREGATIONS}")


def validate_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {tuple(allowed)}")


Equivalence = Callable[[str | None, str | None], bool]


def group_by_answer(
    candidates: Sequence[Candidate], equivalent: Equivalence = answers_equivalent
) -> list[list[Candidate]]:
    """Group candidates whose answers are equivalent; candidates without an answer are left out.

    Exact matches (after normalisation) group first; the remaining groups are merged by comparing
    one representative each, so math-verify runs O(groups^2), not O(candidates^2). The same
    grouping keys agents' actions (`langgraph_ttc.actions`).
    """
    return group_equivalent(
        candidates,
        lambda c: None if c["answer"] is None else normalize_answer(c["answer"]),
        lambda a, b: equivalent(a["answer"], b["answer"]),
    )


def select(
    candidates: Sequence[Candidate],
    mode: str = "weighted",
    equivalent: Equivalence = answers_equivalent,
) -> Candidate | None:
    """Pick the final candidate.

    naive: highest aggregated score. weighted: the answer group with the largest score sum,
    represented by its best member. majority: the most frequent answer (ties go to the answer
    seen first), represented by its best-scored member. self_certainty / confidence: the
    answer group with the largest sum of its members' self-certainty / trace confidence
    (`langgraph_ttc.confidence`), represented by its most confident member. When no candidate
    has an answer, every mode but naive falls back to naive.
    """
    validate_choice("selection", mode, SELECTIONS)
    if not candidates:
        return None
    best = max(candidates, key=lambda c: c["score"])
    if mode == "naive":
        return best
    groups = group_by_answer(candidates, equivalent)
    if not groups:
        return best
    if mode in CONFIDENCE_SELECTIONS:
        key = CONFIDENCE_SELECTIONS[mode]
        chosen = max(groups, key=lambda g: sum(float(c.get(key, 0.0)) for c in g))
        return max(chosen, key=lambda c: float(c.get(key, 0.0)))
    if mode == "weighted":
        chosen = max(groups, key=lambda g: sum(c["score"] for c in g))
    else:
        chosen = max(groups, key=len)  # max() keeps the first of equal groups
    return max(chosen, key=lambda c: c["score"])


def select_all(
    candidates: Sequence[Candidate], equivalent: Equivalence = answers_equivalent
) -> dict[str, str | None]:
    """The answer every score selection mode picks, from one set of candidates (for
    evaluation)."""
    answers: dict[str, str | None] = {}
    for mode in SCORE_SELECTIONS:
        chosen = select(candidates, mode, equivalent)
        answers[mode] = chosen["answer"] if chosen else None
    return answers
