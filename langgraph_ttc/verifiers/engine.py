"""Engine plumbing the vLLM-backed verifiers share.

One engine per model: a PRM either starts its own `AsyncLLM` (pooling runner for classifier
PRMs, generative runner for token-probability PRMs) through `langgraph_ttc.engine.start_engine`,
the same start-up path as `VLLMPolicy`, or borrows the engine of a `VLLMPolicy` on the same
model.

Memory split when a policy and a PRM engine run side by side:
- GPU: `EngineSettings(gpu_memory_utilization=0.45)` for each of the two engines (vLLM's
  default of 0.92 is per engine, so two defaults do not fit).
- CPU: each engine reserves `EngineSettings.kv_cache_gib` of RAM for its KV cache (default: an
  eighth of available memory, 1 to 4 GiB); model weights come on top. A PRM scoring short
  solutions needs little: 1 GiB is plenty for small batches.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from langgraph_ttc.engine import (
    EngineDiedError,
    EngineError,
    EngineSettings,
    EngineStartError,
    StartOnce,
    build_engine_args,
    probe_next_token,
    start_engine,
)
from langgraph_ttc.errors import PRMError, VerifierEngineDiedError
from langgraph_ttc.logs import output_note

log = logging.getLogger(__name__)
T = TypeVar("T")


class ContextLengthError(PRMError, ValueError):
    """A candidate's scoring prompt is longer than the PRM's context window.

    Truncation policy: the vLLM PRMs never cut text silently (a cut solution would be scored as
    something else); they raise this for the candidate. Strategies retry candidates one at a
    time after a failed batch, so only the over-long candidate loses its score.
    """


def check_score(value: float, where: str) -> float:
    """A finite probability; NaN / inf / out-of-range values are rejected, float noise clipped."""
    value = float(value)
    if not math.isfinite(value) or value < -1e-6 or value > 1 + 1e-6:
        raise PRMError(f"{where}: score {value!r} is not a probability in [0, 1]")
    return min(1.0, max(0.0, value))


def two_way_probability(logprob_a: float, logprob_b: float) -> float:
    """softmax([a, b])[0] from two log-probabilities (or logits), stable for large gaps."""
    if logprob_a == -math.inf and logprob_b == -math.inf:
        raise PRMError("both label tokens have probability 0")
    diff = logprob_b - logprob_a
    if diff > 0:
        e = math.exp(-diff)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(diff))


async def bounded_gather(
    factories: Iterable[Callable[[], Awaitable[T]]], limit: asyncio.Semaphore
) -> list[T]:
    """Run coroutines concurrently (the engine batches them) with at most `limit` in flight."""

    async def run(factory: Callable[[], Awaitable[T]]) -> T:
        async with limit:
            return await factory()

    return list(await asyncio.gather(*(run(f) for f in factories)))


@dataclass
class Probe:
    """Log-probabilities of chosen next tokens after a prompt, and the prefix-cache hits."""

    logprobs: list[float]
    prompt_tokens: int
    cached_tokens: int


class EngineHandle:
    """Owns one `AsyncLLM` (started lazily, in a thread) or borrows a started `VLLMPolicy`'s.

    `runner="pooling"` starts vLLM's pooling runner (classifier PRMs); "generate" the
    generative runner. Extra keyword arguments go to `AsyncEngineArgs` (e.g. `pooler_config`).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        settings: EngineSettings | None = None,
        runner: str = "generate",
        engine_from: Any = None,
        **engine_args: Any,
    ) -> None:
        if model is None and engine_from is None:
            raise ValueError("give a model path / id, or engine_from=<a VLLMPolicy>")
        self.model_ref = model
        self.settings = settings or EngineSettings()
        self.runner = runner
        self.engine_from = engine_from
        self.engine_args = engine_args
        self.engine: Any = None
        self.tokenizer: Any = None
        self.startup_seconds: float | None = None
        self.output_log: Path | None = None  # where the engine processes write, when quiet
        self._start_once = StartOnce()
        self._limit: asyncio.Semaphore | None = None
        self._ids = itertools.count()
        self._prefix = f"prm-{uuid.uuid4().hex[:8]}"  # never collides with a shared engine's ids

    @property
    def max_model_len(self) -> int:
        if self.engine_from is not None:
            return int(self.engine_from.settings.max_model_len)
        return int(self.settings.max_model_len)

    def request_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def encode(self, ids: list[int], params: Any) -> Any:
        """The pooled rows of one prompt on a pooling engine (vLLM's `encode` with
        `PoolingParams`); a failed request raises PRMError."""
        # vLLM (and torch) load only when an engine is used
        from vllm.v1.engine.exceptions import EngineDeadError

        final: Any = None
        try:
            async for output in self.engine.encode(
                {"prompt_token_ids": ids}, params, self.request_id()
            ):
                final = output
        except EngineDeadError as exc:
            raise VerifierEngineDiedError(
                f"the verifier's vLLM engine died: {exc}{output_note(self.output_log)}"
            ) from exc
        if final is None or getattr(final, "error", None) is not None:
            raise PRMError(f"pooling request failed: {getattr(final, 'error', 'no output')}")
        return final.outputs.data

    def limit(self, max_concurrency: int) -> asyncio.Semaphore:
        """The bound on this engine's requests in flight (made in the running event loop)."""
        if self._limit is None:
            self._limit = asyncio.Semaphore(max_concurrency)
        return self._limit

    async def start(self) -> None:
        if self.engine is not None:
            return
        if self.engine_from is not None:
            await self.engine_from.start()
            self.engine, self.tokenizer = self.engine_from.engine, self.engine_from.tokenizer
            return
        await self._start_once.run(lambda: self.engine is not None, self._start)

    def build_args(self, model: str, on_cpu: bool) -> dict[str, Any]:
        """The `AsyncEngineArgs` keywords `start()` uses for `model` (pure: easy to inspect)."""
        return build_engine_args(
            model, self.settings, on_cpu, runner=self.runner, **self.engine_args
        )

    def _start(self) -> None:
        try:
            started = start_engine(
                self.model_ref, self.settings, runner=self.runner, **self.engine_args
            )
        except EngineStartError as exc:
            raise PRMError(str(exc)) from exc
        self.tokenizer = started.tokenizer
        self.engine = started.engine
        self.startup_seconds = started.startup_seconds
        self.output_log = started.output_log

    def shutdown(self) -> None:
        """Stop an owned engine (a borrowed one belongs to its policy); safe to call twice."""
        engine, self.engine = self.engine, None
        if engine is not None and self.engine_from is None:
            engine.shutdown()

    async def probe(self, prompt_token_ids: Sequence[int], token_ids: Sequence[int]) -> Probe:
        """Next-token log-probabilities of `token_ids` after the prompt (generative runner)."""
        try:
            logprobs, cached = await probe_next_token(
                self.engine, prompt_token_ids, token_ids, self.request_id()
            )
        except EngineDiedError as exc:
            raise VerifierEngineDiedError(f"{exc}{output_note(self.output_log)}") from exc
        except EngineError as exc:
            raise PRMError(str(exc)) from exc
        return Probe(logprobs, len(prompt_token_ids), cached)


class OnEngine:
    """A verifier (or feature reader) running on an `EngineHandle`: its lifecycle is the
    handle's (`start` is each class's own: what it sets up before the engine starts)."""

    handle: EngineHandle

    @property
    def startup_seconds(self) -> float | None:
        return self.handle.startup_seconds

    def shutdown(self) -> None:
        """Stop an engine this verifier started (a borrowed one belongs to its policy)."""
        self.handle.shutdown()
