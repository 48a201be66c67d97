import pytest

from langgraph_ttc.answers import (
    answers_equivalent,
    boxed_only,
    extract_answer,
    extract_boxed,
    grade,
    normalize_answer,
    strict_answer,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{19}", "19"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{x^{2}+\\sqrt{3}}.", "x^{2}+\\sqrt{3}"),
        ("\\boxed {7}", "7"),
        ("no box here", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_extract_boxed_matches_braces(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12 + 7 = 19\n\n\\boxed{19}", "19"),
        ("So the answer is 1,250.", "1250"),
        ("The final answer is: 42", "42"),
        ("She has 3 apples and buys 4 more, so 7", "7"),
        ("I do not know", None),
        ("", None),
    ],
)
def test_extract_answer_falls_back_to_stated_or_last_number(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12 + 7 = 19\n\n\\boxed{19}", "19"),
        ("So the answer is 1,250.", "1250"),
        ("The final answer is: 42", "42"),
        ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("the answer is 3.5 cups.", "3.5"),
        ("The answer is x^2 + 1\nThen 7", "x^2 + 1"),
        ("The answer is 5 apples\nThen 7", "5"),
        ("The answer is $\\$18$.", "18"),
        ("She has 3 apples and buys 4 more, so 7", None),
        ("the answer is", None),
        ("", None),
    ],
)
def test_strict_answer_reads_only_what_is_stated(text, expected):
    assert strict_answer(text) == expected


def test_stated_decimals_and_formulas_are_read_whole():
    # Used to give "3" (the '.' ended the statement) and "2" (the formula's last number).
    assert extract_answer("So the answer is 3.5.") == "3.5"
    assert extract_answer("The answer is $\\frac{1}{2}$.") == "\\frac{1}{2}"


def test_boxed_only_has_no_fallback():
    assert boxed_only("the answer is 5") is None
    assert boxed_only("\\boxed{5}") == "5"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("19", "19.0"),
        ("1,000", "1000"),
        ("\\frac{1}{2}", "0.5"),
        ("\\dfrac{3}{4}", "\\frac34"),
        ("$5$", "5"),
        ("2\\sqrt{2}", "\\sqrt{8}"),
    ],
)
def test_equivalent_answers(a, b):
    assert answers_equivalent(a, b)


@pytest.mark.parametrize(
    ("a", "b"), [("19", "9"), ("\\frac{1}{2}", "0.25"), (None, "1"), ("x", None)]
)
def test_different_answers(a, b):
    assert not answers_equivalent(a, b)


def test_normalize_answer_strips_formatting():
    assert normalize_answer(" $1,234.$ ") == "1234"
    assert normalize_answer("\\text{5 apples}") == "5apples"
    assert normalize_answer("3.00") == "3"


def test_grade_treats_missing_prediction_as_wrong():
    assert grade(None, "3") is False
    assert grade("3", "3") is True


def test_plain_numbers_compare_exactly_without_math_verify(monkeypatch):
    import langgraph_ttc.answers as answers

    def boom(*args):
        raise AssertionError("math-verify should not be needed for plain numbers")

    monkeypatch.setattr(answers, "_math_verify_equal", boom)
    assert grade("0.50", "1/2") and grade("-3", "-3.0") and not grade("19", "9")
