"""`OpenAIPolicy`: any OpenAI-compatible completions server (`vllm serve` first) as a `Policy`.

Prompts are rendered here with the model's chat template and the partial assistant prefix is
appended verbatim, exactly as `VLLMPolicy` does, then sent to `/v1/completions` with
`add_special_tokens: false` (the template already holds the BOS). So a step search sends the
same prompt bytes every step and the server's prefix cache applies. vLLM's extensions
(`include_stop_str_in_output`, `stop_reason`, `logprob_token_ids`, `return_token_ids`) make the
results match the in-process engine's; a prefix that comes with the ids the server generated
(`prefix_token_ids`) is sent as token ids.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from langgraph_ttc.confidence import token_confidence
from langgraph_ttc.errors import ConfidenceUnavailableError, PolicyError
from langgraph_ttc.policies.base import (
    GenerationMeter,
    gather_or_cancel,
    generated_ids,
    prompt_ids,
    render_chat,
    validate_requests,
)
from langgraph_ttc.types import Completion, GenerationRequest

log = logging.getLogger(__name__)


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
    (each carries up to `n` samples). Connection errors, 408/409/429 and 5xx answers are retried
    `max_retries` times with exponential backoff; then, or when the server is down or does not
    serve `model`, a `PolicyError` names the URL and the cause.
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
                max_retries=self.max_retries,
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
        page = await self._call(self.client.models.list, "/models")
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

    async def _call(self, method: Any, endpoint: str, **body: Any) -> Any:
        """One API call, with the client's retries; its failures become `PolicyError`s."""
        # the openai client is an optional extra
        import openai

        url = self.base_url + endpoint
        try:
            return await method(**body)
        except openai.APIConnectionError as exc:  # also timeouts, after the retries
            cause = exc.__cause__ or exc
            raise PolicyError(
                f"cannot reach the model server at {url} ({type(cause).__name__}: {cause}); "
                f"is it running? (tried {self.max_retries + 1} times)"
            ) from exc
        except openai.NotFoundError as exc:
            raise PolicyError(
                f"{url} answered 404 for model {self.model!r}: {_message(exc)}"
            ) from exc
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            # the request's fault (e.g. a prompt longer than the server's context), not the
            # server's: fails this run only, like the in-process engine's ValueError
            raise ValueError(f"{url} rejected the request: {_message(exc)}") from exc
        except openai.APIStatusError as exc:
            retried = exc.status_code in (408, 409, 429) or exc.status_code >= 500
            tries = f" after {self.max_retries + 1} tries" if retried else ""
            raise PolicyError(f"{url} answered {exc.status_code}{tries}: {_message(exc)}") from exc

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        """Sample every request concurrently (at most `max_concurrency` HTTP requests in
        flight); result[i] holds requests[i].n completions. Cancelling the call closes its
        HTTP requests, which makes vLLM abort them."""
        validate_requests(requests)
        if any(r.confidence_stop is not None for r in requests):
            raise ConfidenceUnavailableError(
                "OpenAIPolicy gives token confidences (top_logprobs) but does not apply a "
                "confidence_stop rule; use VLLMPolicy for early stopping"
            )
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
            "extra_body": {
                "add_special_tokens": False,
                "include_stop_str_in_output": True,
                "return_token_ids": True,
            },
        }

    async def _complete(self, request: GenerationRequest, meter: GenerationMeter) -> list[Any]:
        body = self.completion_body(request)
        async with self._limit():
            response = await self._call(self.client.completions.create, "/completions", **body)
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) != request.n:
            raise PolicyError(
                f"{self.base_url}/completions returned {len(choices)} choices for n={request.n}"
            )
        completions = [self._completion(choice, request) for choice in choices]
        meter.add(completions)
        return completions

    def _completion(self, choice: Any, request: GenerationRequest) -> Completion:
        text = choice.text or ""
        extra = choice.model_extra or {}
        if "stop_reason" in extra:  # vLLM: the matched stop string, or a token id / None at EOS
            stop_reason = extra["stop_reason"] if isinstance(extra["stop_reason"], str) else None
        else:  # other servers: the stop string is in the text only if they keep it
            stop_reason = next((s for s in request.stop if text.endswith(s)), None)
        finish_reason = "length" if choice.finish_reason == "length" else "stop"
        if finish_reason == "length":
            stop_reason = None
        logprobs = choice.logprobs
        if logprobs is not None and logprobs.tokens is not None:
            num_tokens = len(logprobs.tokens)
            values = [v for v in (logprobs.token_logprobs or []) if v is not None]
            logprob: float | None = float(sum(values)) if values else None
        else:
            num_tokens = len(self._tokenizer.encode(text, add_special_tokens=False))
            logprob = None
        return Completion(
            text=text,
            finish_reason=finish_reason,
            stop_reason=stop_reason,
            num_tokens=num_tokens,
            logprob=logprob,
            token_confidences=_confidences(logprobs, request.top_logprobs),
            token_ids=(
                generated_ids(self._tokenizer, text, extra["token_ids"])
                if extra.get("token_ids")
                else None
            ),
        )

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
                "extra_body": {
                    "add_special_tokens": False,
                    "logprob_token_ids": unique,
                    "return_tokens_as_token_ids": True,
                },
            }
            async with self._limit():
                response = await self._call(self.client.completions.create, "/completions", **body)
            by_id = _first_position_logprobs(response)
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


def _confidences(logprobs: Any, k: int | None) -> tuple[float, ...] | None:
    """Per token, minus the mean of its top-k log-probabilities (None unless asked for)."""
    if not k:
        return None
    if logprobs is None or logprobs.top_logprobs is None:
        raise PolicyError("the server did not return the top log-probabilities asked for")
    return tuple(token_confidence((top or {}).values(), k) for top in logprobs.top_logprobs)


def _first_position_logprobs(response: Any) -> dict[int, float]:
    """{token id: logprob} of the first generated position, from `return_tokens_as_token_ids`
    keys ("token_id:123"); vLLM writes -9999.0 for -inf."""
    choice = response.choices[0]
    top = (choice.logprobs.top_logprobs or [None])[0] if choice.logprobs else None
    out: dict[int, float] = {}
    for key, value in (top or {}).items():
        if key.startswith("token_id:"):
            out[int(key.removeprefix("token_id:"))] = -math.inf if value <= -9999.0 else value
    return out


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)
    return str(getattr(exc, "message", exc))


def _load_tokenizer(ref: str) -> Any:
    # heavy: only this path needs transformers
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(ref)
    except Exception as exc:
        raise PolicyError(
            f"cannot load the tokenizer {ref!r} to render prompts ({exc}); pass tokenizer= "
            "(a Hugging Face id or local path of the served model)"
        ) from exc
