"""`ChatModelPolicy`: any LangChain chat model as a `Policy`.

Requests become chat messages. `n` samples use the model's own `n` where it has one
(`ChatOpenAI`, `ChatHuggingFace`), else concurrent calls seeded seed, seed+1, ... Chat APIs
drop the matched stop string; it is put back into the text and reported as `stop_reason`, so
step searches can tell a step boundary from the end of a solution.

A prefix (partial assistant message) is continued only where the backend can:
`continuation="vllm"` sends it as the last assistant message with vLLM's
`continue_final_message` (through `extra_body`). Without it the policy refuses prefixes, and
step searches refuse the policy (`require_prefix_support`); best-of-N and self-refinement work.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from langchain_core.outputs import ChatGeneration

from langgraph_ttc.errors import PolicyError
from langgraph_ttc.policies.base import (
    GenerationMeter,
    gather_or_cancel,
    refuse_confidences,
    validate_requests,
)
from langgraph_ttc.policies.replies import estimate_tokens, max_text_chars
from langgraph_ttc.types import Completion, GenerationRequest

log = logging.getLogger(__name__)

Continuation = Literal["auto", "vllm", "none"]
# Keys chat integrations use for the stop sequence that ended a generation.
_STOP_KEYS = ("stop_reason", "stop_sequence", "matched_stop")
_CONNECTION_ERRORS = {"APIConnectionError", "APITimeoutError", "ConnectError", "ConnectTimeout"}
# finish reasons (lowercased) of a reply cut by max_tokens, and of one the provider withheld;
# any other reason is an ordinary end ("stop")
_LENGTH = {"length", "max_tokens"}
_WITHHELD = {"content_filter", "safety", "refusal", "prohibited_content", "blocklist"}
_NO_CAP = 2**31


def is_vllm_openai_client(model: BaseChatModel) -> bool:
    """A `ChatOpenAI` pointed at a server other than api.openai.com (assumed vLLM)."""
    if type(model).__name__ not in ("ChatOpenAI", "AzureChatOpenAI"):
        return False
    base = getattr(model, "openai_api_base", None)
    return bool(base) and "api.openai.com" not in str(base)


class ChatModelPolicy:
    """Policy over a LangChain `BaseChatModel`.

    >>> from langchain_openai import ChatOpenAI
    >>> policy = ChatModelPolicy(ChatOpenAI(base_url="http://127.0.0.1:8000/v1", model=name))

    `continuation`: "vllm" continues prefixes through vLLM's chat API; "none" refuses them;
    "auto" (default) is "vllm" for a `ChatOpenAI` with a custom `base_url`, else "none".
    `max_concurrency` bounds the model calls in flight from this object.
    """

    def __init__(
        self,
        model: BaseChatModel,
        *,
        max_concurrency: int = 16,
        continuation: Continuation = "auto",
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if continuation not in ("auto", "vllm", "none"):
            raise ValueError(f"continuation must be auto, vllm or none, got {continuation!r}")
        if continuation == "auto":
            continuation = "vllm" if is_vllm_openai_client(model) else "none"
        self.model = model
        self.continuation = continuation
        self.max_concurrency = max_concurrency
        fields = set(type(model).model_fields)
        self._fields = fields
        self.native_n = "n" in fields
        self._semaphore: asyncio.Semaphore | None = None

    @property
    def supports_prefix(self) -> bool:
        return self.continuation == "vllm"

    @property
    def no_prefix_reason(self) -> str | None:
        if self.supports_prefix:
            return None
        return (
            f"continuation='none': {type(self.model).__name__} is not known to continue a "
            "partial assistant message; pass continuation='vllm' if it talks to a vLLM server"
        )

    def _limit(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        return self._semaphore

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        validate_requests(requests)
        refuse_confidences(requests, "ChatModelPolicy")
        for request in requests:
            if request.prefix and not self.supports_prefix:
                raise ValueError(
                    f"this ChatModelPolicy cannot continue a prefix ({self.no_prefix_reason})"
                )
        meter = GenerationMeter(sequences=sum(r.n for r in requests))
        results = await gather_or_cancel(self._sample(r, meter) for r in requests)
        meter.report(force=True)
        return results

    def messages(self, request: GenerationRequest) -> list[BaseMessage]:
        messages = convert_to_messages([dict(m) for m in request.messages])
        if request.prefix:
            messages.append(AIMessage(content=request.prefix))
        return messages

    def call_kwargs(self, request: GenerationRequest, n: int, seed: int | None) -> dict[str, Any]:
        """Per-call sampling options, for the ones this model declares (others may reject
        unknown keywords); vLLM options go in `extra_body`."""
        wanted: dict[str, Any] = {
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
            "seed": seed,
            "logprobs": True,  # token counts per sample, where the API gives them
        }
        if self.native_n:
            wanted["n"] = n
        kwargs = {k: v for k, v in wanted.items() if k in self._fields and v is not None}
        if self.continuation == "vllm":
            extra: dict[str, Any] = {"include_stop_str_in_output": True}
            if request.prefix:
                extra |= {"continue_final_message": True, "add_generation_prompt": False}
            kwargs["extra_body"] = extra
        return kwargs

    async def _sample(self, request: GenerationRequest, meter: GenerationMeter) -> list[Completion]:
        if self.native_n:
            calls = [(request.n, request.seed)]
        else:
            seeds = [None if request.seed is None else request.seed + i for i in range(request.n)]
            calls = [(1, seed) for seed in seeds]
        batches = await gather_or_cancel(self._call(request, n, seed, meter) for n, seed in calls)
        completions = [c for batch in batches for c in batch]
        if len(completions) != request.n:
            raise PolicyError(
                f"{type(self.model).__name__} returned {len(completions)} samples for n={request.n}"
            )
        return completions

    async def _call(
        self, request: GenerationRequest, n: int, seed: int | None, meter: GenerationMeter
    ) -> list[Completion]:
        stop = list(request.stop) or None
        async with self._limit():
            try:
                result = await self.model.agenerate(
                    [self.messages(request)], stop=stop, **self.call_kwargs(request, n, seed)
                )
            except Exception as exc:
                if _is_unreachable(exc):
                    raise PolicyError(
                        f"{type(self.model).__name__} cannot reach its model server: {exc}"
                    ) from exc
                raise
        generations = result.generations[0] if result.generations else []
        if len(generations) != n:
            raise PolicyError(
                f"{type(self.model).__name__} returned {len(generations)} samples for n={n}"
            )
        completions = [
            to_completion(g, request.stop, len(generations), request.max_tokens)  # type: ignore[arg-type]
            for g in generations
        ]
        meter.add(completions)
        return completions


def _is_unreachable(exc: BaseException) -> bool:
    """A connection failure anywhere in the exception chain (any HTTP client library)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) or type(seen).__name__ in _CONNECTION_ERRORS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def to_completion(
    generation: ChatGeneration,
    stops: Sequence[str],
    share: int = 1,
    max_tokens: int | None = None,
) -> Completion:
    """A `Completion` from one chat generation: the stop string restored, the token count from
    the logprobs, else the usage split over the `share` samples of one call, else estimated
    from the text (`estimate_tokens`), clipped to `max_tokens`. An empty or tool-call-only
    reply, or one the provider withheld (content filter), is a failed sample with a reason."""
    message = generation.message
    text = message.content if isinstance(message.content, str) else message.text
    if not isinstance(text, str):
        raise PolicyError(f"the chat model sent a {type(text).__name__} as the text")
    if max_tokens is not None and len(text) > max_text_chars(max_tokens):
        raise PolicyError(
            f"the chat model sent {len(text)} characters for max_tokens={max_tokens} "
            f"(at most {max_text_chars(max_tokens)})"
        )
    info: dict[str, Any] = {**message.response_metadata, **(generation.generation_info or {})}
    tokens = _num_tokens(message, info, share, text, max_tokens)
    finish = str(info.get("finish_reason") or info.get("stop_reason") or "stop").lower()
    failure = _failure(message, text, finish)
    if failure is not None:
        return Completion("", "stop", None, tokens, error=failure)
    if finish in _LENGTH:
        return Completion(text, "length", None, tokens, _logprob(info))
    stop_reason = next((s for s in stops if text.endswith(s)), None)  # the backend kept it
    if stop_reason is None:
        named = next((info[k] for k in _STOP_KEYS if isinstance(info.get(k), str)), None)
        if named in stops:
            stop_reason, text = named, text + named
    return Completion(text, "stop", stop_reason, tokens, _logprob(info))


