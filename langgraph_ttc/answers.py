"""Answer extraction and equivalence.

Extraction takes the content of the last brace-matched `\\boxed{...}`; when a solution has none
(small models often forget), a fallback reads "the answer is X" or the last number of the
text. Equivalence uses `math-verify` (symbolic comparison of parsed LaTeX) in a worker process
that is killed when it overruns its timeout, with a normalised string match and an exact
comparison of plain numbers as the in-process fast paths.

Every function here reads untrusted model output, so each runs in time linear in its input
(no backtracking regular expressions, no rescans), and an answer longer than `MAX_ANSWER_CHARS`
is treated as no answer: it is never parsed.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import multiprocessing
import os
import re
import sys
import threading
from collections.abc import Callable
from fractions import Fraction

from pebble import ProcessExpired, ProcessFuture, ProcessPool

from langgraph_ttc.errors import TTCError

AnswerExtractor = Callable[[str], str | None]

MAX_ANSWER_CHARS = 256
"""Longest answer accepted: a longer one (boxed, stated or the last number) counts as no answer
and is never compared, since a real final answer is short and parsing long text is slow."""

GRADING_WORKERS = 2
"""Worker processes that run math-verify comparisons."""

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_TOKENS = re.compile(r"\\(?:boxed|fbox)\s*\{|[{}]")
# "the answer is X", "final answer: X", "answer = X"; X is read by `_stated_text`.
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)\s*(?:is\s*:?|:|=)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_LINE_END = re.compile(r"\n|(?<!\\)\$")  # a newline or an unescaped $
_LATEX_MARKUP = re.compile(r"\\[a-zA-Z]|[{}^]")  # a command, a group or a power


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` with nested braces matched; None if absent or open.

    One pass over the braces: each box remembers the depth it opened at and closes when the
    depth returns there, so unclosed boxes cost nothing extra.
    """
    first = _BOXED.search(text)
    if first is None:
        return None
    depth = 0
    open_boxes: list[tuple[int, int]] = []  # (depth before the box, content start)
    last: tuple[int, int] | None = None
    for token in _BOX_TOKENS.finditer(text, first.start()):
        if token.group() == "{":
            depth += 1
        elif token.group() == "}":
            if depth == 0:
                continue  # stray close brace outside every group
            depth -= 1
            if open_boxes and open_boxes[-1][0] == depth:
                start = open_boxes.pop()[1]
                if last is None or start > last[0]:
                    last = (start, token.start())
        else:
            open_boxes.append((depth, token.end()))
            depth += 1
    return text[last[0] : last[1]].strip() if last else None


def _within_cap(answer: str | None) -> str | None:
    return answer if answer and len(answer) <= MAX_ANSWER_CHARS else None


def _stated_text(text: str) -> str | None:
    """What follows the last "the answer is" that is followed by anything, up to the end of its
    sentence, line or `$...$`; None when no such statement exists."""
    for match in reversed(list(_ANSWER_IS.finditer(text))):
        start = match.end()
        while start < len(text) and text[start].isspace():
            start += 1
        if start < len(text) and text[start] == "$":
            start += 1
        line_end = _LINE_END.search(text, start)  # the nearest stop: no rescans of the rest
        end = line_end.start() if line_end else len(text)
        sentence_end = _SENTENCE_END.search(text, start, end)
        stated = text[start : sentence_end.start() if sentence_end else end].strip()
        if stated:
            return stated
    return None


def _last_number(text: str) -> str | None:
    last = None
    for last in _NUMBER.finditer(text):  # noqa: B007 - only the last match is wanted
        pass
    return _within_cap(_strip_number(last.group())) if last else None


def strict_answer(text: str) -> str | None:
    """The answer a solution states: the last `\\boxed{}`, else "the answer is X"; no guessing
    from the last number. Answers over `MAX_ANSWER_CHARS` count as absent."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return _within_cap(boxed)
    stated = _stated_text(text)
    if stated is None:
        return None
    if _LATEX_MARKUP.search(stated):  # a formula such as \frac{1}{2}: keep it whole
        return _within_cap(stated)
    return _last_number(stated) or _within_cap(stated)


def extract_answer(text: str) -> str | None:
    """The solution's final answer: last `\\boxed{}`, else "answer is X", else the last number.

    Answers over `MAX_ANSWER_CHARS` count as absent.
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        return _within_cap(boxed)
    return strict_answer(text) or _last_number(text)


def boxed_only(text: str) -> str | None:
    """Only a boxed answer, no fallback: the plain `\\boxed{}` contract (docs/algorithms.md)."""
    return _within_cap(extract_boxed(text))


def _strip_number(number: str) -> str:
    return number.replace(",", "").rstrip(".")


_TEXT_COMMAND = re.compile(r"\\text\{([^{}]*)\}")  # [^{}] keeps each attempt within one group
_SPACING_COMMANDS = re.compile(r"\\(?:left|right|,|!|;|:)")
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?:\D|$))")
_WHITESPACE = re.compile(r"\s+")
_WHOLE_DECIMAL = re.compile(r"-?\d+\.0+")


