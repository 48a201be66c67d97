"""The progress events strategies stream, declared once: types and the functions that build them.

Every event is a plain dict with a "type" key and the strategy's name; events of an iterative
search carry the iteration. Read them with `graph.astream(inp, stream_mode="custom")` (add
`subgraphs=True` from a parent graph). `ProgressEvent` validates any of them:
`TypeAdapter(ProgressEvent).validate_python(event)`. docs/events.md describes each field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
class TreeEvent(TypedDict):
    """Tree searches (MCTS, REBASE): a node was added ("expand"), valued by the verifier
    ("score"), or had a value backed up through it ("backup"). Enough to draw the tree."""

    type: Literal["tree"]
    strategy: str
    iteration: int
    action: Literal["expand", "score", "backup"]
    id: int
    parent: int | None
    depth: int
    step: NotRequired[str]  # expand: the node's own step (its text past the parent's)
    finished: NotRequired[bool]  # expand: the node ends a solution
    score: NotRequired[float]  # score: the verifier's score of the node
    value: NotRequired[float]  # score (MCTS: the value backed up) and backup: the mean value
    visits: NotRequired[int]  # backup: values backed up through the node


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
class ThresholdEvent(TypedDict):
    """DeepConf online: the warm-up traces set the confidence threshold later traces stop at."""

    type: Literal["threshold"]
    strategy: str
    threshold: float  # the percentile of the warm-up traces' confidences
    warmup: int  # traces it was computed from


@with_config(_strict)
class EarlyStopEvent(TypedDict):
    """A sample was stopped in the engine because its confidence fell below the threshold."""

    type: Literal["early_stop"]
    strategy: str
    iteration: NotRequired[int]
    id: int
    num_tokens: int  # tokens it had generated when it was stopped
    confidence: float  # its lowest group confidence


@with_config(_strict)
class SelectedEvent(TypedDict):
    """The final choice."""

    type: Literal["selected"]
    strategy: str
    id: int | None
    answer: str | None
    score: float | None


@with_config(_strict)
class ActionEvent(TypedDict):
    """An agent's model call: one sampled reply (a next action) arrived."""

    type: Literal["action"]
    strategy: str  # "ttc_agent"
    id: int  # the sample's index within the call
    kind: Literal["tool_calls", "text"]
    key: str  # its equivalence key (tool calls as canonical JSON, or the answer / text)
    valid: bool  # False: a malformed tool call (never chosen while a valid reply exists)
    problems: list[str]
    num_tokens: int


@with_config(_strict)
class ActionSelectedEvent(TypedDict):
    """An agent's model call: the reply chosen among the samples."""

    type: Literal["action_selected"]
    strategy: str
    selection: str  # the mode that decided: majority, weighted, naive or usc
    group_sizes: list[int]  # equivalent replies per group, first seen first
    scores: list[float | None]  # the verifier's score per sample (None: not scored)
    id: int | None  # the chosen sample
    key: str | None
    reason: str  # why the mode fell back, or ""


ProgressEvent = Annotated[
    CandidateEvent
    | ScoreEvent
    | PruneEvent
    | TreeEvent
    | CritiqueEvent
    | GenerationEvent
    | ErrorEvent
    | RouteEvent
    | SelectedEvent
    | ActionEvent
    | ActionSelectedEvent
    | ThresholdEvent
    | EarlyStopEvent,
    Field(discriminator="type"),
]


def emit(event: ProgressEvent) -> None:
    """Send an event to the "custom" stream; a no-op outside a streaming graph run."""
    try:
        writer = get_stream_writer()
    except (RuntimeError, KeyError):  # outside a graph run (a unit test, a bare chat model)
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


