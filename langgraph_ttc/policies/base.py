"""What every policy backend shares: request checks, progress reports, the prefix capability."""

from __future__ import annotations

import asyncio
import contextvars
import time
from array import array
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from langgraph_ttc import progress
from langgraph_ttc.types import Completion, GenerationRequest

T = TypeVar("T")


def validate_requests(requests: Sequence[GenerationRequest]) -> None:
    """The checks `VLLMPolicy.generate` makes, so every backend rejects the same requests."""
    for request in requests:
        if request.n < 1 or request.max_tokens < 1:
            raise ValueError(f"invalid request: n={request.n}, max_tokens={request.max_tokens}")
        if request.temperature == 0 and request.n > 1:
            raise ValueError("temperature 0 with n > 1 would return identical samples")


def render_chat(tokenizer: Any, request: GenerationRequest) -> str:
    """Chat-template text of the conversation with the assistant turn opened, then the prefix
    appended byte-for-byte (templates' `continue_final_message` may trim it), so a continued
    step search reuses the same prompt bytes and hits the prefix cache."""
    text = tokenizer.apply_chat_template(
        [dict(m) for m in request.messages], tokenize=False, add_generation_prompt=True
    )
    return str(text) + request.prefix


def supports_prefix(policy: Any) -> bool:
    """Whether `policy` continues `GenerationRequest.prefix` verbatim. Policies declare it with a
    `supports_prefix` attribute; one without the attribute is assumed to (the protocol asks it)."""
    return bool(getattr(policy, "supports_prefix", True))


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
    reason = getattr(policy, "no_prefix_reason", None)
    return f" ({reason})" if reason else ""


class TokenContinuations:
    """Token ids of texts the engine generated, so a continued prefix is sent as the tokens the
    model produced rather than re-tokenized.

    Re-tokenizing a prefix does not give back the generated tokens at step boundaries: a step
    ending in the token "\\n\\n" is tokenized as "\\n", "\\n" once the next step follows it, so
    every KV block from the previous boundary on misses the prefix cache and is prefilled again.
    Sending the generated ids keeps those blocks cached. A completion is remembered only when
    its ids decode to exactly its text (not when a stop string ended it inside a token, nor
    after an end-of-sequence token); the least recently used of `max_entries` texts go first.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], max_entries: int = 4096):
        self.decode, self.max_entries = decode, max_entries
        self._ids: OrderedDict[str, array[int]] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._ids)

    def lookup(self, text: str) -> list[int] | None:
        """The remembered ids of `text`, if any."""
        known = self._ids.get(text)
        if known is None:
            self.misses += 1
            return None
        self.hits += 1
        self._ids.move_to_end(text)
        return known.tolist()

    def ids(self, text: str, encode: Callable[[str], Sequence[int]]) -> list[int]:
        """The remembered ids of `text`, else `encode(text)`."""
        known = self.lookup(text)
        return list(encode(text)) if known is None else known

    def remember(
        self, prompt: str, prompt_ids: Sequence[int], text: str, token_ids: Sequence[int]
    ) -> bool:
        """Remember prompt + text as prompt_ids + token_ids if the ids decode to `text`."""
        if not text or self.decode(token_ids) != text:
            return False
        self._ids[prompt + text] = array("i", [*prompt_ids, *token_ids])
        self._ids.move_to_end(prompt + text)
        while len(self._ids) > self.max_entries:
            self._ids.popitem(last=False)
        return True


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