def normalize_answer(answer: str) -> str:
    """Cheap canonical form for exact matching and grouping (linear time)."""
    text = answer.strip().strip("$").strip()
    text = _TEXT_COMMAND.sub(r"\1", text)
    text = _SPACING_COMMANDS.sub("", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _THOUSANDS_COMMA.sub("", text)  # 1,000 -> 1000
    text = _WHITESPACE.sub("", text).rstrip(".")
    if _WHOLE_DECIMAL.fullmatch(text):
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


class GradingTimeout(TTCError):
    """Raised by `grade` when math-verify did not finish in time."""


GRADING_QUEUE_WAIT_S = 60.0
"""Extra wall time a comparison may spend queued behind others before `grade` gives up."""


def grade(prediction: str | None, reference: str, timeout: float = 5.0) -> bool:
    """True when `prediction` equals `reference` mathematically; raises GradingTimeout.

    Normalised string equality and plain numbers are decided here; anything else goes to
    math-verify in a worker process that gets `timeout` seconds of run time and is killed (and
    replaced) when it overruns, so a pathological answer cannot hold the GIL or a pool slot.
    Waiting for a free worker (other threads' comparisons) is not counted in `timeout`, up to
    `GRADING_QUEUE_WAIT_S`. A prediction over `MAX_ANSWER_CHARS` is wrong without being parsed; the
    reference is trusted.
    """
    if prediction is None or len(prediction) > MAX_ANSWER_CHARS:
        return False
    predicted, expected = normalize_answer(prediction), normalize_answer(reference)
    if predicted == expected:
        return True
    numbers = _as_number(predicted), _as_number(expected)
    if None not in numbers:  # plain numbers: exact comparison, no need for a symbolic parser
        return numbers[0] == numbers[1]
    future = _schedule_comparison(reference, prediction, timeout)
    try:
        return future.result(timeout=timeout + GRADING_QUEUE_WAIT_S)
    except (concurrent.futures.TimeoutError, TimeoutError) as exc:
        future.cancel()  # a queued task is dropped, a running one's worker is killed
        raise GradingTimeout(f"math-verify took over {timeout}s on {prediction!r}") from exc
    except (ProcessExpired, concurrent.futures.CancelledError):
        return False  # the worker died (memory, signal): not shown equal


def answers_equivalent(a: str | None, b: str | None, timeout: float = 5.0) -> bool:
    """True when two answers are mathematically equal; a timeout counts as not equal, and so
    does an answer over `MAX_ANSWER_CHARS`."""
    if a is None or b is None or len(a) > MAX_ANSWER_CHARS or len(b) > MAX_ANSWER_CHARS:
        return False
    try:
        return grade(a, b, timeout)
    except GradingTimeout:
        return False


_pool: ProcessPool | None = None
_pool_lock = threading.Lock()


def _grading_pool() -> ProcessPool:
    """The shared math-verify pool, created on first use and again if it was stopped."""
    global _pool
    with _pool_lock:
        if _pool is None or not _pool.active:
            import math_verify  # noqa: F401 - loaded once here so forked workers start warm

            # fork on Linux: workers inherit the loaded parser and, unlike spawn, do not re-run
            # the caller's main module; they only run pure-Python parsing. Elsewhere (macOS,
            # Windows) the platform's default start method is the safe one.
            linux = sys.platform.startswith("linux")
            context = multiprocessing.get_context("fork" if linux else None)
            _pool = ProcessPool(
                max_workers=GRADING_WORKERS, context=context, initializer=_yield_to_engine
            )
        return _pool


GRADER_NICENESS = 10


def _yield_to_engine() -> None:
    """Graders run at a lower CPU priority: on a small CPU box the inference engine shares the
    cores with them, and grading can wait where generation cannot."""
    try:
        os.nice(GRADER_NICENESS)
    except OSError:  # not permitted here: grade at normal priority
        pass


def _schedule_comparison(gold: str, pred: str, timeout: float) -> ProcessFuture:
    try:
        return _grading_pool().schedule(_math_verify_equal, (gold, pred), timeout=timeout)
    except RuntimeError:  # another thread stopped the pool in between: use a new one
        return _grading_pool().schedule(_math_verify_equal, (gold, pred), timeout=timeout)


def shutdown_grading_pool() -> None:
    """Stop the math-verify workers (also done at exit); the next comparison starts new ones."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.stop()
        pool.join(timeout=5)


def _forget_pool_in_child() -> None:
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()  # the parent's pool and lock are not ours


atexit.register(shutdown_grading_pool)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)

# math-verify warns on every call that its (signal-based) timeouts are off; the pool's are on.
for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def _math_verify_equal(gold: str, pred: str) -> bool:
    """Runs in a worker process."""
    # in the grading worker process only
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # LaTeX first (an answer is wrapped in $...$ so it is read whole; a reference given as a
    # worked solution is read from its \boxed{} first), then plain expressions such as "1/2".
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    try:
        gold_parsed = parse(_as_latex(gold), extraction_config=config, parsing_timeout=None)
        pred_parsed = parse(_as_latex(pred), extraction_config=config, parsing_timeout=None)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
    except Exception:  # math-verify raises on odd input; unparsable means "not shown equal"
        return False


def _as_latex(answer: str) -> str:
    text = answer.strip()
    return text if text.startswith("$") or "\\boxed" in text else f"${text}$"
