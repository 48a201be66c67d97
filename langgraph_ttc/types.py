"""Backend contract types and the state schemas strategies share.

Everything in graph state is a plain dict / list / str / number so it round-trips through any
LangGraph checkpointer; engine objects never enter state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import (
    Annotated,
    Any,
    NotRequired,  # pydantic needs these on Python 3.11
    Protocol,
    runtime_checkable,
)

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from langgraph_ttc.errors import BackendDeadError

__all__ = [
    "PRM",
    "BackendDeadError",
    "Candidate",
    "Completion",
    "ConfidenceStop",
    "GenerationRequest",
    "Policy",
    "StrategyInput",
    "StrategyOutput",
    "StrategyState",
    "Usage",
    "empty_usage",
    "merge_usage",
]


@dataclass(frozen=True)
class ConfidenceStop:
    """A declarative early-stop rule for a sample: stop it once the mean token confidence of
    its last `window` tokens falls below `threshold` (its `finish_reason` is then
    "confidence"). Token confidence is minus the mean log-probability of the top-k candidate
    tokens at a position (k = the request's `top_logprobs`); higher is more confident."""

    window: int
    threshold: float

    def __post_init__(self) -> None:
        if self.window < 1 or self.threshold != self.threshold:  # NaN is not a threshold
            raise ValueError(f"invalid ConfidenceStop: {self}")


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to sample from; `n` completions share it."""

    messages: Sequence[Mapping[str, str]]
    prefix: str = ""  # partial assistant text, continued verbatim
    # the prefix as the token ids the policy generated it as (its completions' `token_ids`):
    # a policy that renders prompts itself sends these instead of re-tokenizing the prefix
    prefix_token_ids: Sequence[int] | None = None
    n: int = 1
    max_tokens: int = 1024
    temperature: float = 0.8
    top_p: float = 1.0
    stop: Sequence[str] = ()
    seed: int | None = None
    # ask for per-token confidence figures from the top-k log-probabilities (k = this); a
    # policy that cannot give them raises ConfidenceUnavailableError
    top_logprobs: int | None = None
    confidence_stop: ConfidenceStop | None = None  # needs top_logprobs


@dataclass(frozen=True)
class Completion:
    """One sampled continuation (the prefix is not repeated)."""

    text: str  # includes the matched stop string
    finish_reason: str  # "stop" (EOS or a stop string) | "length" | "confidence" (stop rule)
    stop_reason: str | None  # the matched stop string; None for EOS / length
    num_tokens: int
    logprob: float | None = None  # cumulative, when available
    token_ids: tuple[int, ...] | None = None  # the generated ids, when they decode to `text`
    # with `top_logprobs` k: per generated token, minus the mean of the top-k log-probabilities
    # (DeepConf's token confidence); compact, one float per token
    token_confidences: tuple[float, ...] | None = None
    # a failed sample (the backend sent no usable text: empty, a tool call, withheld): why.
    # Its text is empty; the run records the reason and goes on with the other samples.
    error: str | None = None


@runtime_checkable
class Policy(Protocol):
    """Anything that samples completions for a batch of requests."""

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        """result[i] holds requests[i].n completions, in order."""
        ...


@runtime_checkable
class PRM(Protocol):
    """A process reward model: one score in [0, 1] per step, per candidate."""

    async def score(self, problem: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        """solutions[j] is one candidate's steps (text without the delimiter)."""
        ...


class Candidate(TypedDict):
    """One candidate solution, from its generation to the output: a sample, a beam, or a
    revision. Created when sampled, updated when scored; `finish_reason` is None while a beam
    still grows."""

    id: int
    text: str
    answer: str | None  # extracted once the candidate is finished
    score: float  # the aggregated step scores
    step_scores: list[float]
    num_tokens: int  # generated for this candidate (a beam: its ancestors' steps included)
    finish_reason: str | None  # "stop" | "length" | "confidence" | "rejected"; None: growing
    error: NotRequired[str]  # why it has no (or a partial) score
    parent: NotRequired[int | None]  # step searches: the beam it grew from
    group: NotRequired[int]  # DVTS: the subtree it grew in
    chain: NotRequired[int]  # self-refinement: the chain of revisions
    round: NotRequired[int]  # self-refinement: 0 = draft, k = k-th revision
    lookahead_score: NotRequired[float]  # step searches with lookahead: the ranking score
    token_ids: NotRequired[list[int]]  # step searches: `text` as generated (when the policy says)
    # step searches asked for confidences: one figure per generated token of `text`, the
    # steps' `Completion.token_confidences` end to end (its `confidence` figures read them)
    token_confidences: NotRequired[list[float]]
    # sampled with token confidences (selection "confidence"/"self_certainty", DeepConf): over
    # the whole text (a grown solution: every step's tokens; a revision: its own)
    confidence: NotRequired[float]  # the trace's confidence (lowest group mean, or its tail)
    self_certainty: NotRequired[float]  # mean KL(uniform || token distribution), top-k approx.


class Usage(TypedDict):
    """Compute one run spent; every strategy reports all of these keys."""

    policy_tokens: int  # generated tokens (prompts not counted)
    policy_calls: int  # batched `Policy.generate` calls
    prm_calls: int  # `PRM.score` calls (a failed batch retried candidate by candidate counts each)
    prm_steps: int  # steps sent to the verifier
    errors: list[str]  # isolated failures (a candidate's score, a timed-out call)
    budget_tokens: NotRequired[int | None]  # the run's token budget (None: unlimited)
    budget_spent: NotRequired[int]  # generated tokens counted against it
    samples: NotRequired[int]  # adaptive majority: the samples it drew


def empty_usage() -> Usage:
    """A run's `usage` before any call: every count zero, no errors."""
    return Usage(policy_tokens=0, policy_calls=0, prm_calls=0, prm_steps=0, errors=[])


def merge_usage(left: Mapping[str, Any] | None, right: Mapping[str, Any] | None) -> dict[str, Any]:
    """Reducer: add usage counters written by different nodes."""
    merged: dict[str, Any] = dict(left or {})
    for key, value in (right or {}).items():
        if isinstance(value, list):
            merged[key] = [*merged.get(key, []), *value]
        else:
            merged[key] = merged.get(key, 0) + value
    return merged


class StrategyInput(TypedDict, total=False):
    """What a strategy graph accepts: a problem, or chat messages whose last human turn is one."""

    problem: str | None
    messages: Annotated[list[AnyMessage], add_messages]


class StrategyOutput(TypedDict, total=False):
    """What a strategy graph returns to its caller (and nothing else)."""

    answer: str | None
    solution: str
    candidates: list[Candidate]
    usage: Annotated[Usage, merge_usage]
    messages: Annotated[list[AnyMessage], add_messages]


class StrategyState(StrategyInput, StrategyOutput, total=False):
    """Internal state every strategy shares; strategies extend it."""

    task: str  # the problem this run solves (`problem` is cleared once read: threads)
    settings: dict[str, Any]  # this run's resolved settings, checkpointed with the search
