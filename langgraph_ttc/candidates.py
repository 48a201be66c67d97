"""The candidate record, from sampling through scoring to the output (pure functions).

A candidate is created from a sampled completion (`new_candidate`), or grows step by step in a
search (`grow`); the verifier's step scores are set once (`with_scores`), which also aggregates
them; its answer is read once it is finished (`with_answer`). A growing candidate keeps its
text's generated token ids and token confidences while every step's are known, so its
confidence figures are always those of its whole text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph_ttc import confidence
from langgraph_ttc.answers import AnswerExtractor, boxed_only
from langgraph_ttc.selection import aggregate
from langgraph_ttc.types import Candidate, Completion

CONFIDENCE_DIGITS = 6  # stored confidence figures are rounded to this many decimals


def new_candidate(candidate_id: int, **lineage: Any) -> Candidate:
    """An empty partial solution (the root of a search), with optional parent/group/chain."""
    return Candidate(
        id=candidate_id,
        text="",
        answer=None,
        score=0.0,
        step_scores=[],
        num_tokens=0,
        finish_reason=None,
        **lineage,
    )


def from_completion(
    candidate_id: int, completion: Completion, extractor: AnswerExtractor, **lineage: Any
) -> Candidate:
    """A whole sampled solution, finished and with its answer read (a sample its stop rule
    ended has none), and its confidences when the policy gave token confidences."""
    reason = completion.finish_reason
    candidate = Candidate(
        id=candidate_id,
        text=completion.text,
        answer=None,
        score=0.0,
        step_scores=[],
        num_tokens=completion.num_tokens,
        finish_reason=reason if reason in ("length", "confidence") else "stop",
        **lineage,
    )
    if getattr(completion, "error", None):  # a failed sample: no text, no answer
        candidate["error"] = str(completion.error)
        return candidate
    if completion.token_confidences is not None:
        candidate = with_confidence(candidate, completion.token_confidences)
    return with_answer(candidate, extractor)


def with_confidence(
    candidate: Candidate,
    token_confidences: Sequence[float],
    *,
    window: int = confidence.DEFAULT_WINDOW,
    measure: str = "lowest_group",
    k: int = confidence.DEFAULT_TOP_LOGPROBS,
) -> Candidate:
    """The candidate with its trace confidence (by `measure` over `window` tokens) and its
    self-certainty, from its tokens' confidences (`langgraph_ttc.confidence`)."""
    return {
        **candidate,
        "confidence": round(
            confidence.trace_confidence(token_confidences, window, measure), CONFIDENCE_DIGITS
        ),
        "self_certainty": round(confidence.self_certainty(token_confidences, k), CONFIDENCE_DIGITS),
    }


def grow(
    parent: Candidate, child_id: int, completion: Completion, finish_reason: str | None
) -> Candidate:
    """The parent with one more sampled step; it inherits the parent's scores until scored.
    It keeps its text's generated token ids, and its token confidences (with the confidence
    figures of the whole text), while every step's are known."""
    child: Candidate = {
        **parent,
        "id": child_id,
        "parent": parent["id"],
        "text": parent["text"] + completion.text,
        "num_tokens": parent["num_tokens"] + completion.num_tokens,
        "finish_reason": finish_reason,
    }
    root = [] if not parent["text"] else None  # the empty solution: nothing unknown yet
    ids = extended_ids(parent.get("token_ids", root), completion)
    if ids is None:
        child.pop("token_ids", None)
    else:
        child["token_ids"] = ids
    confidences = extended_confidences(parent.get("token_confidences", root), completion)
    if confidences is None:  # the figures would describe only part of the text
        child.pop("token_confidences", None)
        child.pop("confidence", None)
        child.pop("self_certainty", None)
        return child
    return with_confidence({**child, "token_confidences": confidences}, confidences)


def extended_ids(known: Sequence[int] | None, completion: Completion) -> list[int] | None:
    """A text's generated token ids followed by a completion's (None: either is unknown)."""
    if known is None or completion.token_ids is None:
        return None
    return [*known, *completion.token_ids]


def extended_confidences(
    known: Sequence[float] | None, completion: Completion
) -> list[float] | None:
    """A text's token confidences followed by a completion's, each rounded as the stored
    figures are (None: either is unknown)."""
    if known is None or completion.token_confidences is None:
        return None
    return [*known, *(round(float(c), CONFIDENCE_DIGITS) for c in completion.token_confidences)]


def with_scores(
    candidate: Candidate,
    step_scores: Sequence[float],
    aggregation: str,
    error: str | None = None,
) -> Candidate:
    """The candidate with its verifier scores set and aggregated (the only aggregation)."""
    scored: Candidate = {
        **candidate,
        "step_scores": list(step_scores),
        "score": aggregate(step_scores, aggregation) if error is None else 0.0,
    }
    scored.pop("error", None)
    scored.pop("lookahead_score", None)  # a grown beam's is its parent's: set anew, if at all
    if error is not None:
        scored["error"] = error
    return scored


def with_answer(candidate: Candidate, extractor: AnswerExtractor) -> Candidate:
    """The answer of a finished candidate. A solution cut by the token limit counts only an
    answer it boxed: a stray number in broken text is not an answer."""
    if candidate["finish_reason"] == "confidence":
        answer = None  # abandoned part-way: no answer to vote with
    elif candidate["finish_reason"] == "length":
        answer = boxed_only(candidate["text"])
    else:
        answer = extractor(candidate["text"])
    return {**candidate, "answer": answer}
