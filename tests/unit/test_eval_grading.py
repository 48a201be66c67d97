"""Grading a budget's candidates against the reference: equivalences, no answer, timeouts."""

import pytest

from langgraph_ttc.answers import GradingTimeout
from langgraph_ttc.eval.metrics import grade_candidates


def cand(answer, score=0.5, i=0):
    return {
        "id": i,
        "text": f"\\boxed{{{answer}}}",
        "answer": answer,
        "score": score,
        "step_scores": [score],
        "num_tokens": 3,
        "finish_reason": "stop",
    }


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("\\frac{1}{2}", "1/2"),  # fraction forms
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac{3}{4}", "\\frac34"),
        ("1,000", "1000"),  # thousands separator
        ("12,345.0", "12345"),
        ("\\text{5}", "5"),  # LaTeX wrappers
        ("$42$", "42"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
    ],
)
def test_equivalent_forms_are_right(prediction, reference):
    graded = grade_candidates([cand(prediction)], reference)
    assert graded.correct == {"naive": True, "weighted": True, "majority": True}
    assert graded.passed and graded.grading_timeouts == 0


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [("1/3", "0.33"), ("1,001", "1000"), ("\\frac{2}{3}", "\\frac{3}{2}"), ("12", "-12")],
)
def test_different_values_are_wrong(prediction, reference):
    graded = grade_candidates([cand(prediction)], reference)
    assert graded.correct == {"naive": False, "weighted": False, "majority": False}
    assert not graded.passed


def test_no_answer_is_wrong_and_no_candidates_is_wrong():
    graded = grade_candidates([cand(None)], "7")
    assert graded.predictions == {"naive": None, "weighted": None, "majority": None}
    assert not any(graded.correct.values()) and graded.candidate_correct == [False]
    empty = grade_candidates([], "7")
    assert not any(empty.correct.values()) and not empty.passed


def test_modes_differ_and_pass_at_n_sees_any_right_candidate():
    candidates = [cand("9", 0.9, 0), cand("8", 0.5, 1), cand("8", 0.5, 2), cand("3", 0.1, 3)]
    graded = grade_candidates(candidates, "8")
    assert graded.predictions == {"naive": "9", "weighted": "8", "majority": "8"}
    assert graded.correct == {"naive": False, "weighted": True, "majority": True}
    assert graded.candidate_correct == [False, True, True, False]
    only_last_right = grade_candidates(candidates, "3")
    assert only_last_right.passed and not any(only_last_right.correct.values())


def test_a_grading_timeout_counts_wrong_and_is_counted_once_per_answer():
    calls = []

    def hanging_on_x(prediction, reference, timeout):
        calls.append((prediction, timeout))
        if prediction == "x":
            raise GradingTimeout("slow")
        return prediction == reference

    candidates = [cand("x", 0.9, 0), cand("x", 0.9, 1), cand("4", 0.1, 2)]
    graded = grade_candidates(candidates, "4", timeout=0.25, grader=hanging_on_x)
    assert graded.correct["naive"] is False  # naive picks "x": its timeout counts as wrong
    assert graded.candidate_correct == [False, False, True] and graded.passed
    assert graded.grading_timeouts == 1
    assert sorted(calls) == [("4", 0.25), ("x", 0.25)]  # each distinct answer graded once


def written(text, answer, score=0.5, i=0, finish="stop"):
    return {
        "id": i,
        "text": text,
        "answer": answer,
        "score": score,
        "step_scores": [score],
        "num_tokens": 3,
        "finish_reason": finish,
    }


def test_strict_counts_only_stated_answers_and_lenient_keeps_the_fallback():
    candidates = [
        written("3 + 4 = 7 and then 8 apples", "8", 0.9, 0),  # no statement: a stray number
        written("3 + 5 = 8.\n\nThe answer is 8.", "8", 0.5, 1),
        written("so \\boxed{7}", "7", 0.1, 2),
        written("cut off at \\boxed{8} and the answer is", "8", 0.2, 3, finish="length"),
    ]
    graded = grade_candidates(candidates, "8")
    assert graded.stated_answers == [None, "8", "7", "8"]  # a length-cut one: only its box
    assert graded.candidate_correct == [True, True, False, True]
    assert graded.candidate_strict == [False, True, False, True]
    assert graded.stated == 3 and graded.passed and graded.strict_passed
    # naive picks candidate 0: its last number is right, but it states nothing
    assert graded.selected["naive"] == 0 and graded.predictions["naive"] == "8"
    assert graded.correct["naive"] and not graded.strict_correct["naive"]
    assert graded.strict_predictions["naive"] is None
    # weighted and majority pick the "8" group, represented by its best member (candidate 0)
    assert graded.selected["weighted"] == graded.selected["majority"] == 0
    only_stray = grade_candidates([candidates[0]], "8")
    assert only_stray.passed and not only_stray.strict_passed and only_stray.stated == 0


def test_old_rows_get_their_strict_fields_computed():
    from langgraph_ttc.eval.metrics import complete_row

    old = {
        "id": "a",
        "strategy": "best_of_n",
        "budget": 2,
        "reference": "8",
        "candidates": [
            {"id": 0, "text": "8 apples", "answer": "8", "score": 0.9, "finish_reason": "stop"},
            {"id": 1, "text": "\\boxed{8}", "answer": "8", "score": 0.1, "finish_reason": "stop"},
        ],
    }
    row = complete_row(old)
    assert row["strict_pass"] is True and row["stated_candidates"] == 1
    assert row["num_candidates"] == 2
    assert row["strict_correct"] == {"naive": False, "weighted": False, "majority": False}
    assert complete_row(row) == row  # complete rows are left as they are
    failed = complete_row({"id": "b", "strategy": "greedy", "budget": 1, "reference": "1"})
    assert failed["strict_pass"] is False and failed["num_candidates"] == 0


def test_graders_run_below_the_engine_priority():
    import os

    from langgraph_ttc.answers import GRADER_NICENESS, _grading_pool, grade

    assert grade("1/2", "0.5", 30)  # starts the pool
    worker_niceness = _grading_pool().schedule(os.nice, (0,)).result(timeout=30)
    assert worker_niceness >= os.nice(0) + GRADER_NICENESS or worker_niceness == 19
