"""Streamed completions (server-sent events) of an OpenAI-compatible server, read chunk by chunk.

`OpenAIPolicy` streams the samples of a request that carries a `ConfidenceStop` rule: each
chunk is validated as a `CompletionChunk` (the same strict models as a whole reply), its tokens'
confidences computed as they arrive, and the rule applied by the `StopMonitor` `VLLMPolicy`
uses. When the rule fires the caller closes the stream, which makes the server abort the
request. The whole stream holds at most `max_stream_bytes`; an event that is not JSON, an
error event or a malformed chunk is a `PolicyError` naming the URL (never the body).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from langgraph_ttc.confidence import StopMonitor, token_confidence
from langgraph_ttc.errors import PolicyError
from langgraph_ttc.policies.replies import (
    ChoiceLogprobs,
    CompletionChoice,
    CompletionChunk,
    describe,
)
from langgraph_ttc.types import GenerationRequest

DONE = b"[DONE]"  # the OpenAI API's last event


class EventParser:
    """Server-sent events from bytes as they arrive: `feed` returns the data of every event
    completed (its `data:` lines joined); comments and other fields are ignored."""

    def __init__(self) -> None:
        self.buffer = b""
        self.data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        self.buffer += chunk
        if b"\n" not in chunk:
            return []
        *lines, self.buffer = self.buffer.split(b"\n")
        return [event for line in lines if (event := self._line(line.rstrip(b"\r"))) is not None]

    def _line(self, line: bytes) -> bytes | None:
        if not line:  # a blank line ends an event
            data, self.data = self.data, []
            return b"\n".join(data) if data else None
        name, _, value = line.partition(b":")
        if name == b"data":
            self.data.append(value.removeprefix(b" "))
        return None


async def stream_choices(
    chunks: AsyncIterator[bytes], limit: int, url: str
) -> AsyncIterator[CompletionChoice]:
    """The choices of a streamed reply's chunks, validated, up to `[DONE]` (at most `limit`
    bytes in all)."""
    parser, size = EventParser(), 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PolicyError(
                f"{url} streamed more than {limit} bytes for one sample (see max_stream_bytes)"
            )
        for data in parser.feed(chunk):
            if data.strip() == DONE:
                return
            for choice in parse_chunk(data, url).choices:
                yield choice


def parse_chunk(data: bytes, url: str) -> CompletionChunk:
    """One event's data as a `CompletionChunk`; an error event (vLLM sends one when the
    request fails mid-stream) or anything malformed is a PolicyError."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise PolicyError(
            f"{url} streamed a chunk that is not JSON ({type(error).__name__})"
        ) from None
    if isinstance(value, dict) and value.get("error") is not None:
        raise PolicyError(f"{url} reported an error mid-stream: {_error_message(value['error'])}")
    try:
        return CompletionChunk.model_validate(value)
    except ValidationError as error:
        raise PolicyError(f"{url} streamed a malformed chunk: {describe(error)}") from None


def _error_message(error: Any, most: int = 300) -> str:
    message = error.get("message") if isinstance(error, dict) else error
    return str(message)[:most]


class StreamedSample:
    """One sample (a request with n=1) assembled from its streamed choices: text, token ids,
    logprobs, and with `top_logprobs` its token confidences, which the request's stop rule
    watches (the whole chunk in which it fires is kept, as `VLLMPolicy` keeps its delta)."""

    def __init__(self, request: GenerationRequest, url: str):
        self.url = url
        self.k = request.top_logprobs
        rule = request.confidence_stop
        self.monitor = None if rule is None or not self.k else StopMonitor(rule)
        self.texts: list[str] = []
        self.token_ids: list[int] = []
        self.tokens: list[str] = []
        self.token_logprobs: list[float | None] = []
        self.top_logprobs: list[dict[str, float] | None] = []
        self.last: CompletionChoice | None = None  # the chunk that finished the sample

    @property
    def stopped(self) -> bool:
        return self.monitor is not None and self.monitor.stopped

    def add(self, choice: CompletionChoice) -> bool:
        """Take one chunk's choice; True once the sample has ended (finished, or stopped by
        the rule)."""
        if choice.index != 0:
            raise PolicyError(f"{self.url} streamed choice {choice.index} for one sample")
        self.texts.append(choice.text)
        self.token_ids.extend(choice.token_ids or ())
        logprobs = choice.logprobs or ChoiceLogprobs()
        self.tokens.extend(logprobs.tokens or ())
        self.token_logprobs.extend(logprobs.token_logprobs or ())
        if self.k and logprobs.top_logprobs is None and (logprobs.tokens or choice.token_ids):
            raise PolicyError(f"{self.url} streamed tokens without the top log-probabilities")
        if self._watch(logprobs.top_logprobs):
            return True
        if choice.finish_reason is not None:
            self.last = choice
            return True
        return False

    def _watch(self, positions: list[dict[str, float] | None] | None) -> bool:
        """Record the positions' top logprobs; True when the rule fires at one of them."""
        if positions is None:
            return False
        self.top_logprobs.extend(positions)
        if self.monitor is None:
            return False
        confidences = (token_confidence((top or {}).values(), self.k or 0) for top in positions)
        return any(self.monitor.push(confidence) for confidence in confidences)

    def choice(self) -> CompletionChoice:
        """The sample as one choice of a whole reply (finish_reason None when the rule stopped
        it); a stream that ended before its sample did is a PolicyError."""
        last = self.last
        if last is None and not self.stopped:
            raise PolicyError(f"{self.url} ended the stream before the sample finished")
        logprobs = ChoiceLogprobs.model_construct(
            tokens=self.tokens,
            token_logprobs=self.token_logprobs,
            top_logprobs=self.top_logprobs if self.k else None,
        )
        fields: dict[str, Any] = {
            "index": 0,
            "text": "".join(self.texts),
            "finish_reason": None if last is None else last.finish_reason,
            "logprobs": logprobs,
            "token_ids": self.token_ids or None,
        }
        if last is not None and "stop_reason" in last.model_fields_set:
            fields["stop_reason"] = last.stop_reason  # as a whole reply would say it
        return CompletionChoice.model_construct(**fields)