def tree(
    strategy: str,
    iteration: int,
    action: Literal["expand", "score", "backup"],
    node: Mapping[str, Any],
    **fields: Any,
) -> TreeEvent:
    """A "tree" event about `node` (a tree node: id, parent, depth); `fields` are the
    action's own (step and finished, score and value, value and visits)."""
    return TreeEvent(  # type: ignore[typeddict-item]
        type="tree",
        strategy=strategy,
        iteration=iteration,
        action=action,
        id=node["id"],
        parent=node["parent"],
        depth=node["depth"],
        **fields,
    )


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


def threshold(strategy: str, value: float, warmup: int) -> ThresholdEvent:
    """DeepConf online: the stop threshold its warm-up traces set."""
    return ThresholdEvent(type="threshold", strategy=strategy, threshold=value, warmup=warmup)


def early_stop(strategy: str, c: Candidate, iteration: int | None = None) -> EarlyStopEvent:
    """A sample its confidence rule stopped in the engine."""
    return EarlyStopEvent(
        type="early_stop",
        strategy=strategy,
        **_where(iteration),
        id=c["id"],
        num_tokens=c["num_tokens"],
        confidence=float(c.get("confidence", 0.0)),
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


# -- one line per event, for people ------------------------------------------------------------
# Front ends that show the search as text (the endpoint's reasoning stream, a terminal) share
# these lines. Each kind's wording is one function of the event; an unknown kind (a strategy
# added later) falls back to its type and fields.

_SNIPPET = 80  # characters of a candidate's latest line shown


def _snippet(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= _SNIPPET else last[: _SNIPPET - 1] + "…"


def _at(event: Mapping[str, Any]) -> str:
    parts = [f"step {event['iteration']}"] if "iteration" in event else []
    parts += [f"{key} {event[key]}" for key in ("group", "chain") if event.get(key) is not None]
    return f" [{', '.join(parts)}]" if parts else ""


def _score_text(value: Any) -> str:
    return "none" if value is None else f"{value:.3f}"


def _ids(ids: Any) -> str:
    return ", ".join(map(str, ids)) or "none"


_DESCRIBE: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "candidate": lambda e: (
        f"candidate {e['id']}{_at(e)}"
        + (f" from {e['parent']}" if e.get("parent") is not None else "")
        + f": {e['num_tokens']} tokens{', finished' if e['finished'] else ''}"
        + (f": {_snippet(e['text'])}" if _snippet(e["text"]) else "")
    ),
    "score": lambda e: (
        f"score {e['id']}{_at(e)}: {_score_text(e['score'])} ({len(e['step_scores'])} steps)"
    ),
    "prune": lambda e: f"prune{_at(e)}: kept {_ids(e['kept'])}; dropped {_ids(e['dropped'])}",
    "critique": lambda e: f"critique of {e['id']}{_at(e)}: {_snippet(e['text'])}",
    "generation": lambda e: (
        f"generating{_at(e)}: {e['tokens']} tokens, "
        f"{e['finished']}/{e['sequences']} samples done, {e['seconds']:.1f} s"
    ),
    "error": lambda e: (
        f"error{_at(e)}" + (f" (candidate {e['id']})" if "id" in e else "") + f": {e['message']}"
    ),
    "route": lambda e: (
        f"route: {e['route']} (difficulty signal {e['signal']:.2f}, "
        f"bin {e['bin']}, budget {e['budget']})"
    ),
    "selected": lambda e: (
        f"selected {e['id']}: answer {e['answer']} (score {_score_text(e['score'])})"
    ),
}


def describe(event: Mapping[str, Any]) -> str:
    """One short human-readable line for a progress event ("prune [step 2]: kept 1, 4; dropped
    2, 3"). Never raises: an unknown or malformed event is shown by its type and fields."""
    kind = str(event.get("type", "event"))
    try:
        return _DESCRIBE[kind](event)
    except (KeyError, TypeError, ValueError, AttributeError):
        fields = ", ".join(f"{k}={v!r}" for k, v in event.items() if k not in ("type", "strategy"))
        return f"{kind}: {fields}"[:200]
