"""A verifier that re-checks the arithmetic a solution writes down.

Every equality "a op b = c" found in a step is parsed with a small recursive-descent parser over
exact fractions (no `eval`) and checked. Model output is untrusted, so all work is bounded: the
length of an expression, of a number, of a step and of a solution, the nesting depth, the
exponent and the size of every intermediate value (see the MAX_* constants). The score of step
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

from langgraph_ttc.errors import TTCError

MAX_EXPRESSION_CHARS = 200
MAX_NUMBER_DIGITS = 30
MAX_EXPONENT = 12
MAX_VALUE_BITS = 1024  # numerator and denominator of every intermediate value
MAX_NESTING = 16  # parentheses and unary signs in a row
MAX_CHECKS_PER_STEP = 50
MAX_ATTEMPTS_PER_STEP = 200  # '=' signs looked at per step, checkable or not
MAX_STEP_CHARS = 20_000  # a longer step is not checked (it scores like a step with no checks)
MAX_SOLUTION_CHARS = 100_000  # steps past this many characters of a solution are not checked

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


class ExpressionError(TTCError, ValueError):
    """The text is not an arithmetic expression this parser accepts."""


class _Parser:
    """expr := term (('+'|'-') term)*; term := power (('*'|'/') power)*;
    power := unary ('^' power)?; unary := ('-'|'+')* atom; atom := number | '(' expr ')'.

    Work is bounded by the input cap, the nesting cap and `MAX_VALUE_BITS`, checked after
    every operation (and before a power is computed), so no expression can grow a huge number.
    """

    def __init__(self, text: str) -> None:
        if len(text) > MAX_EXPRESSION_CHARS:
            raise ExpressionError("expression too long")
        self.tokens = _TOKEN.findall(text)
        if "".join(self.tokens) != _WHITESPACE.sub("", text):
            raise ExpressionError(f"unexpected characters in {text!r}")
        self.pos = 0
        self.depth = 0

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
            op, rhs = self._take(), self._term()
            value = _bounded(value + rhs if op == "+" else value - rhs)
        return value

    def _term(self) -> Fraction:
        value = self._power()
        while self._peek() in ("*", "/"):
            op, rhs = self._take(), self._power()
            if op == "*":
                value = _bounded(value * rhs)
            elif rhs == 0:
                raise ExpressionError("division by zero")
            else:
                value = _bounded(value / rhs)
        return value

    def _power(self) -> Fraction:
        operands = [self._unary()]
        while self._peek() == "^":
            self._take()
            operands.append(self._unary())
        value = operands.pop()
        while operands:  # right-associative: 2^3^2 = 2^(3^2)
            value = _bounded_power(operands.pop(), value)
        return value

    def _unary(self) -> Fraction:
        negative, signs = False, 0
        while self._peek() in ("-", "+"):
            negative ^= self._take() == "-"
            signs += 1
            if signs > MAX_NESTING:
                raise ExpressionError("too many signs")
        value = self._atom()
        return -value if negative else value

    def _atom(self) -> Fraction:
        token = self._take()
        if token == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise ExpressionError("parentheses nested too deep")
            value = self._expr()
            if self._take() != ")":
                raise ExpressionError("unbalanced parentheses")
            self.depth -= 1
            return value
        if token[0].isdigit() or token[0] == ".":
            if len(token) > MAX_NUMBER_DIGITS:
                raise ExpressionError("number too long")
            return Fraction(token)
        raise ExpressionError(f"unexpected token {token!r}")


_TOKEN = re.compile(r"\d+(?:\.\d+)?|\.\d+|[-+*/^()]")
_WHITESPACE = re.compile(r"\s+")


def _bounded(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_VALUE_BITS:
        raise ExpressionError("intermediate value too large")
    return value


def _bounded_power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
        raise ExpressionError("exponent out of range")
    if base == 0 and exponent < 0:
        raise ExpressionError("division by zero")
    bits = max(base.numerator.bit_length(), base.denominator.bit_length())
    if bits * abs(int(exponent)) > MAX_VALUE_BITS:  # checked before the power is computed
        raise ExpressionError("power too large")
    return base ** int(exponent)


def evaluate(expression: str) -> Fraction:
    """Exact value of an arithmetic expression; raises ExpressionError on anything else."""
    return _Parser(expression).parse()


def _normalise(text: str) -> str:
    for pattern, replacement in _LATEX_REWRITES:
        text = pattern.sub(replacement, text)
    return text


def _side(text: str, leftwards: bool) -> str | None:
    """The run of expression characters next to an '=' sign; None when it is longer than an
    expression may be (so at most `MAX_EXPRESSION_CHARS + 1` characters are read)."""
    limit = MAX_EXPRESSION_CHARS + 1
    if leftwards:
        start = len(text)
        while start > 0 and text[start - 1] in _EXPR_CHARS and len(text) - start < limit:
            start -= 1
        run = text[start:]
        cut = start > 0 and text[start - 1] in _EXPR_CHARS
    else:
        end = 0
        while end < len(text) and text[end] in _EXPR_CHARS and end < limit:
            end += 1
        run = text[:end]
        cut = end < len(text) and text[end] in _EXPR_CHARS
    if cut:
        return None
    side = run.strip()
    return side.rstrip(".") if not leftwards else side


def _balanced_suffix(expression: str) -> str:
    """Drop unmatched leading '(' or trailing ')' picked up from surrounding prose.

    Runs in linear time: each character is dropped at most once and counts are kept current.
    """
    lo, hi = 0, len(expression)
    opens, closes = expression.count("("), expression.count(")")
    while lo < hi and opens != closes:
        if opens > closes:
            first_open = expression.index("(", lo, hi)
            closes -= expression.count(")", lo, first_open)
            opens -= 1
            lo = first_open + 1
        else:
            last_close = expression.rindex(")", lo, hi)
            opens -= expression.count("(", last_close + 1, hi)
            closes -= 1
            hi = last_close
        while lo < hi and expression[lo].isspace():
            lo += 1
        while hi > lo and expression[hi - 1].isspace():
            hi -= 1
    return expression[lo:hi]


@dataclass(frozen=True)
class Check:
    left: str
    right: str
    correct: bool


def check_equalities(step: str) -> list[Check]:
    """Every checkable equality in a step. An equality is checkable when both sides parse, at
    least one side has an operator (so "x = 5" is skipped), and neither side was cut by prose.

    Work is bounded: steps over `MAX_STEP_CHARS` are skipped, at most `MAX_ATTEMPTS_PER_STEP`
    '=' signs are examined and at most `MAX_CHECKS_PER_STEP` checks are returned.
    """
    if len(step) > MAX_STEP_CHARS:
        return []
    pieces = _normalise(step).split("=")
    checks: list[Check] = []
    for attempt, (before, after) in enumerate(itertools.pairwise(pieces)):
        if attempt >= MAX_ATTEMPTS_PER_STEP or len(checks) >= MAX_CHECKS_PER_STEP:
            break
        left_side, right_side = _side(before, leftwards=True), _side(after, leftwards=False)
        if left_side is None or right_side is None:
            continue  # longer than any expression the parser accepts
        left, right = _balanced_suffix(left_side), _balanced_suffix(right_side)
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
        budget = MAX_SOLUTION_CHARS
        scores: list[float] = []
        for step in steps:
            budget -= len(step)
            checks = check_equalities(step) if budget >= 0 else []
            checked += len(checks)
            correct += sum(check.correct for check in checks)
            scores.append((1 + correct) / (2 + checked))
        return scores

    async def score(self, problem: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        return [self.score_steps(steps) for steps in solutions]
