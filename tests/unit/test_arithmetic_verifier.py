import asyncio
from fractions import Fraction

import pytest

from langgraph_ttc.verifiers.arithmetic import (
    MAX_SOLUTION_CHARS,
    MAX_STEP_CHARS,
    ArithmeticVerifier,
    ExpressionError,
    check_equalities,
    evaluate,
)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2^3^2", 512),
        ("-4 + 10 / 4", Fraction(-3, 2)),
        ("1.5 * 2", 3),
        (".5 + .5", 1),
    ],
)
def test_evaluate(expression, value):
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "expression",
    ["__import__('os')", "1 / 0", "2 ^ 100", "9" * 40, "1 +", "(1 + 2", "1 + " * 60 + "1", "a + b"],
)
def test_evaluate_rejects_unsafe_or_unbounded_input(expression):
    with pytest.raises(ExpressionError):
        evaluate(expression)


def test_checks_find_right_and_wrong_equalities():
    checks = check_equalities("First 12 + 7 = 19 and then 19 * 2 = 39.")
    assert [(c.left, c.right, c.correct) for c in checks] == [
        ("12 + 7", "19", True),
        ("19 * 2", "39", False),
    ]


@pytest.mark.parametrize(
    ("step", "correct"),
    [
        ("$12 + $7 = $19", [True]),
        ("1,200 + 300 = 1,500", [True]),
        ("3 x 4 = 12 and 3 × 5 = 15", [True, True]),
        ("\\frac{6}{3} \\times 2 = 4", [True]),
        ("10 / 3 = 3.33", [True]),
        ("10 / 3 = 3.4", [False]),
        ("2 + 3 = 5 = 6 - 1", [True, True]),
        ("x = 5", []),
        ("so 4 apples + 3 = 7 apples", []),
        ("apples - 3 * 2 = 6", []),
        ("There were 5 = five", []),
    ],
)
def test_checks_handle_common_notation(step, correct):
    assert [c.correct for c in check_equalities(step)] == correct


def test_scores_are_laplace_estimates_over_the_prefix():
    verifier = ArithmeticVerifier()
    scores = verifier.score_steps(["Read the problem.", "2 + 2 = 4", "4 * 3 = 13", "done"])
    assert scores == [0.5, 2 / 3, 2 / 4, 2 / 4]
    assert asyncio.run(verifier.score("p", [["1 + 1 = 2"], []])) == [[2 / 3], []]


def test_work_is_bounded_per_step():
    step = ", ".join(["1 + 1 = 2"] * 500)
    assert len(check_equalities(step)) == 50


def test_over_long_steps_and_solutions_are_not_checked():
    assert check_equalities("1 + 1 = 3 " + " " * MAX_STEP_CHARS) == []
    filler = "words " * (MAX_SOLUTION_CHARS // 6)
    scores = ArithmeticVerifier().score_steps(["1 + 1 = 3", filler, "2 + 2 = 4"])
    assert scores == [1 / 3, 1 / 3, 1 / 3]  # the last step lies past the budget: not checked
