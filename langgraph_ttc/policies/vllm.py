"""`VLLMPolicy`: the in-process vLLM `AsyncLLM` engine as a `Policy`.

One engine serves every graph run that shares the policy object; all requests of a call are
issued concurrently so the engine batches them continuously. Prompts are rendered with the
model's chat template and a partial assistant prefix is appended verbatim (as the token ids
this policy generated it as, when the request carries them), so step-by-step continuations
send the same prompt tokens and hit the prefix cache.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from langgraph_ttc.confidence import StopMonitor, token_confidence
from langgraph_ttc.engine import (
    EngineCounts,
    EngineError,
    EngineSettings,
    EngineStartError,
    EngineTokens,
    SchedulerCounts,
    StartOnce,
    engine_capacity,
    probe_next_token,
    start_engine,
)
from langgraph_ttc.errors import PolicyError
from langgraph_ttc.policies.base import (
    GenerationMeter,
    count_sequences,
    gather_or_cancel,
    generated_ids,
    prompt_ids,
    render_chat,
    single_samples,
    validate_requests,
)
from langgraph_ttc.types import Completion, GenerationRequest

log = logging.getLogger(__name__)
T = TypeVar("T")


class VLLMPolicy:
    """Policy backed by an in-process vLLM engine (started lazily on first use).

    >>> policy = VLLMPolicy()                    # embedded SmolLM2-135M-Instruct
    >>> policy = VLLMPolicy("Qwen/Qwen2.5-1.5B-Instruct", settings=EngineSettings(...))

    The engine binds to the event loop that first uses it; share one policy across graph runs
    within that loop. Call `shutdown()` (or use `async with`) to stop the engine process.
    """

    supports_prefix = True  # prompts are rendered here: a prefix is continued verbatim

    def __init__(self, model: str | None = None, *, settings: EngineSettings | None = None):
        self.model_ref = model
        self.settings = settings or EngineSettings()
        self._engine: Any = None
        self._tokenizer: Any = None
        self._start_once = StartOnce()
        self._request_ids = itertools.count()
        self._sequences_in_flight = 0
        self._scheduler_counts: SchedulerCounts | None = None
        self.startup_seconds: float | None = None
        self.warm_up_seconds: float | None = None
        self.model_path: str | None = None  # what vLLM loaded, once started
        self.output_log: Path | None = None  # where the engine processes write, when quiet

    @classmethod
    def from_engine(
        cls, engine: Any, tokenizer: Any, *, settings: EngineSettings | None = None
    ) -> VLLMPolicy:
        """A policy over an already started `AsyncLLM` (or an object with the same `generate`
        and `abort`), which it then owns: `shutdown()` stops it."""
        policy = cls(settings=settings)
        policy._engine, policy._tokenizer = engine, tokenizer
        return policy

    async def __aenter__(self) -> VLLMPolicy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def started(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Any:
        """The started `AsyncLLM` (None before `start()`), e.g. for a PRM sharing this engine."""
        return self._engine

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def sequences_in_flight(self) -> int:
        """Samples this policy is generating right now (a request with n=4 counts 4 until each
        sample finishes or the request is aborted)."""
        return self._sequences_in_flight

    @property
    def capacity(self) -> int | None:
        """The most sequences the engine schedules at once (`max_num_seqs`); None before start."""
        return None if self._engine is None else engine_capacity(self._engine)

    def engine_counts(self) -> EngineCounts | None:
        """vLLM's scheduler counts (running and waiting sequences) after its latest step; None
        before start or for an engine this policy did not start. An idle engine keeps its last
        report, so `running` is capped by the requests the front end still has open."""
        latest = None if self._scheduler_counts is None else self._scheduler_counts.latest
        if latest is None or self._engine is None:
            return None
        open_requests = self.num_unfinished_requests
        return EngineCounts(
            min(latest.running, open_requests),
            min(latest.waiting, open_requests),
            latest.updated_at,
        )

    def engine_tokens(self) -> EngineTokens | None:
        """Prompt tokens the engine prefilled or read from its prefix cache, and tokens it
        generated, since it started (every caller's); None before start or for an engine this
        policy did not start."""
        if self._scheduler_counts is None or self._engine is None:
            return None
        return self._scheduler_counts.tokens

    async def start(self) -> None:
        await self._start_once.run(
            lambda: self._engine is not None, self._start_engine, self._warm_up
        )

    async def _warm_up(self) -> None:
        """One token of one short prompt, sampled as every request is (with log-probabilities):
        on CPU the engine's first such step costs ~1.6 s more than the next ones (set up on
        first use), which belongs to start-up, not to the first problem nor to an eval's
        measured run."""
        started = time.perf_counter()
        warm_up = GenerationRequest(
            [{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0
        )
        params = self._sampling_params(warm_up)  # the sampling path real requests take
        request = {"prompt_token_ids": self.prompt_token_ids(warm_up)}
        try:
            async for _ in self._engine.generate(request, params, "ttc-warm-up"):
                pass
        except Exception as exc:
            raise PolicyError(f"the vLLM engine failed its first request: {exc}") from exc
        self.warm_up_seconds = time.perf_counter() - started
        log.info("vLLM engine warmed up in %.1fs", self.warm_up_seconds)

    def _start_engine(self) -> None:
        counts = SchedulerCounts()
        try:
            started = start_engine(self.model_ref, self.settings, stat_loggers=[counts.factory])
        except EngineStartError as exc:
            raise PolicyError(str(exc)) from exc
        self._engine, self._tokenizer = started.engine, started.tokenizer
        self._scheduler_counts = counts
        self.model_path, self.startup_seconds = started.model, started.startup_seconds
        self.output_log = started.output_log
        atexit.register(self.shutdown)  # don't leave an engine process behind

    def prompt_token_ids(self, request: GenerationRequest) -> list[int]:
        """The ids sent for a request: its rendered prompt, with the prefix as the ids this
        policy generated it as when the request carries them (`prefix_token_ids`)."""
        if self._tokenizer is None:
            raise PolicyError("the engine is not started; await policy.start() first")
        return prompt_ids(self._tokenizer, request)

    def render_prompt(self, request: GenerationRequest) -> str:
        """Chat-template text of the conversation with the assistant turn opened, then the
        prefix appended byte-for-byte (templates' `continue_final_message` may trim it)."""
        if self._tokenizer is None:
            raise PolicyError("the engine is not started; await policy.start() first")
        return render_chat(self._tokenizer, request)

    def _sampling_params(self, request: GenerationRequest) -> Any:
        # vLLM (and torch) load only when an engine is used
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=request.n,
            temperature=request.temperature,
            top_p=request.top_p,
            max_tokens=request.max_tokens,
            stop=list(request.stop) or None,
            include_stop_str_in_output=True,
            seed=request.seed,
            # 0 makes cumulative_logprob available at little cost; k for token confidences
            logprobs=request.top_logprobs or 0,
            output_kind=RequestOutputKind.DELTA,
        )

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        """Sample every request concurrently; result[i] holds requests[i].n completions.

        If one request fails, the others are cancelled and aborted in the engine, and its
        exception is raised. Progress (tokens so far, samples finished) goes to
        `langgraph_ttc.progress.report` about once a second and once at the end.
        """
        await self.start()
        validate_requests(requests)
        call = GenerationMeter(sequences=sum(r.n for r in requests))
        results = await gather_or_cancel([self._generate_one(r, call) for r in requests])
        for index, (request, completions) in enumerate(zip(requests, results, strict=True)):
            if len(completions) != request.n:
                raise PolicyError(
                    f"request {index} asked for {request.n} samples, got {len(completions)}"
                )
        call.report(force=True)
        return results

    async def _generate_one(
        self, request: GenerationRequest, call: GenerationMeter
    ) -> list[Completion]:
        if request.confidence_stop is not None and request.n > 1:
            # a stop rule aborts one sample: each sample is its own engine request
            singles = single_samples(request)
            results = await gather_or_cancel([self._generate_one(r, call) for r in singles])
            return [completions[0] for completions in results]
        return await self._stream(request, call)

    async def _stream(self, request: GenerationRequest, call: GenerationMeter) -> list[Completion]:
        # vLLM (and torch) load only when an engine is used
        from vllm.v1.engine.exceptions import EngineDeadError

        prompt = {"prompt_token_ids": self.prompt_token_ids(request)}
        request_id = f"ttc-{next(self._request_ids)}"
        # DELTA outputs carry only the samples that progressed: accumulate by sample index.
        samples = [_Sample(request) for _ in range(request.n)]
        unfinished = request.n
        self._count_sequences(unfinished)
        try:
            async for output in self._engine.generate(
                prompt, self._sampling_params(request), request_id
            ):
                for sample in output.outputs:
                    done = samples[sample.index].add(sample)
                    call.tokens += len(sample.token_ids)
                    if done:
                        call.finished += 1
                        unfinished -= 1
                        self._count_sequences(-1)
                call.report()
                if unfinished == 0 and any(sample.stopped for sample in samples):
                    break  # the rule ended it before vLLM did: aborted below
        except asyncio.CancelledError:
            await self._abort(request_id)
            raise
        except EngineDeadError as exc:
            where = "above" if self.output_log is None else f"in {self.output_log}"
            raise PolicyError(
                f"the vLLM engine died; its log {where} says why. Start a new VLLMPolicy "
                f"(request {request_id}): {exc}"
            ) from exc
        finally:
            self._count_sequences(-unfinished)
        if any(sample.stopped for sample in samples):
            await self._abort(request_id)  # stopped by the rule: free its slot in the engine
        if any(sample.finish_reason is None for sample in samples):
            raise PolicyError(f"vLLM ended request {request_id} before every sample finished")
        return [sample.completion(self._tokenizer) for sample in samples]

    def _count_sequences(self, delta: int) -> None:
        self._sequences_in_flight += delta
        count_sequences(delta)  # the calling run's tally, for a scheduler (eval.scheduler)

    async def _abort(self, request_id: str) -> None:
        """Stop a cancelled request in the engine. vLLM's `generate` aborts on cancellation
        itself; this also covers engines that don't, and aborting twice is harmless."""
        engine = self._engine
        if engine is None:
            return
        try:
            await engine.abort(request_id)
        except Exception:  # shutting down or dead: nothing left to stop
            log.debug("could not abort request %s", request_id, exc_info=True)

    @property
    def num_unfinished_requests(self) -> int:
        """Requests the engine is still working on (0 when idle or not started)."""
        if self._engine is None:
            return 0
        return int(self._engine.output_processor.get_num_unfinished_requests())

    async def check_health(self) -> None:
        """Raise PolicyError if the engine died (a policy not started yet is healthy: its
        engine starts on first use)."""
        engine = self._engine
        if engine is not None and getattr(engine, "errored", False) is True:
            raise PolicyError("the vLLM engine died; start a new VLLMPolicy")

    async def next_token_logprobs(
        self, requests: Sequence[GenerationRequest], tokens: Sequence[str]
    ) -> list[dict[str, float]]:
        """Optional capability (used by `LLMJudgePRM`): for each request's rendered prompt
        (chat + prefix), the log-probability that the next token is the first token of each
        string in `tokens`. One engine pass per request, no sampling; prefix caching applies."""
        await self.start()
        ids = {t: self._tokenizer.encode(t, add_special_tokens=False)[:1] for t in tokens}
        if not all(ids.values()):
            raise ValueError(f"every candidate token must be non-empty: {list(tokens)}")
        unique = sorted({i[0] for i in ids.values()})

        async def one(request: GenerationRequest) -> dict[str, float]:
            prompt = self._tokenizer.encode(self.render_prompt(request), add_special_tokens=False)
            try:
                logprobs, _ = await probe_next_token(
                    self._engine, prompt, unique, f"ttc-{next(self._request_ids)}"
                )
            except EngineError as exc:
                raise PolicyError(str(exc)) from exc
            by_id = dict(zip(unique, logprobs, strict=True))
            return {t: by_id[i[0]] for t, i in ids.items()}

        return await gather_or_cancel([one(r) for r in requests])

    def shutdown(self) -> None:
        """Stop the engine process; safe to call twice."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()


class _Sample:
    """One sample of a request as DELTA outputs arrive: its text, ids, token confidences (with
    `top_logprobs`) and the request's stop rule."""

    def __init__(self, request: GenerationRequest):
        self.k = request.top_logprobs
        rule = request.confidence_stop
        self.monitor = None if rule is None or not self.k else StopMonitor(rule)
        self.texts: list[str] = []
        self.token_ids: list[int] = []
        self.confidences: list[float] = []
        self.finish_reason: str | None = None
        self.stop_reason: str | None = None
        self.logprob: float | None = None

    @property
    def stopped(self) -> bool:
        return self.finish_reason == "confidence"

    def add(self, output: Any) -> bool:
        """Take one delta; True when this sample has just ended."""
        if self.finish_reason is not None:
            return False
        self.texts.append(output.text)
        self.token_ids.extend(output.token_ids)
        self.logprob = output.cumulative_logprob
        if self.k:
            for position in output.logprobs or []:
                confidence = token_confidence((lp.logprob for lp in position.values()), self.k)
                self.confidences.append(confidence)
                if self.monitor is not None and self.monitor.push(confidence):
                    self.finish_reason = "confidence"
                    return True
        if output.finish_reason is not None:
            self.finish_reason = "length" if output.finish_reason == "length" else "stop"
            reason = output.stop_reason
            self.stop_reason = reason if isinstance(reason, str) else None
            return True
        return False

    def completion(self, tokenizer: Any) -> Completion:
        text = "".join(self.texts)
        return Completion(
            text=text,
            finish_reason=self.finish_reason or "stop",
            stop_reason=self.stop_reason,
            num_tokens=len(self.token_ids),
            logprob=self.logprob,
            token_ids=generated_ids(tokenizer, text, self.token_ids),
            token_confidences=tuple(self.confidences) if self.k else None,
        )


_SHARED: dict[str | None, VLLMPolicy] = {}


def shared_policy(model: str | None = None) -> VLLMPolicy:
    """One VLLMPolicy per model in this process, for entry points that several graphs import
    (one engine serves them all). Creating it starts nothing; the engine starts on first use."""
    if model not in _SHARED:
        _SHARED[model] = VLLMPolicy(model)
    return _SHARED[model]
