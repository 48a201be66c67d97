"""A verifier that re-checks the arithmetic a solution writes down.

Every equality "a op b = c" found in a step is parsed with a small recursive-descent parser over
exact fractions (no `eval`, bounded length, digits and exponents) and checked. The score of step
i estimates the probability that the solution so far is right from the checks seen up to step i:
(1 + correct) / (2 + checked), a Laplace estimate, so a step with nothing to check stays neutral
(0.5) and one wrong equality pulls every later step down.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

MAX_EXPRESSION_CHARS = 200
MAX_NUMBER_DIGITS = 30
MAX_EXPONENT = 12
MAX_CHECKS_PER_STEP = 50

_LATEX_REWRITES = [
    (re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\(?:times|cdot|ast)"), "*"),
    (re.compile(r"\\div"), "/"),
    (re.compile(r"\\(?:left|right|[()\[\]]|,|!|;|quad)"), " "),
    (re.compile(r"\\text\{[^{}]*\}"), " "),
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),  # thousands separators
    (re.compile(r"(?<=[\d)])\s*[x×·]\s*(?=[\d(])"), "*"),  # 3 x 4, 3×4
    (re.compile(r"÷"), "/"),
    (re.compile(r"[−–]"), "-"),
    (re.compile(r"\$"), " "),
    (re.compile(r"\*\*"), "^"),
]
# Characters that can belong to an arithmetic expression once the rewrites above ran.
_EXPR_CHARS = set("0123456789.+-*/^() \t")
_OPERATORS = set("+-*/^")


class ExpressionError(ValueError):
    """The text is not an arithmetic expression this parser accepts."""


class _Parser:
    """expr := term (('+'|'-') term)*; term := power (('*'|'/') power)*;
    power := unary ('^' power)?; unary := '-' unary | atom; atom := number | '(' expr ')'."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_EXPRESSION_CHARS:
            raise ExpressionError("expression too long")
        self.tokens = re.findall(r"\d+(?:\.\d+)?|\.\d+|[-+*/^()]", text)
        if "".join(self.tokens) != re.sub(r"\s+", "", text):
            raise ExpressionError(f"unexpected characters in {text!r}")
        self.pos = 0

    def parse(self) -> Fraction:
        value = self._expr()
        if self.pos != len(self.tokens):
            raise ExpressionError("trailing tokens")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise ExpressionError("unexpected end")
        self.pos += 1
        return token

    def _expr(self) -> Fraction:
        value = self._term()
        while self._peek() in ("+", "-"):
            value = value + self._term() if self._take() == "+" else value - self._term()
        return value

    def _term(self) -> Fraction:
        value = self._power()
        while self._peek() in ("*", "/"):
            op, rhs = self._take(), self._power()
            if op == "*":
                value *= rhs
            elif rhs == 0:
                raise ExpressionError("division by zero")
            else:
                value /= rhs
        return value

    def _power(self) -> Fraction:
        base = self._unary()
        if self._peek() == "^":
            self._take()
            exponent = self._power()
            if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
                raise ExpressionError("exponent out of range")
            if base == 0 and exponent < 0:
                raise ExpressionError("division by zero")
            return base ** int(exponent)
        return base

    def _unary(self) -> Fraction:
        if self._peek() == "-":
            self._take()
            return -self._unary()
        if self._peek() == "+":
            self._take()
            return self._unary()
        return self._atom()

    def _atom(self) -> Fraction:
        token = self._take()
        if token == "(":
            value = self._expr()
            if self._take() != ")":
                raise ExpressionError("unbalanced parentheses")
            return value
        if token[0].isdigit() or token[0] == ".":
            if len(token) > MAX_NUMBER_DIGITS:
                raise ExpressionError("number too long")
            return Fraction(token)
        raise ExpressionError(f"unexpected token {token!r}")


def evaluate(expression: str) -> Fraction:
    """Exact value of an arithmetic expression; raises ExpressionError on anything else."""
    return _Parser(expression).parse()


def _normalise(text: str) -> str:
    for pattern, replacement in _LATEX_REWRITES:
        text = pattern.sub(replacement, text)
    return text


def _side(text: str, leftwards: bool) -> str:
    """The longest run of expression characters next to an '=' sign."""
    chars = reversed(text) if leftwards else iter(text)
    run: list[str] = []
    for ch in chars:
        if ch not in _EXPR_CHARS:
            break
        run.append(ch)
    side = "".join(reversed(run) if leftwards else run).strip()
    return side.rstrip(".") if not leftwards else side


def _balanced_suffix(expression: str) -> str:
    """Drop unmatched leading ')' or '(' picked up from surrounding prose."""
    while expression and expression.count("(") != expression.count(")"):
        if expression.count("(") > expression.count(")"):
            expression = expression[expression.index("(") + 1 :].strip()
        else:
            expression = expression[: expression.rindex(")")].strip()
    return expression


@dataclass(frozen=True)
class Check:
    left: str
    right: str
    correct: bool


def check_equalities(step: str) -> list[Check]:
    """Every checkable equality in a step. An equality is checkable when both sides parse, at
    least one side has an operator (so "x = 5" is skipped), and neither side was cut by prose."""
    pieces = _normalise(step).split("=")
    checks: list[Check] = []
    for before, after in itertools.pairwise(pieces):
        left = _balanced_suffix(_side(before, leftwards=True))
        right = _balanced_suffix(_side(after, leftwards=False))
        if not left or not right or not any(ch.isdigit() for ch in left + right):
            continue
        if not any(op in (left + right)[1:] for op in _OPERATORS):
            continue
        if left[0] in _OPERATORS or right[-1] in _OPERATORS:
            continue  # prose cut the expression ("4 apples + 3 = 7"): nothing to check
        try:
            left_value, right_value = evaluate(left), evaluate(right)
        except ExpressionError:
            continue
        checks.append(Check(left, right, _close(left_value, right_value, right)))
        if len(checks) >= MAX_CHECKS_PER_STEP:
            break
    return checks


def _close(value: Fraction, claimed: Fraction, claimed_text: str) -> bool:
    """Exact match, or a rounded decimal claim (10/3 = 3.33) within half its last digit."""
    if value == claimed:
        return True
    decimals = re.search(r"\.(\d+)\s*$", claimed_text)
    if decimals is None or not re.fullmatch(r"-?\d+\.\d+", claimed_text.strip()):
        return False
    return abs(value - claimed) <= Fraction(1, 2 * 10 ** len(decimals.group(1)))


class ArithmeticVerifier:
    """PRM-protocol verifier that scores steps by the arithmetic they get right."""

    name = "arithmetic"

    def score_steps(self, steps: Sequence[str]) -> list[float]:
        correct = checked = 0
        scores: list[float] = []
        for step in steps:
            checks = check_equalities(step)
            checked += len(checks)
            correct += sum(check.correct for check in checks)
            scores.append((1 + correct) / (2 + checked))
        return scores

    async def score(self, problem: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        return [self.score_steps(steps) for steps in solutions]
