"""`OpenAIPolicy`: any OpenAI-compatible completions server (`vllm serve` first) as a `Policy`.

Prompts are rendered here with the model's chat template and the partial assistant prefix is
appended verbatim, exactly as `VLLMPolicy` does, then sent to `/v1/completions` with
`add_special_tokens: false` (the template already holds the BOS). So a step search sends the
same prompt bytes every step and the server's prefix cache applies. vLLM's extensions
(`include_stop_str_in_output`, `stop_reason`, `logprob_token_ids`, `return_token_ids`) make the
results match the in-process engine's; a prefix that comes with the ids the server generated
(`prefix_token_ids`) is sent as token ids. A request with a `ConfidenceStop` rule is streamed,
one HTTP request per sample, and a sample's stream is closed (the server aborts it) the moment
the rule fires (`langgraph_ttc.policies.streams`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel

from langgraph_ttc.backends import current_run_key
from langgraph_ttc.confidence import token_confidence
from langgraph_ttc.errors import PolicyError
from langgraph_ttc.policies.base import (
    GenerationMeter,
    gather_or_cancel,
    generated_ids,
    prompt_ids,
    render_chat,
    single_samples,
    validate_requests,
)
from langgraph_ttc.policies.replies import (
    BASE_REPLY_BYTES,
    ChoiceLogprobs,
    CompletionChoice,
    CompletionReply,
    ModelList,
    check_choice,
    counted_tokens,
    finish_reason,
    first_position_logprobs,
    max_reply_bytes,
    max_stream_bytes,
    ordered_choices,
    parse_reply,
    summed_logprob,
)
from langgraph_ttc.policies.streams import StreamedSample, stream_choices
from langgraph_ttc.types import Completion, GenerationRequest

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

log = logging.getLogger(__name__)

_IMPORT_LOCK = threading.Lock()
MODEL_LIST_BYTES = 4 * BASE_REPLY_BYTES
# Sent with every request: the run it belongs to, so a load balancer hashing on it (nginx:
# `hash $http_x_ttc_run consistent;`) sends a whole search to one replica and its prefix cache.
RUN_HEADER = "X-TTC-Run"


def run_header(request: GenerationRequest) -> str:
    """The run key (`backends.run_key`), else a digest of the request's conversation: every
    request of one search shares it (only the prefix differs), so either keeps it together."""
    key = current_run_key()
    if key is None:
        conversation = json.dumps(request.messages, sort_keys=True, ensure_ascii=False)
        key = hashlib.sha256(conversation.encode()).hexdigest()[:16]
    return key


def normalize_base_url(base_url: str) -> str:
    """`http://host:8000` -> `http://host:8000/v1` (the OpenAI client wants the /v1 root)."""
    url = base_url.rstrip("/")
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


class OpenAIPolicy:
    """Policy over an OpenAI-compatible server's `/v1/completions` endpoint.

    >>> policy = OpenAIPolicy("http://127.0.0.1:8000/v1")   # the server's only model
    >>> policy = OpenAIPolicy(url, "Qwen/Qwen2.5-1.5B-Instruct", max_concurrency=256)

    `tokenizer` (a Hugging Face id or path, or a tokenizer object) renders the chat template;
    it defaults to `model`. `max_concurrency` bounds HTTP requests in flight from this object
    (each carries up to `n` samples). Each HTTP call ends within `timeout` seconds, its retries
    and the reading of its reply included. Connection errors, 408/409/429 and 5xx answers are
    retried `max_retries` times with exponential backoff (or the server's Retry-After, unless
    it ends past the deadline); then, or when the server is down or does not serve `model`, a
    `PolicyError` names the URL, the cause and the tries made. Every reply is validated
    (`langgraph_ttc.policies.replies`): a malformed one is a `PolicyError` too.
    """

    supports_prefix = True  # the prompt is rendered here, so any prefix is sent verbatim

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        tokenizer: Any = None,
        api_key: str | None = None,
        max_concurrency: int = 64,
        timeout: float = 600.0,
        max_retries: int = 3,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.tokenizer_ref = tokenizer
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.max_concurrency, self.timeout, self.max_retries = max_concurrency, timeout, max_retries
        self._client: Any = None
        self._tokenizer: Any = None if isinstance(tokenizer, str | None) else tokenizer
        self._semaphore: asyncio.Semaphore | None = None
        self._start_lock: asyncio.Lock | None = None
        self._started = False
        self.startup_seconds: float | None = None

    async def __aenter__(self) -> OpenAIPolicy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def started(self) -> bool:
        return self._started

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def client(self) -> Any:
        """The `openai.AsyncOpenAI` client (created on first use)."""
        if self._client is None:
            # the openai client is an optional extra
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                timeout=self.timeout,
                max_retries=0,  # retried here, within the call's deadline (see _with_retries)
            )
        return self._client

    async def start(self) -> None:
        """Check the server answers and serves the model, and load the tokenizer."""
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            started = time.perf_counter()
            served = await self.served_models()
            if self.model is None:
                if len(served) != 1:
                    raise PolicyError(
                        f"{self.base_url} serves {len(served)} models {served}: name one (model=)"
                    )
                self.model = served[0]
            elif self.model not in served:
                raise PolicyError(
                    f"{self.base_url} does not serve model {self.model!r}; it serves {served}"
                )
            if self._tokenizer is None:
                self._tokenizer = await asyncio.to_thread(
                    _load_tokenizer, self.tokenizer_ref or self.model
                )
            self._started = True
            self.startup_seconds = time.perf_counter() - started

    async def served_models(self) -> list[str]:
        """Model names the server lists at `/v1/models`."""
        page = await self._call("/models", None, ModelList, MODEL_LIST_BYTES)
        return [m.id for m in page.data]

    def render_prompt(self, request: GenerationRequest) -> str:
        """Chat-template text with the assistant turn opened, then the prefix verbatim."""
        if self._tokenizer is None:
            raise PolicyError("the policy is not started; await policy.start() first")
        return render_chat(self._tokenizer, request)

    def _limit(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        return self._semaphore

    async def _call(
        self, endpoint: str, body: dict[str, Any] | None, model: type[M], limit: int
    ) -> M:
        """One API call within `timeout` seconds end to end (retries and reading the reply
        included), its reply validated as `model`; every failure is a `PolicyError` (a
        request the server rejects as invalid: `ValueError`)."""
        raw, content_type = await self._within_deadline(
            endpoint, lambda: self._read(endpoint, body, limit)
        )
        return parse_reply(model, raw, content_type, self.base_url + endpoint)

    async def _within_deadline(self, endpoint: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` (one HTTP request), tried again as `_with_retries` says, all of it
        within `timeout` seconds."""
        tries = [0]
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                return await self._with_retries(endpoint, attempt, tries)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise PolicyError(
                f"{self.base_url}{endpoint} did not answer within timeout={self.timeout}s "
                f"({_tries(tries[0])} made)"
            ) from None

    async def _with_retries(
        self, endpoint: str, attempt: Callable[[], Awaitable[T]], tries: list[int]
    ) -> T:
        """Connection errors, 408/409/429 and 5xx answers are tried again, `max_retries`
        times, after an exponential backoff or the server's Retry-After; not when the wait
        would end past the deadline. `tries[0]` counts the tries made."""
        # the openai client is an optional extra
        import openai

        loop = asyncio.get_running_loop()
        ends = loop.time() + self.timeout
        while True:
            tries[0] += 1
            try:
                return await attempt()
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                wait = self._retry_wait(exc, tries[0])
                if wait is None or loop.time() + wait >= ends:
                    raise self._failure(exc, self.base_url + endpoint, tries[0]) from exc
            log.info("retrying %s%s in %.2fs (try %d)", self.base_url, endpoint, wait, tries[0])
            await asyncio.sleep(wait)

    async def _read(
        self, endpoint: str, body: dict[str, Any] | None, limit: int
    ) -> tuple[bytes, str | None]:
        """One HTTP request; its reply's bytes (at most `limit`) and content type."""
        request = (
            self.client.models.with_streaming_response.list()
            if body is None
            else self.client.completions.with_streaming_response.create(**body)
        )
        async with request as response:
            chunks, size = [], 0
            async for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise PolicyError(
                        f"{self.base_url}{endpoint} sent a reply of more than {limit} bytes "
                        "(see max_reply_bytes)"
                    )
                chunks.append(chunk)
            return b"".join(chunks), response.headers.get("content-type")

    def _retry_wait(self, exc: Exception, tries: int) -> float | None:
        """Seconds to wait before trying again; None: do not."""
        status = getattr(exc, "status_code", None)
        retryable = status is None or status in (408, 409, 429) or status >= 500
        if not retryable or tries > self.max_retries:
            return None
        after = _retry_after(getattr(exc, "response", None))
        return after if after is not None else min(8.0, 0.5 * 2 ** (tries - 1))

    def _failure(self, exc: Exception, url: str, tries: int) -> Exception:
        """The error a failed call raises (`exc` is an openai error), the API key blanked out
        of anything the server said."""
        error = self._failure_of(exc, url, tries)
        if len(self.api_key) >= 8 and self.api_key in str(error):
            return type(error)(str(error).replace(self.api_key, "***"))
        return error

    def _failure_of(self, exc: Exception, url: str, tries: int) -> Exception:
        # the openai client is an optional extra
        import openai

        if isinstance(exc, openai.APIConnectionError):  # also per-read timeouts
            cause = exc.__cause__ or exc
            return PolicyError(
                f"cannot reach the model server at {url} ({type(cause).__name__}: {cause}); "
                f"is it running? ({_tries(tries)} made)"
            )
        if isinstance(exc, openai.NotFoundError):
            return PolicyError(f"{url} answered 404 for model {self.model!r}: {_message(exc)}")
        if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
            # the request's fault (e.g. a prompt longer than the server's context), not the
            # server's: fails this run only, like the in-process engine's ValueError
            return ValueError(f"{url} rejected the request: {_message(exc)}")
        status = getattr(exc, "status_code", "?")
        return PolicyError(f"{url} answered {status} after {_tries(tries)}: {_message(exc)}")

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        """Sample every request concurrently (at most `max_concurrency` HTTP requests in
        flight); result[i] holds requests[i].n completions. Cancelling the call closes its
        HTTP requests, which makes vLLM abort them. A request with a `confidence_stop` rule is
        streamed, each sample its own HTTP request (sample i with seed + i), and a sample the
        rule stops ends with `finish_reason="confidence"`, its stream closed."""
        validate_requests(requests)
        await self.start()
        meter = GenerationMeter(sequences=sum(r.n for r in requests))
        results = await gather_or_cancel(self._complete(r, meter) for r in requests)
        meter.report(force=True)
        return results

    def completion_body(self, request: GenerationRequest) -> dict[str, Any]:
        """Keyword arguments of `client.completions.create` for one request. A prefix that
        comes with the ids the server generated it as (`prefix_token_ids`) is sent as token
        ids (the whole prompt then), else the rendered prompt as text."""
        prompt: str | list[int] = (
            self.render_prompt(request)
            if request.prefix_token_ids is None
            else prompt_ids(self._tokenizer, request)
        )
        return {
            "model": self.model,
            "prompt": prompt,
            "n": request.n,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stop": list(request.stop) or None,
            "seed": request.seed,
            # per-token logprobs of the sampled tokens (counts and cumulative), and the top k
            # for token confidences when asked
            "logprobs": request.top_logprobs or 0,
            "extra_headers": {RUN_HEADER: run_header(request)},
            "extra_body": {
                "add_special_tokens": False,
                "include_stop_str_in_output": True,
                "return_token_ids": True,
                # top-k keyed by token id: two tokens that decode alike stay two candidates,
                # as in the engine's own logprobs (VLLMPolicy)
                **({"return_tokens_as_token_ids": True} if request.top_logprobs else {}),
            },
        }

    async def _complete(self, request: GenerationRequest, meter: GenerationMeter) -> list[Any]:
        if request.confidence_stop is not None:
            # the rule stops one sample: each streams on its own
            return await gather_or_cancel(
                self._streamed(single, meter) for single in single_samples(request)
            )
        body = self.completion_body(request)
        limit = max_reply_bytes(request.n, request.max_tokens)
        async with self._limit():
            reply = await self._call("/completions", body, CompletionReply, limit)
        url = self.base_url + "/completions"
        choices = ordered_choices(reply, request.n, url)
        completions = [self._completion(choice, request, url) for choice in choices]
        meter.add(completions)
        return completions

    async def _streamed(self, request: GenerationRequest, meter: GenerationMeter) -> Completion:
        """One sample (n=1) streamed, its stream closed as soon as the stop rule fires."""
        url = self.base_url + "/completions"
        body = {**self.completion_body(request), "stream": True}
        async with self._limit():
            sample = await self._within_deadline(
                "/completions", lambda: self._read_stream(body, request, url)
            )
        completion = self._completion(sample.choice(), request, url, stopped=sample.stopped)
        meter.add([completion])
        return completion

    async def _read_stream(
        self, body: dict[str, Any], request: GenerationRequest, url: str
    ) -> StreamedSample:
        """One streamed HTTP request, read until its sample ends or the rule fires; leaving
        the response closes the connection, and the server aborts the request."""
        # the openai client is an optional extra
        import httpx

        sample = StreamedSample(request, url)
        limit = max_stream_bytes(request.max_tokens)
        async with self.client.completions.with_streaming_response.create(**body) as response:
            kind = (response.headers.get("content-type") or "no content type").split(";")[0]
            if kind.strip() != "text/event-stream":
                raise PolicyError(f"{url} answered a streamed request with {kind}, not events")
            try:
                async with aclosing(stream_choices(response.iter_bytes(), limit, url)) as choices:
                    async for choice in choices:
                        if sample.add(choice):
                            break
            except httpx.TransportError as exc:  # the connection broke mid-stream
                raise PolicyError(f"{url} broke off the stream ({type(exc).__name__})") from None
        return sample

    def _completion(
        self, choice: CompletionChoice, request: GenerationRequest, url: str, stopped: bool = False
    ) -> Completion:
        """A choice as a Completion (`stopped`: the stop rule ended it, "confidence")."""
        check_choice(choice, request.max_tokens, url)
        finish = "confidence" if stopped else finish_reason(choice, url)
        text = choice.text
        logprobs = choice.logprobs or ChoiceLogprobs()
        reported = [
            None if choice.token_ids is None else len(choice.token_ids),
            None if logprobs.tokens is None else len(logprobs.tokens),
        ]
        num_tokens = counted_tokens(reported, self._count(text), request.max_tokens)
        if finish is None:  # the server withheld this sample: a failed sample, not a text
            reason = f"the server withheld sample {choice.index} ({choice.finish_reason})"
            return Completion("", "stop", None, num_tokens, error=reason)
        return Completion(
            text=text,
            finish_reason=finish,
            stop_reason=None if finish != "stop" else _stop_reason(choice, request, url),
            num_tokens=num_tokens,
            logprob=summed_logprob(choice),
            token_confidences=_confidences(choice.logprobs, request.top_logprobs, url),
            token_ids=self._generated_ids(text, choice.token_ids),
        )

    def _count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False)) if text else 0

    def _generated_ids(self, text: str, ids: list[int] | None) -> tuple[int, ...] | None:
        if not ids:
            return None
        try:
            return generated_ids(self._tokenizer, text, ids)
        except (ValueError, OverflowError, TypeError, IndexError):  # ids outside the vocabulary
            return None

    async def next_token_logprobs(
        self, requests: Sequence[GenerationRequest], tokens: Sequence[str]
    ) -> list[dict[str, float]]:
        """For each request's rendered prompt (chat + prefix), the log-probability that the next
        token is the first token of each string in `tokens` (used by `LLMJudgePRM`). Needs
        vLLM's `logprob_token_ids` extension (vLLM >= 0.32)."""
        await self.start()
        ids = {t: self._tokenizer.encode(t, add_special_tokens=False)[:1] for t in tokens}
        if not all(ids.values()):
            raise ValueError(f"every candidate token must be non-empty: {list(tokens)}")
        unique = sorted({i[0] for i in ids.values()})

        async def one(request: GenerationRequest) -> dict[str, float]:
            body = {
                "model": self.model,
                "prompt": self.render_prompt(request),
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": len(unique),
                "extra_headers": {RUN_HEADER: run_header(request)},
                "extra_body": {
                    "add_special_tokens": False,
                    "logprob_token_ids": unique,
                    "return_tokens_as_token_ids": True,
                },
            }
            limit = max_reply_bytes(1, len(unique))
            async with self._limit():
                reply = await self._call("/completions", body, CompletionReply, limit)
            by_id = first_position_logprobs(reply, self.base_url + "/completions")
            missing = [i for i in unique if i not in by_id]
            if missing:
                raise PolicyError(
                    f"{self.base_url} returned no logprob for token ids {missing}: the server "
                    "needs vLLM's logprob_token_ids (vLLM >= 0.32)"
                )
            return {t: by_id[i[0]] for t, i in ids.items()}

        return await gather_or_cancel(one(r) for r in requests)

    async def aclose(self) -> None:
        """Close the HTTP connections; the object can be used again afterwards."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def shutdown(self) -> None:
        """Drop the HTTP client (the server keeps running: it is not ours); safe to call twice."""
        self._client = None


def _stop_reason(choice: CompletionChoice, request: GenerationRequest, url: str) -> str | None:
    """The stop string that ended a sample. vLLM says which (`stop_reason`: the string, or a
    token id / None at EOS); other servers keep it in the text only if they keep it."""
    if "stop_reason" not in choice.model_fields_set:
        return next((s for s in request.stop if choice.text.endswith(s)), None)
    named = choice.stop_reason
    if isinstance(named, str) and named not in request.stop:
        raise PolicyError(
            f"{url} choice {choice.index}: stop_reason names a stop string the request did not "
            "ask for"
        )
    return named if isinstance(named, str) else None


def _confidences(
    logprobs: ChoiceLogprobs | None, k: int | None, url: str
) -> tuple[float, ...] | None:
    """Per token, minus the mean of its top-k log-probabilities (None unless asked for)."""
    if not k:
        return None
    if logprobs is None or logprobs.top_logprobs is None:
        raise PolicyError(f"{url} did not return the top log-probabilities asked for")
    return tuple(token_confidence((top or {}).values(), k) for top in logprobs.top_logprobs)


def _tries(count: int) -> str:
    return "1 try" if count == 1 else f"{count} tries"


def _retry_after(response: Any) -> float | None:
    """A Retry-After header's seconds (an HTTP date or garbage: None)."""
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _message(exc: Any, most: int = 500) -> str:
    """The server's error message, cut to `most` characters."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:most]
    return str(getattr(exc, "message", exc))[:most]


def _load_tokenizer(ref: str) -> Any:
    # transformers' lazy module is not safe to import from two threads at once (a start
    # cancelled mid-import, then another start): one import at a time
    with _IMPORT_LOCK:
        # heavy: only this path needs transformers
        from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(ref)
    except Exception as exc:
        raise PolicyError(
            f"cannot load the tokenizer {ref!r} to render prompts ({exc}); pass tokenizer= "
            "(a Hugging Face id or local path of the served model)"
        ) from exc