def _failure(message: BaseMessage, text: str, finish: str) -> str | None:
    """Why a reply holds no usable text (None: it does)."""
    if finish in _WITHHELD:
        return f"the chat model withheld the reply (finish_reason {finish[:40]!r})"
    if text.strip():
        return None
    if getattr(message, "tool_calls", None) or getattr(message, "invalid_tool_calls", None):
        return "the chat model replied with a tool call and no text"
    return "the chat model sent an empty reply"


def _token_logprobs(info: Mapping[str, Any]) -> list[float] | None:
    logprobs = info.get("logprobs")
    if not (isinstance(logprobs, Mapping) and isinstance(logprobs.get("content"), list)):
        return None
    values = []
    for token in logprobs["content"]:
        value = token.get("logprob") if isinstance(token, Mapping) else "not a mapping"
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PolicyError(f"the chat model sent a logprob of type {type(value).__name__}")
        if not (math.isfinite(value) and value <= 0):
            raise PolicyError(f"the chat model sent the logprob {value!r} (not finite and <= 0)")
        values.append(float(value))
    return values


def _num_tokens(
    message: BaseMessage, info: Mapping[str, Any], share: int, text: str, max_tokens: int | None
) -> int:
    """Tokens one sample generated: the logprobs' count, else its share of the reported usage,
    else (none reported, or 0 for a text) estimated from the text; at most `max_tokens`."""
    cap = max_tokens if max_tokens is not None else _NO_CAP
    logprobs = _token_logprobs(info)
    if logprobs is not None and len(logprobs) > cap:
        raise PolicyError(f"the chat model sent {len(logprobs)} logprobs for max_tokens={cap}")
    reported = len(logprobs) if logprobs is not None else _reported_usage(message, share, cap)
    if not reported and text:
        reported = estimate_tokens(text)
    return min(cap, reported or 0)


def _reported_usage(message: BaseMessage, share: int, cap: int) -> int | None:
    """This sample's share of the reported output tokens (None: none reported); a negative,
    non-integer or impossible count (more than the call could generate) is a PolicyError."""
    usage = getattr(message, "usage_metadata", None)
    if not usage or "output_tokens" not in usage:
        return None
    count = usage["output_tokens"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise PolicyError(f"the chat model reported output_tokens={str(count)[:40]}")
    if count > cap * max(share, 1):
        raise PolicyError(
            f"the chat model reported output_tokens={count} for {share} samples of at most "
            f"{cap} tokens"
        )
    return round(count / max(share, 1))


def _logprob(info: Mapping[str, Any]) -> float | None:
    logprobs = _token_logprobs(info)
    return float(math.fsum(logprobs)) if logprobs else None
