"""What a backend may send: the replies of an OpenAI-compatible server, validated at the boundary.

A reply is read as bytes (at most `max_reply_bytes`), parsed as JSON and validated against the
pydantic models below (strict types: a string is not a number, null is not a text). Then the
limits that depend on the request: one choice per sample with indices 0..n-1 once each, a text
of at most `CHARS_PER_TOKEN` characters per token of `max_tokens` (plus `TEXT_SLACK`), token
lists no longer than `max_tokens`, token ids in [0, 2**31), log-probabilities finite and <= 0,
`finish_reason` one of the known values. Anything else is a `PolicyError` naming the URL and
what was wrong (never the body: it may be huge, or hold what the caller sent).

Generated tokens are counted by the policy, not taken from the server: the most of what the
reply lists (token ids, logprob tokens) and what the text tokenizes to, clipped to
`max_tokens`. Without a tokenizer the text's count is estimated as `estimate_tokens`: one token
per 4 characters, rounded up.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langgraph_ttc.errors import PolicyError

CHARS_PER_TOKEN = 64  # no token of any real vocabulary is longer
TEXT_SLACK = 256  # characters beyond CHARS_PER_TOKEN * max_tokens (a stop string, say)
TOKEN_ID_LIMIT = 2**31  # ids are int32 in every engine
BASE_REPLY_BYTES = 1 << 20  # a reply's size: this much, plus REPLY_BYTES_PER_TOKEN per token
REPLY_BYTES_PER_TOKEN = 1024  # text, logprobs and ids of one token, as JSON, with room to spare
# a streamed reply repeats its envelope (id, model, ...) in every chunk of one token
STREAM_BYTES_PER_TOKEN = 4 * REPLY_BYTES_PER_TOKEN
MAX_MODELS = 10_000  # models one server lists
CHARS_PER_TOKEN_ESTIMATE = 4  # the token count of a text when there is no tokenizer
VLLM_MINUS_INF = -9999.0  # vLLM writes -inf log-probabilities as this

# finish_reason values servers send, and what each means for a sample
FINISH_REASONS = {"stop": "stop", "eos": "stop", "length": "length"}
REFUSALS = {"content_filter"}  # the server withheld the sample: an isolated failed sample

M = TypeVar("M", bound=BaseModel)
LogProb = Annotated[float, Field(le=0.0, allow_inf_nan=False)]
TokenId = Annotated[int, Field(ge=0, lt=TOKEN_ID_LIMIT)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ChoiceLogprobs(_Strict):
    tokens: list[str] | None = None
    token_logprobs: list[LogProb | None] | None = None
    top_logprobs: list[dict[str, LogProb] | None] | None = None


class CompletionChoice(_Strict):
    index: Annotated[int, Field(ge=0)]
    text: str
    finish_reason: str | None
    stop_reason: str | int | None = None  # vLLM: the matched stop string, or a stop token id
    logprobs: ChoiceLogprobs | None = None
    token_ids: list[TokenId] | None = None  # vLLM's return_token_ids


class CompletionReply(_Strict):
    """A `/v1/completions` reply (the fields this library reads)."""

    choices: Annotated[list[CompletionChoice], Field(min_length=1)]


class CompletionChunk(_Strict):
    """One event of a streamed `/v1/completions` reply: the choices that progressed (text,
    logprobs and token ids of the new tokens; `finish_reason` on the last one). A trailing
    usage chunk has none."""

    choices: Annotated[list[CompletionChoice], Field(max_length=1)]


class ServedModel(_Strict):
    id: Annotated[str, Field(min_length=1, max_length=1000)]


class ModelList(_Strict):
    """A `/v1/models` reply."""

    data: Annotated[list[ServedModel], Field(max_length=MAX_MODELS)]


def estimate_tokens(text: str) -> int:
    """The token count of `text` without a tokenizer: one per 4 characters, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN_ESTIMATE)


def max_reply_bytes(samples: int, max_tokens: int) -> int:
    """The most bytes a reply of `samples` samples of up to `max_tokens` tokens may hold."""
    return BASE_REPLY_BYTES + samples * max_tokens * REPLY_BYTES_PER_TOKEN


def max_stream_bytes(max_tokens: int) -> int:
    """The most bytes a streamed reply of one sample of up to `max_tokens` tokens may hold."""
    return BASE_REPLY_BYTES + max_tokens * STREAM_BYTES_PER_TOKEN


def max_text_chars(max_tokens: int) -> int:
    """The longest text a sample of up to `max_tokens` tokens may have."""
    return CHARS_PER_TOKEN * max_tokens + TEXT_SLACK


