"""What every policy backend shares: request checks, progress reports, the prefix capability."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

from langgraph_ttc import progress
from langgraph_ttc.backends import no_prefix_reason, supports_prefix
from langgraph_ttc.errors import ConfidenceUnavailableError
from langgraph_ttc.types import Completion, GenerationRequest

T = TypeVar("T")
TOKEN_ID_LIMIT = 2**31  # token ids are int32 in every engine
MAX_TOP_LOGPROBS = 20  # vLLM's default max_logprobs, and the OpenAI API's limit


def validate_requests(requests: Sequence[GenerationRequest]) -> None:
    """The checks `VLLMPolicy.generate` makes, so every backend rejects the same requests."""
    for request in requests:
        if request.n < 1 or request.max_tokens < 1:
            raise ValueError(f"invalid request: n={request.n}, max_tokens={request.max_tokens}")
        if request.temperature == 0 and request.n > 1:
            raise ValueError("temperature 0 with n > 1 would return identical samples")
        check_token_ids(request.prefix_token_ids)
        k = request.top_logprobs
        if k is not None and not 1 <= k <= MAX_TOP_LOGPROBS:
            raise ValueError(f"top_logprobs must be in 1..{MAX_TOP_LOGPROBS}, got {k}")
        if request.confidence_stop is not None and k is None:
            raise ValueError("a confidence_stop rule needs top_logprobs (the k of its confidence)")


def check_token_ids(ids: Sequence[int] | None) -> None:
    """`prefix_token_ids`: None, or token ids (ints in [0, 2**31))."""
    if ids is None:
        return
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise ValueError(f"prefix_token_ids must be a sequence of token ids, got {type(ids)}")
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < TOKEN_ID_LIMIT:
            raise ValueError(
                f"prefix_token_ids holds {str(i)[:30]!r}: token ids are ints in [0, 2**31)"
            )


def single_samples(request: GenerationRequest) -> list[GenerationRequest]:
    """A request as `n` requests of one sample each (sample i gets seed + i, as vLLM seeds the
    samples of one request): a stop rule stops one sample, so each runs on its own."""
    return [
        replace(request, n=1, seed=None if request.seed is None else request.seed + i)
        for i in range(request.n)
    ]


def refuse_confidences(requests: Sequence[GenerationRequest], backend: str) -> None:
    """What a backend without token log-probabilities does with a request that asks for them."""
    if any(r.top_logprobs is not None or r.confidence_stop is not None for r in requests):
        raise ConfidenceUnavailableError(
            f"{backend} cannot give token log-probabilities, which confidence-based "
            "strategies and selections (deepconf, selection='confidence' or 'self_certainty') "
            "need; use VLLMPolicy or OpenAIPolicy"
        )


def render_chat(tokenizer: Any, request: GenerationRequest) -> str:
    """Chat-template text of the conversation with the assistant turn opened, then the prefix
    appended byte-for-byte (templates' `continue_final_message` may trim it), so a continued
    step search reuses the same prompt bytes and hits the prefix cache."""
    text = tokenizer.apply_chat_template(
        [dict(m) for m in request.messages], tokenize=False, add_generation_prompt=True
    )
    return str(text) + request.prefix


def require_prefix_support(policy: Any, strategy_name: str) -> None:
    """Refuse, at build time, a step search over a policy that cannot continue a partial
    solution (each step is sampled as a continuation of the steps kept so far)."""
    if not supports_prefix(policy):
        raise ValueError(
            f"{strategy_name} continues partial solutions step by step, but "
            f"{type(policy).__name__} cannot continue a prefix"
            f"{_why_no_prefix(policy)}. Use best_of_n or self_refine with this policy, or a "
            "backend that can continue an assistant message (VLLMPolicy, OpenAIPolicy, or "
            "ChatModelPolicy over a vLLM server with continuation='vllm')."
        )


def _why_no_prefix(policy: Any) -> str:
    reason = no_prefix_reason(policy)
    return f" ({reason})" if reason else ""


def prompt_ids(tokenizer: Any, request: GenerationRequest) -> list[int]:
    """The token ids to send for a request's rendered prompt (chat template + prefix).

    With `prefix_token_ids` (the prefix as the policy generated it) they follow the chat
    template's ids instead of the prefix re-tokenized: re-tokenizing does not give back the
    generated tokens at step boundaries (a step ending in the one token "\\n\\n" becomes
    "\\n", "\\n" once the next step follows it), which shows the model a tokenization it
    never produced and misses the prefix cache from there on. Ids that do not decode to the
    prefix are ignored (the prefix text wins).
    """
    ids = request.prefix_token_ids
    if request.prefix and ids is not None and decode(tokenizer, ids) == request.prefix:
        chat = render_chat(tokenizer, replace(request, prefix="", prefix_token_ids=None))
        return [*tokenizer.encode(chat, add_special_tokens=False), *ids]
    return list(tokenizer.encode(render_chat(tokenizer, request), add_special_tokens=False))


def generated_ids(tokenizer: Any, text: str, ids: Sequence[int]) -> tuple[int, ...] | None:
    """A completion's `token_ids`: its ids if they decode to exactly its text (not when a stop
    string ended it inside a token, nor with an end-of-sequence token), else None."""
    return tuple(ids) if text and decode(tokenizer, ids) == text else None


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return str(tokenizer.decode(list(ids), skip_special_tokens=False))


class GenerationMeter:
    """Token and sample counts of one `generate` call, reported about once a second.

    This is the single place where a backend's generation progress leaves the policy (through
    `langgraph_ttc.progress`, which strategies turn into "generation" events).
    """

    def __init__(self, sequences: int):
        self.sequences, self.tokens, self.finished = sequences, 0, 0
        self.started = self.last_report = time.perf_counter()

    def add(self, completions: Iterable[Completion]) -> None:
        for completion in completions:
            self.tokens += completion.num_tokens
            self.finished += 1
        self.report()

    def report(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_report < 1.0:
            return
        self.last_report = now
        progress.report(
            progress.GenerationProgress(
                tokens=self.tokens,
                sequences=self.sequences,
                finished=self.finished,
                seconds=now - self.started,
            )
        )


async def gather_or_cancel(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Like `asyncio.gather`, but the first failure (or a cancellation) cancels the rest, so no
    request keeps running on a server after its call has failed."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class SequenceTally:
    """The samples one caller (a task and the tasks it starts, e.g. one graph run) has in
    flight on a policy that counts them. `started`: the caller has sent a request."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.started = False


_tally: contextvars.ContextVar[SequenceTally | None] = contextvars.ContextVar(
    "langgraph_ttc_sequence_tally", default=None
)


@contextmanager
def tally_sequences(tally: SequenceTally | None = None) -> Iterator[SequenceTally]:
    """Count the samples that policy calls made in this block (and in tasks it starts) have in
    flight, for a scheduler that wants to know which of its runs are generating."""
    tally = tally if tally is not None else SequenceTally()
    token = _tally.set(tally)
    try:
        yield tally
    finally:
        _tally.reset(token)


def count_sequences(delta: int) -> None:
    """Called by a backend when samples start (+) or finish (-): updates the caller's tally."""
    tally = _tally.get()
    if tally is not None:
        tally.in_flight += delta
        tally.started = True
