"""Answer extraction and equivalence.

Extraction takes the content of the last brace-matched `\\boxed{...}`; when a solution has none
(small models often forget), a fallback reads "the answer is X" or the last number of the
text. Equivalence uses `math-verify` (symbolic comparison of parsed LaTeX) under a timeout, with
a normalised string match as the fallback.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
import threading
from collections.abc import Callable
from fractions import Fraction

AnswerExtractor = Callable[[str], str | None]

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*\$?\s*([^\n$]+?)\s*\$?\s*(?:\.|\n|$)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` with nested braces matched; None if absent or open."""
    last: str | None = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    last = text[start:i].strip()
                    break
    return last


def extract_answer(text: str) -> str | None:
    """The solution's final answer: last `\\boxed{}`, else "answer is X", else the last number."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed or None
    stated = _ANSWER_IS.findall(text)
    if stated:
        numbers = _NUMBER.findall(stated[-1])
        return _strip_number(numbers[-1]) if numbers else stated[-1].strip() or None
    numbers = _NUMBER.findall(text)
    return _strip_number(numbers[-1]) if numbers else None


def boxed_only(text: str) -> str | None:
    """Strict extractor for users who want no fallback (DESIGN's plain contract)."""
    return extract_boxed(text) or None


def _strip_number(number: str) -> str:
    return number.replace(",", "").rstrip(".")


def normalize_answer(answer: str) -> str:
    """Cheap canonical form for exact matching and grouping."""
    text = answer.strip().strip("$").strip()
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\\(?:left|right|,|!|;|:)", "", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = re.sub(r"(?<=\d),(?=\d{3}(?:\D|$))", "", text)  # 1,000 -> 1000
    text = re.sub(r"\s+", "", text).rstrip(".")
    if re.fullmatch(r"-?\d+\.0+", text):
        text = text.split(".")[0]
    return text


_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def _as_number(text: str) -> Fraction | None:
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


_VERIFY_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="ttc-verify")


class GradingTimeout(Exception):
    """Raised by `grade` when math-verify did not finish in time."""


def grade(prediction: str | None, reference: str, timeout: float = 5.0) -> bool:
    """True when `prediction` equals `reference` mathematically; raises GradingTimeout.

    Normalised string equality short-circuits; otherwise math-verify compares them. math-verify's
    own timeouts use SIGALRM, which works only on the main thread, so they are disabled and the
    call runs on a worker thread instead (a hung comparison is abandoned, not killed).
    """
    if prediction is None:
        return False
    predicted, expected = normalize_answer(prediction), normalize_answer(reference)
    if predicted == expected:
        return True
    numbers = _as_number(predicted), _as_number(expected)
    if None not in numbers:  # plain numbers: exact comparison, no need for a symbolic parser
        return numbers[0] == numbers[1]
    future = _VERIFY_POOL.submit(_math_verify_equal, reference, prediction)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError as exc:
        raise GradingTimeout(f"math-verify took over {timeout}s on {prediction!r}") from exc


def answers_equivalent(a: str | None, b: str | None, timeout: float = 5.0) -> bool:
    """True when two answers are mathematically equal; a timeout counts as not equal."""
    if a is None or b is None:
        return False
    try:
        return grade(a, b, timeout)
    except GradingTimeout:
        return False


_parse_lock = threading.Lock()
# math-verify warns on every call that its (signal-based) timeouts are off; ours are in place.
for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def _math_verify_equal(gold: str, pred: str) -> bool:
    from math_verify import parse, verify

    try:
        # latex2sympy's generated parser is not thread-safe; serialise parsing.
        with _parse_lock:
            gold_parsed = parse(_as_latex(gold), parsing_timeout=None)
            pred_parsed = parse(_as_latex(pred), parsing_timeout=None)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
    except Exception:  # math-verify raises on odd input; unparsable means "not shown equal"
        return False


def _as_latex(answer: str) -> str:
    text = answer.strip()
    return text if text.startswith("$") or "\\boxed" in text else f"${text}$"
