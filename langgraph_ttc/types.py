"""Backend contract types and the state schemas strategies share.

Everything in graph state is a plain dict / list / str / number so it round-trips through any
LangGraph checkpointer; engine objects never enter state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to sample from; `n` completions share it."""

    messages: Sequence[Mapping[str, str]]
    prefix: str = ""  # partial assistant text, continued verbatim
    n: int = 1
    max_tokens: int = 1024
    temperature: float = 0.8
    top_p: float = 1.0
    stop: Sequence[str] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    """One sampled continuation (the prefix is not repeated)."""

    text: str  # includes the matched stop string
    finish_reason: str  # "stop" (EOS or a stop string) | "length"
    stop_reason: str | None  # the matched stop string; None for EOS / length
    num_tokens: int
    logprob: float | None = None  # cumulative, when available


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


@dataclass
class Usage:
    """Compute spent by one run; `policy_tokens` counts generated tokens only."""

    policy_tokens: int = 0
    policy_calls: int = 0
    prm_calls: int = 0
    prm_steps: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy_tokens": self.policy_tokens,
            "policy_calls": self.policy_calls,
            "prm_calls": self.prm_calls,
            "prm_steps": self.prm_steps,
            "errors": list(self.errors),
        }


class Candidate(TypedDict):
    """One candidate solution as it appears in graph state and output."""

    id: int
    text: str
    answer: str | None
    score: float  # aggregated step scores
    step_scores: list[float]
    num_tokens: int
    finish_reason: str
    error: NotRequired[str]
    group: NotRequired[int]  # DVTS: the subtree the candidate grew in


def merge_usage(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
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

    problem: str
    messages: Annotated[list[AnyMessage], add_messages]


class StrategyOutput(TypedDict, total=False):
    """What a strategy graph returns to its caller (and nothing else)."""

    answer: str | None
    solution: str
    candidates: list[Candidate]
    usage: Annotated[dict[str, Any], merge_usage]
    messages: Annotated[list[AnyMessage], add_messages]


class StrategyState(StrategyInput, StrategyOutput, total=False):
    """Internal state every strategy shares; strategies extend it."""
