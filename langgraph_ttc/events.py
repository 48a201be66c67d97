"""Typed progress events that strategies stream in LangGraph's "custom" stream mode.

Every event is a plain dict with a "type" key, the strategy name and, where it applies, the
iteration. Read them with `graph.astream(inp, stream_mode="custom")` (add `subgraphs=True`
from a parent graph).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from langgraph.config import get_stream_writer
from typing_extensions import TypedDict


class CandidateEvent(TypedDict):
    type: Literal["candidate"]
    strategy: str
    iteration: NotRequired[int]
    id: int
    text: str  # the candidate's text so far
    num_tokens: int  # tokens generated for it so far
    finished: bool


class ScoreEvent(TypedDict):
    type: Literal["score"]
    strategy: str
    iteration: NotRequired[int]
    id: int
    step_scores: list[float]
    score: float


class PruneEvent(TypedDict):
    type: Literal["prune"]
    strategy: str
    iteration: int
    kept: list[int]
    dropped: list[int]


class SelectedEvent(TypedDict):
    type: Literal["selected"]
    strategy: str
    id: int | None
    answer: str | None
    score: float | None


class ErrorEvent(TypedDict):
    type: Literal["error"]
    strategy: str
    message: str


ProgressEvent = CandidateEvent | ScoreEvent | PruneEvent | SelectedEvent | ErrorEvent


def emit(event: ProgressEvent | dict[str, Any]) -> None:
    """Send an event to the "custom" stream; a no-op outside a streaming graph run."""
    try:
        writer = get_stream_writer()
    except RuntimeError:  # called outside a graph run (e.g. from a unit test of a node helper)
        return
    writer(event)
