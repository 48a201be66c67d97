"""The progress events strategies stream, declared once: types and the functions that build them.

Every event is a plain dict with a "type" key and the strategy's name; events of an iterative
search carry the iteration. Read them with `graph.astream(inp, stream_mode="custom")` (add
`subgraphs=True` from a parent graph). `ProgressEvent` validates any of them:
`TypeAdapter(ProgressEvent).validate_python(event)`. docs/events.md describes each field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from langgraph.config import get_stream_writer
from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs it on Python 3.11

from langgraph_ttc.progress import GenerationProgress
from langgraph_ttc.types import Candidate

_strict = ConfigDict(extra="forbid")


@with_config(_strict)
class CandidateEvent(TypedDict):
    """A sample finished, a beam was extended, or a revision was written."""

    type: Literal["candidate"]
    strategy: str
    iteration: NotRequired[int]
    id: int
    text: str  # the candidate's text so far
    num_tokens: int  # tokens generated for it so far
    finished: bool
    parent: NotRequired[int | None]  # step searches
    group: NotRequired[int]  # DVTS subtree
    chain: NotRequired[int]  # self-refinement chain


@with_config(_strict)
class ScoreEvent(TypedDict):
    """The verifier scored a candidate's steps."""

    type: Literal["score"]
    strategy: str
    iteration: NotRequired[int]
    id: int
    step_scores: list[float]
    score: float  # aggregated


@with_config(_strict)
class PruneEvent(TypedDict):
    """A search kept some candidates and dropped the others."""

    type: Literal["prune"]
    strategy: str
    iteration: int
    kept: list[int]
    dropped: list[int]
    group: NotRequired[int]  # DVTS: the subtree that chose


@with_config(_strict)
class CritiqueEvent(TypedDict):
    """Self-refinement: the critic's feedback on a version."""

    type: Literal["critique"]
    strategy: str
    iteration: int
    id: int
    text: str


@with_config(_strict)
class GenerationEvent(TypedDict):
    """Token progress of one policy call, about once a second while it runs."""

    type: Literal["generation"]
    strategy: str
    iteration: NotRequired[int]
    tokens: int
    seconds: float
    sequences: int
    finished: int


@with_config(_strict)
class ErrorEvent(TypedDict):
    """An isolated failure: a candidate lost its score, a call timed out."""

    type: Literal["error"]
    strategy: str
    iteration: NotRequired[int]
    id: NotRequired[int]
    message: str


@with_config(_strict)
class RouteEvent(TypedDict):
    """The compute-optimal router chose a strategy from its difficulty probe."""

    type: Literal["route"]
    strategy: str
    signal: float  # the probe's confidence: 0 = hard, 1 = easy
    bin: int  # its difficulty bin in the routing table
    budget: int  # the table's budget (samples) the route was fitted for
    route: str  # the strategy run with the rest of the budget
    settings: dict[str, Any]


@with_config(_strict)
class SelectedEvent(TypedDict):
    """The final choice."""

    type: Literal["selected"]
    strategy: str
    id: int | None
    answer: str | None
    score: float | None


ProgressEvent = Annotated[
    CandidateEvent
    | ScoreEvent
    | PruneEvent
    | CritiqueEvent
    | GenerationEvent
    | ErrorEvent
    | RouteEvent
    | SelectedEvent,
    Field(discriminator="type"),
]


def emit(event: ProgressEvent) -> None:
    """Send an event to the "custom" stream; a no-op outside a streaming graph run."""
    try:
        writer = get_stream_writer()
    except RuntimeError:  # called outside a graph run (e.g. from a unit test of a node helper)
        return
    writer(event)


def _where(iteration: int | None) -> dict[str, Any]:
    return {} if iteration is None else {"iteration": iteration}


_LINEAGE = ("parent", "group", "chain")


def candidate(strategy: str, c: Candidate, iteration: int | None = None) -> CandidateEvent:
    """The `candidate` event: a sample finished, a beam grew, or a revision was written."""
    lineage = {key: c[key] for key in _LINEAGE if key in c}  # type: ignore[literal-required]
    return CandidateEvent(
        type="candidate",
        strategy=strategy,
        **_where(iteration),
        id=c["id"],
        text=c["text"],
        num_tokens=c["num_tokens"],
        finished=c["finish_reason"] is not None,
        **lineage,
    )


def score(strategy: str, c: Candidate, iteration: int | None = None) -> ScoreEvent:
    """The `score` event: a candidate's step scores and aggregated score."""
    return ScoreEvent(
        type="score",
        strategy=strategy,
        **_where(iteration),
        id=c["id"],
        step_scores=list(c["step_scores"]),
        score=c["score"],
    )


def prune(
    strategy: str,
    iteration: int,
    kept: list[Candidate],
    dropped: list[Candidate],
    group: int | None = None,
) -> PruneEvent:
    """The `prune` event: the candidates an iteration kept and those it dropped."""
    event = PruneEvent(
        type="prune",
        strategy=strategy,
        iteration=iteration,
        kept=[c["id"] for c in kept],
        dropped=[c["id"] for c in dropped],
    )
    if group is not None:
        event["group"] = group
    return event


def critique(strategy: str, iteration: int, version: Candidate, text: str) -> CritiqueEvent:
    """The `critique` event: the critic's feedback on a version (self-refinement)."""
    return CritiqueEvent(
        type="critique", strategy=strategy, iteration=iteration, id=version["id"], text=text
    )


def generation(
    strategy: str, progress: GenerationProgress, iteration: int | None = None
) -> GenerationEvent:
    """The `generation` event: token progress of one policy call while it runs."""
    return GenerationEvent(
        type="generation",
        strategy=strategy,
        **_where(iteration),
        tokens=progress.tokens,
        seconds=progress.seconds,
        sequences=progress.sequences,
        finished=progress.finished,
    )


def error(
    strategy: str, message: str, *, candidate_id: int | None = None, iteration: int | None = None
) -> ErrorEvent:
    """The `error` event: an isolated failure (a candidate lost its score)."""
    event = ErrorEvent(type="error", strategy=strategy, **_where(iteration), message=message)
    if candidate_id is not None:
        event["id"] = candidate_id
    return event


def route(
    strategy: str, signal: float, bin: int, budget: int, chosen: str, settings: dict[str, Any]
) -> RouteEvent:
    """The `route` event: the compute-optimal router's probe signal, bin and choice."""
    return RouteEvent(
        type="route",
        strategy=strategy,
        signal=signal,
        bin=bin,
        budget=budget,
        route=chosen,
        settings=dict(settings),
    )


def selected(strategy: str, chosen: Candidate | None) -> SelectedEvent:
    """The `selected` event: the final choice of a run."""
    return SelectedEvent(
        type="selected",
        strategy=strategy,
        id=chosen["id"] if chosen else None,
        answer=chosen["answer"] if chosen else None,
        score=chosen["score"] if chosen else None,
    )
