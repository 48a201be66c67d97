"""What a backend can do beyond the `Policy` / `PRM` contract, as protocols.

`Policy.generate` and `PRM.score` are all a strategy needs. Some backends can do more, and
callers that use more ask with `isinstance(backend, Capability)` against these
`runtime_checkable` protocols (structural typing, as for `Policy` and `PRM`: a backend has a
capability by having its members; nothing to inherit):

- `ManagedLifecycle` (`start()`, `shutdown()`, `startup_seconds`): `VLLMPolicy`,
  `OpenAIPolicy`, the vLLM verifiers, `LearnedVerifier`, `LLMJudgePRM`;
- `AsyncCloseable` (`aclose()`): `OpenAIPolicy`;
- `DeclaresPrefixSupport` (`supports_prefix`): every shipped policy;
- `ExplainsNoPrefix` (`no_prefix_reason`): `ChatModelPolicy`;
- `NextTokenLogprobs` (`next_token_logprobs(requests, tokens)`): `VLLMPolicy`, `OpenAIPolicy`;
- `ReportsLoad` (`capacity`, `sequences_in_flight`): `VLLMPolicy`;
- `ReportsEngineStats` (`engine_counts()`, `engine_tokens()`): `VLLMPolicy`;
- `ChecksHealth` (`check_health()`): `VLLMPolicy`.

A policy that declares nothing about prefixes is taken to continue them (the `Policy` contract
asks it to).

`run_key(key)` names the run that backend calls in a block belong to (the endpoint names each
search), so a backend behind a load balancer can send one run's requests to one replica
(`OpenAIPolicy` sends it as the `X-TTC-Run` header).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from langgraph_ttc.engine import EngineCounts, EngineTokens
from langgraph_ttc.types import GenerationRequest


@runtime_checkable
class ManagedLifecycle(Protocol):
    """A backend that starts something (an engine, a connection) and stops it.

    `start()` is idempotent and may take minutes (an engine start): call it before any timed
    call. `shutdown()` stops what `start()` started; safe to call twice."""

    @property
    def startup_seconds(self) -> float | None:
        """How long the start took (None before it ran, or when unknown)."""
        ...

    async def start(self) -> None: ...

    def shutdown(self) -> None: ...


@runtime_checkable
class AsyncCloseable(Protocol):
    """A backend holding connections that closing from the event loop releases."""

    async def aclose(self) -> None: ...


@runtime_checkable
class DeclaresPrefixSupport(Protocol):
    """A policy that says whether it continues `GenerationRequest.prefix` verbatim (step
    searches need it)."""

    @property
    def supports_prefix(self) -> bool: ...


@runtime_checkable
class ExplainsNoPrefix(Protocol):
    """A policy that says why it cannot continue a prefix (None when it can)."""

    @property
    def no_prefix_reason(self) -> str | None: ...


@runtime_checkable
class NextTokenLogprobs(Protocol):
    """A policy that reads next-token log-probabilities without sampling (`LLMJudgePRM`)."""

    async def next_token_logprobs(
        self, requests: Sequence[GenerationRequest], tokens: Sequence[str]
    ) -> list[dict[str, float]]:
        """For each request's rendered prompt, the log-probability that the next token is the
        first token of each string in `tokens`."""
        ...


@runtime_checkable
class ReportsLoad(Protocol):
    """A policy that counts the samples it is generating, and knows how many its engine
    schedules at once (an evaluation admits problems by it)."""

    @property
    def capacity(self) -> int | None:
        """The most sequences the engine schedules at once (None: unknown)."""
        ...

    @property
    def sequences_in_flight(self) -> int: ...


@runtime_checkable
class ReportsEngineStats(Protocol):
    """A policy that reads its engine's scheduler counts and token totals."""

    def engine_counts(self) -> EngineCounts | None: ...

    def engine_tokens(self) -> EngineTokens | None: ...


@runtime_checkable
class ChecksHealth(Protocol):
    """A backend that can tell, cheaply and without starting anything, that it cannot serve
    (its engine died): `check_health()` raises then."""

    async def check_health(self) -> None: ...


def supports_prefix(policy: object) -> bool:
    """Whether `policy` continues a prefix: what it declares, else yes (the contract)."""
    return policy.supports_prefix if isinstance(policy, DeclaresPrefixSupport) else True


def no_prefix_reason(policy: object) -> str | None:
    """Why `policy` cannot continue a prefix, when it says so; else None."""
    return policy.no_prefix_reason if isinstance(policy, ExplainsNoPrefix) else None


async def start_backend(backend: object) -> float | None:
    """Start `backend` if it has a lifecycle; its start-up seconds when it says."""
    if not isinstance(backend, ManagedLifecycle):
        return None
    await backend.start()
    return backend.startup_seconds


def shutdown_backend(backend: object) -> None:
    """Stop what `backend` started, if it has a lifecycle."""
    if isinstance(backend, ManagedLifecycle):
        backend.shutdown()


_run_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "langgraph_ttc_run_key", default=None
)


@contextmanager
def run_key(key: str) -> Iterator[None]:
    """Backend calls made in this block (and in tasks it starts, e.g. a graph run) belong to
    the run `key`."""
    token = _run_key.set(key)
    try:
        yield
    finally:
        _run_key.reset(token)


def current_run_key() -> str | None:
    """The run the current backend call belongs to (None outside `run_key`)."""
    return _run_key.get()