def parse_reply(model: type[M], raw: bytes, content_type: str | None, url: str) -> M:
    """The reply body as `model`; a PolicyError naming the URL and what was wrong otherwise."""
    kind = (content_type or "no content type").split(";")[0].strip()
    if kind == "text/event-stream":
        raise PolicyError(f"{url} sent an event stream ({kind}), not a JSON reply")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        reason = type(error).__name__
        raise PolicyError(f"{url} sent a reply that is not JSON ({kind}, {reason})") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise PolicyError(f"{url} sent a malformed reply: {describe(error)}") from None


def describe(error: ValidationError, most: int = 3) -> str:
    """The first problems of a validation error: where and what, never the offending value."""
    problems = error.errors(include_input=False, include_url=False, include_context=False)
    parts = [f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" for p in problems[:most]]
    more = f" (+{len(problems) - most} more)" if len(problems) > most else ""
    return "; ".join(parts) + more


def ordered_choices(reply: CompletionReply, n: int, url: str) -> list[CompletionChoice]:
    """The reply's choices by index, which must be 0..n-1 once each."""
    indices = sorted(choice.index for choice in reply.choices)
    if indices != list(range(n)):
        shown = indices[:10] + (["..."] if len(indices) > 10 else [])  # type: ignore[list-item]
        raise PolicyError(
            f"{url} returned choices with indices {shown} for n={n} (expected 0..{n - 1} once each)"
        )
    return sorted(reply.choices, key=lambda choice: choice.index)


def check_choice(choice: CompletionChoice, max_tokens: int, url: str) -> None:
    """A choice's sizes against the request's `max_tokens`."""
    where = f"{url} choice {choice.index}"
    if len(choice.text) > max_text_chars(max_tokens):
        raise PolicyError(
            f"{where}: a text of {len(choice.text)} characters for max_tokens={max_tokens} "
            f"(at most {CHARS_PER_TOKEN} per token + {TEXT_SLACK})"
        )
    logprobs = choice.logprobs or ChoiceLogprobs()
    lists = {
        "token_ids": choice.token_ids,
        "logprobs.tokens": logprobs.tokens,
        "logprobs.token_logprobs": logprobs.token_logprobs,
        "logprobs.top_logprobs": logprobs.top_logprobs,
    }
    for name, values in lists.items():
        if values is not None and len(values) > max_tokens:
            raise PolicyError(f"{where}: {len(values)} {name} for max_tokens={max_tokens}")


def finish_reason(choice: CompletionChoice, url: str) -> str | None:
    """ "stop" or "length"; None for a refused sample (`REFUSALS`); PolicyError otherwise."""
    reason = choice.finish_reason
    if reason in FINISH_REASONS:
        return FINISH_REASONS[reason]
    if reason in REFUSALS:
        return None
    raise PolicyError(
        f"{url} choice {choice.index}: unknown finish_reason {str(reason)[:40]!r} "
        f"(expected one of {sorted([*FINISH_REASONS, *REFUSALS])})"
    )


def counted_tokens(reported: Sequence[int | None], text_tokens: int, max_tokens: int) -> int:
    """Generated tokens of one sample: the most of what the reply lists and what its text
    counts, clipped to `max_tokens` (a server cannot charge more than was asked for)."""
    counts = [c for c in reported if c is not None]
    return min(max_tokens, max([text_tokens, *counts]))


def summed_logprob(choice: CompletionChoice) -> float | None:
    values = (choice.logprobs.token_logprobs or []) if choice.logprobs else []
    known = [v for v in values if v is not None]
    return float(math.fsum(known)) if known else None


_TOKEN_ID_KEY = re.compile(r"token_id:(\d{1,10})")


def first_position_logprobs(reply: CompletionReply, url: str) -> dict[int, float]:
    """{token id: logprob} of the first generated position, from `return_tokens_as_token_ids`
    keys ("token_id:123"; other keys are ignored); vLLM's -9999.0 becomes -inf."""
    if len(reply.choices) != 1:
        raise PolicyError(f"{url} returned {len(reply.choices)} choices for one prompt")
    logprobs = reply.choices[0].logprobs
    top = (logprobs.top_logprobs or [None])[0] if logprobs else None
    out: dict[int, float] = {}
    for key, value in (top or {}).items():
        found = _TOKEN_ID_KEY.fullmatch(key)
        if found is not None:
            out[int(found.group(1))] = -math.inf if value <= VLLM_MINUS_INF else value
    return out
