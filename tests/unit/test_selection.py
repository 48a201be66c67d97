import math

import pytest

from langgraph_ttc.selection import aggregate, group_by_answer, select, select_all, split_steps
from langgraph_ttc.types import Candidate


def cand(i: int, answer: str | None, score: float) -> Candidate:
    return Candidate(
        id=i,
        text=f"c{i}",
        answer=answer,
        score=score,
        step_scores=[score],
        num_tokens=1,
        finish_reason="stop",
    )


def test_split_steps_drops_empty_trailing_step():
    assert split_steps("a\n\nb\n\n") == ["a", "b"]
    assert split_steps("a\n\n\n\nb") == ["a", "b"]
    assert split_steps("") == []
    assert split_steps("a;b", ";") == ["a", "b"]


@pytest.mark.parametrize(
    ("how", "expected"), [("last", 0.5), ("min", 0.2), ("prod", 0.9 * 0.2 * 0.5), ("mean", 1.6 / 3)]
)
def test_aggregate(how, expected):
    assert math.isclose(aggregate([0.9, 0.2, 0.5], how), expected)


def test_aggregate_empty_and_unknown():
    assert aggregate([], "min") == 0.0
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([1.0], "max")


def test_three_modes_pick_differently():
    # answer 1: one high score; answer 2: three mid scores (sum 1.5); answer 3: two (sum 1.2)
    candidates = [
        cand(0, "1", 0.9),
        cand(1, "2", 0.5),
        cand(2, "2", 0.5),
        cand(3, "2", 0.5),
        cand(4, "3", 0.6),
        cand(5, "3", 0.6),
    ]
    assert select(candidates, "naive")["id"] == 0
    assert select(candidates, "weighted")["answer"] == "2"
    assert select(candidates, "majority")["answer"] == "2"
    candidates[1]["score"] = candidates[2]["score"] = candidates[3]["score"] = 0.3
    assert select(candidates, "weighted")["answer"] == "3"  # 1.2 > 0.9 = 0.9
    assert select(candidates, "majority")["answer"] == "2"


def test_weighted_groups_equivalent_answers():
    candidates = [cand(0, "\\frac{1}{2}", 0.4), cand(1, "0.5", 0.4), cand(2, "7", 0.7)]
    assert len(group_by_answer(candidates)) == 2
    assert select(candidates, "weighted")["answer"] in {"\\frac{1}{2}", "0.5"}


def test_majority_tie_keeps_first_seen_and_best_member():
    candidates = [cand(0, "4", 0.1), cand(1, "5", 0.9), cand(2, "4", 0.6), cand(3, "5", 0.2)]
    chosen = select(candidates, "majority")
    assert chosen["answer"] == "4" and chosen["id"] == 2


def test_no_answers_fall_back_to_naive_and_empty_pool():
    candidates = [cand(0, None, 0.2), cand(1, None, 0.7)]
    assert select(candidates, "weighted")["id"] == 1
    assert select(candidates, "majority")["id"] == 1
    assert select([], "naive") is None
    with pytest.raises(ValueError, match="unknown selection"):
        select(candidates, "best")


def test_select_all_reports_every_mode():
    candidates = [cand(0, "1", 0.9), cand(1, "2", 0.5), cand(2, "2", 0.5)]
    assert select_all(candidates) == {"naive": "1", "weighted": "2", "majority": "2"}
