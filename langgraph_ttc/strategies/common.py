"""Pieces every strategy graph shares: settings, input handling, PRM scoring, final selection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig

from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.events import emit
from langgraph_ttc.selection import (
    AGGREGATIONS,
    DEFAULT_STEP_DELIMITER,
    SELECTIONS,
    aggregate,
    select,
    validate_choice,
)
from langgraph_ttc.types import PRM, Candidate

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "Solve the math problem step by step. Separate the steps with a blank line. "
    "End with the final answer written as \\boxed{answer}."
)


@dataclass(frozen=True)
class SamplingSettings:
    """Settings a strategy is built with; any field can be overridden per run through
    `config={"configurable": {...}}`."""

    n: int = 8
    temperature: float = 0.8
    top_p: float = 1.0
    max_tokens: int = 1024
    seed: int | None = None
    selection: str = "weighted"
    aggregation: str = "last"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    step_delimiter: str = DEFAULT_STEP_DELIMITER
    prm_timeout: float | None = 120.0  # seconds per PRM call; a hung verifier fails its batch
    aliases: ClassVar[dict[str, str]] = {}  # other names accepted in config["configurable"]

    def validate(self, *, needs_prm: bool = False, has_prm: bool = True) -> SamplingSettings:
        """Raise a clear ValueError for settings the strategies cannot run with."""
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be a positive integer, got {self.n!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0 and self.n > 1:
            raise ValueError(
                f"temperature 0 with n={self.n} would sample {self.n} identical candidates; "
                "use temperature > 0 or n=1"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.prm_timeout is not None and self.prm_timeout <= 0:
            raise ValueError(f"prm_timeout must be > 0 seconds or None, got {self.prm_timeout}")
        if not self.step_delimiter:
            raise ValueError("step_delimiter must be a non-empty string")
        validate_choice("selection", self.selection, SELECTIONS)
        validate_choice("aggregation", self.aggregation, AGGREGATIONS)
        if not has_prm and (needs_prm or self.selection != "majority"):
            raise ValueError(
                f"selection={self.selection!r} ranks candidates by verifier score, so it needs "
                "a prm; pass one, or use selection='majority'"
            )
        return self

    def with_overrides(self, config: RunnableConfig | None) -> SamplingSettings:
        """These settings updated from `config["configurable"]` (unknown keys are ignored)."""
        configurable: Mapping[str, Any] = (config or {}).get("configurable", {}) or {}
        names = {f.name for f in fields(self)}
        overrides = {self.aliases.get(k, k): v for k, v in configurable.items()}
        overrides = {k: v for k, v in overrides.items() if k in names}
        return replace(self, **overrides) if overrides else self


class EmptyProblemError(ValueError):
    """Raised at invoke time when the input holds no problem text."""


def resolve_problem(state: Mapping[str, Any]) -> str:
    """The problem text: `problem`, else the content of the last human message."""
    problem = state.get("problem")
    if problem is None:
        for message in reversed(state.get("messages") or []):
            if isinstance(message, HumanMessage):
                problem = message.text if hasattr(message, "text") else str(message.content)
                break
    if not isinstance(problem, str) or not problem.strip():
        raise EmptyProblemError(
            "empty problem: pass {'problem': '...'} or {'messages': [...]} whose last human "
            "message holds the problem text"
        )
    return problem.strip()


def chat_messages(problem: str, system_prompt: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": problem}]


async def score_solutions(
    prm: PRM,
    problem: str,
    steps_per_candidate: Sequence[Sequence[str]],
    call_timeout: float | None = None,
) -> tuple[list[list[float]], list[str | None], int]:
    """Score candidates with one batched PRM call, isolating failures.

    If the batch fails, each candidate is retried alone so one bad candidate costs only its own
    score. A call that takes over `call_timeout` seconds counts as failed. Returns (step scores,
    error per candidate or None, number of PRM calls made). Candidates without steps are not
    sent (they score no steps).
    """
    to_score = [i for i, steps in enumerate(steps_per_candidate) if steps]
    scores: list[list[float]] = [[] for _ in steps_per_candidate]
    errors: list[str | None] = [None] * len(steps_per_candidate)
    if not to_score:
        return scores, errors, 0
    calls = 1
    try:
        batch = await asyncio.wait_for(
            prm.score(problem, [steps_per_candidate[i] for i in to_score]), call_timeout
        )
        _check_scores(batch, [len(steps_per_candidate[i]) for i in to_score])
        for i, row in zip(to_score, batch, strict=True):
            scores[i] = [float(s) for s in row]
        return scores, errors, calls
    except Exception as batch_error:  # isolate: retry one by one below
        log.warning("PRM batch failed (%s); scoring candidates one at a time", batch_error)
    for i in to_score:
        calls += 1
        try:
            (row,) = await asyncio.wait_for(
                prm.score(problem, [steps_per_candidate[i]]), call_timeout
            )
            _check_scores([row], [len(steps_per_candidate[i])])
            scores[i] = [float(s) for s in row]
        except Exception as error:
            reason = "timed out" if isinstance(error, TimeoutError) else str(error)
            errors[i] = f"PRM failed on candidate {i}: {type(error).__name__}: {reason}"
    return scores, errors, calls


def _check_scores(batch: Sequence[Sequence[float]], expected_steps: Sequence[int]) -> None:
    if len(batch) != len(expected_steps):
        raise ValueError(f"PRM returned {len(batch)} rows for {len(expected_steps)} candidates")
    for row, expected in zip(batch, expected_steps, strict=True):
        if len(row) != expected:
            raise ValueError(f"PRM returned {len(row)} scores for {expected} steps")
        for value in row:
            if not 0.0 <= float(value) <= 1.0:  # also rejects NaN
                raise ValueError(f"PRM score {value!r} is not in [0, 1]")


def make_candidate(
    candidate_id: int,
    text: str,
    *,
    num_tokens: int,
    finish_reason: str,
    step_scores: Sequence[float] = (),
    aggregation: str = "last",
    extractor: AnswerExtractor = extract_answer,
    error: str | None = None,
) -> Candidate:
    candidate = Candidate(
        id=candidate_id,
        text=text,
        answer=extractor(text),
        score=aggregate(step_scores, aggregation),
        step_scores=list(step_scores),
        num_tokens=num_tokens,
        finish_reason=finish_reason,
    )
    if error:
        candidate["error"] = error
    return candidate


def finish(
    strategy: str,
    state: Mapping[str, Any],
    candidates: list[Candidate],
    selection: str,
) -> dict[str, Any]:
    """The output update every strategy ends with: selection, the "selected" event, and an AI
    message when the run came from a messages-based graph."""
    chosen = select(candidates, selection)
    emit(
        {
            "type": "selected",
            "strategy": strategy,
            "id": chosen["id"] if chosen else None,
            "answer": chosen["answer"] if chosen else None,
            "score": chosen["score"] if chosen else None,
        }
    )
    update: dict[str, Any] = {
        "answer": chosen["answer"] if chosen else None,
        "solution": chosen["text"] if chosen else "",
        "candidates": candidates,
    }
    if state.get("messages"):
        messages: list[AnyMessage] = [AIMessage(content=update["solution"], name=strategy)]
        update["messages"] = messages
    return update
