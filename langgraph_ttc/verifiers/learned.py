"""`LearnedVerifier`: a verifier trained by `ttc verifier train`, loaded from its directory.

Two kinds, told apart by `verifier.json`:

- `probe`: a logistic-regression head on the policy model's own hidden states. The solution is
  rendered as the policy saw it (chat template, problem as the user turn, the steps joined by the
  step delimiter as the assistant turn); one forward pass on vLLM's pooling runner returns the
  final-layer hidden state of every token, and the rows at each step's last token go through the
  head. `render_solution` is the one rendering used at training and at scoring time.
- `reward-model`: a fine-tuned `Qwen2ForProcessRewardModel` checkpoint in the directory, scored
  by `VLLMPoolingPRM`.

Directory layout: `verifier.json` (kind, model, rendering, feature size, training metrics) plus
`head.npz` (probe: standardisation and coefficients, plain arrays, loaded without pickle) or a
checkpoint subdirectory (reward model).
"""

from __future__ import annotations

import asyncio
import bisect
import io
import json
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langgraph_ttc.engine import EngineSettings
from langgraph_ttc.errors import TTCError
from langgraph_ttc.files import (
    FileError,
    describe_fields,
    read_bytes,
    read_text,
    resolve_inside,
)
from langgraph_ttc.verifiers.engine import (
    ContextLengthError,
    EngineHandle,
    OnEngine,
    PRMError,
    bounded_gather,
    check_score,
)
from langgraph_ttc.verifiers.pooling import VLLMPoolingPRM

if TYPE_CHECKING:
    import numpy as np

VERIFIER_FILE = "verifier.json"
HEAD_FILE = "head.npz"
FORMAT_VERSION = 1
KINDS = ("probe", "reward-model")
HEAD_ARRAYS = ("mean", "scale", "coef", "intercept")
MAX_INFO_BYTES = 1 << 20
MAX_HEAD_BYTES = 64 << 20
MAX_FEATURES = 1 << 16  # a hidden size; the largest models have ~16k
MAX_CHECKPOINT_FILES = 10_000


class VerifierDirError(TTCError, ValueError):
    """A trained verifier directory that cannot be used: a missing or malformed
    `verifier.json`, a path leading outside the directory, a malformed head."""


class Rendering(BaseModel):
    """How solutions are rendered for the verifier: as the policy saw them."""

    model_config = ConfigDict(extra="allow", strict=True)

    system_prompt: str = ""
    step_delimiter: str | None = Field(None, min_length=1)
    format: Literal["qwen2-prm"] | None = None


class VerifierInfo(BaseModel):
    """The schema of `verifier.json` (extra keys, such as training facts, are kept)."""

    model_config = ConfigDict(extra="allow", strict=True)

    format: int
    kind: Literal["probe", "reward-model"]
    model: str | None = None
    head: str = Field(HEAD_FILE, min_length=1, max_length=255)
    checkpoint: str | None = Field(None, min_length=1, max_length=255)
    step_tag: str = Field("<extra_0>", min_length=1)
    rendering: Rendering = Field(default_factory=Rendering)

    @model_validator(mode="after")
    def _complete(self) -> VerifierInfo:
        if self.format != FORMAT_VERSION:
            raise ValueError(f"format {self.format}, expected {FORMAT_VERSION}")
        if self.kind == "probe" and self.rendering.step_delimiter is None:
            raise ValueError("a probe needs rendering.step_delimiter")
        if self.kind == "reward-model" and self.checkpoint is None:
            raise ValueError("a reward model needs a checkpoint directory")
        return self


def read_verifier_info(path: str | Path) -> dict[str, Any]:
    """The validated `verifier.json` of a trained verifier directory (read inside it: a
    symlink out of the directory, a FIFO or an oversized file is refused)."""
    path = Path(path)
    info_path = path / VERIFIER_FILE
    if not info_path.is_file() and not info_path.is_symlink():
        raise VerifierDirError(f"{path} is not a trained verifier: no {VERIFIER_FILE} in it")
    try:
        info = json.loads(read_text(VERIFIER_FILE, root=path, max_bytes=MAX_INFO_BYTES))
    except FileError as exc:
        raise VerifierDirError(f"{path}: {exc}") from None
    except json.JSONDecodeError as exc:  # its position, not its text
        raise VerifierDirError(
            f"{info_path} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    if not isinstance(info, dict) or info.get("kind") not in KINDS:
        raise VerifierDirError(f"{info_path}: 'kind' must be one of {KINDS}")
    try:
        VerifierInfo.model_validate(info)
    except ValidationError as exc:
        raise VerifierDirError(f"{info_path}: {describe_fields(exc)}") from None
    return info


def write_verifier_info(path: str | Path, info: Mapping[str, Any]) -> None:
    Path(path, VERIFIER_FILE).write_text(
        json.dumps({"format": FORMAT_VERSION, **info}, indent=2) + "\n"
    )


def checkpoint_inside(root: Path, name: str) -> Path:
    """A reward model's checkpoint directory, inside `root` with every file in it."""
    try:
        checkpoint = resolve_inside(root, name)
    except FileError as exc:
        raise VerifierDirError(f"checkpoint: {exc}") from None
    if not checkpoint.is_dir():
        raise VerifierDirError(f"checkpoint: {name!r} in {root} is not a directory")
    base = root.resolve()
    for count, entry in enumerate(checkpoint.rglob("*")):
        if count >= MAX_CHECKPOINT_FILES:
            raise VerifierDirError(f"checkpoint {name!r} holds over {count} files")
        if entry.is_symlink() and not entry.resolve().is_relative_to(base):
            raise VerifierDirError(f"checkpoint: {entry.name!r} leads outside {base}")
    return checkpoint


def _npy_array(stream: IO[bytes], member: str) -> np.ndarray:
    """One `.npy` member: its header checked (real numbers, a vector of at most
    MAX_FEATURES) before its data is read; never a pickle."""
    # numpy: only learned verifiers and training need it
    import numpy as np
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(stream)
        else:
            raise ValueError(f"npy version {version}")
    except (ValueError, TypeError, SyntaxError, OSError) as exc:
        raise VerifierDirError(f"{member!r}: not a readable .npy array ({exc})") from None
    if dtype.hasobject or dtype.kind not in "fiu":
        raise VerifierDirError(f"{member!r} holds {dtype.name} values, not real numbers")
    if len(shape) > 1 or (shape[0] if shape else 1) > MAX_FEATURES:
        raise VerifierDirError(f"{member!r} has shape {shape}; a vector of <= {MAX_FEATURES}")
    count = shape[0] if shape else 1
    raw = stream.read(count * dtype.itemsize)
    if len(raw) != count * dtype.itemsize:
        raise VerifierDirError(f"{member!r} is truncated")
    values = np.frombuffer(raw, dtype=dtype, count=count).astype(np.float64)
    if not np.isfinite(values).all():
        raise VerifierDirError(f"{member!r} holds NaN or infinite values")
    return values


def read_head_arrays(data: bytes) -> dict[str, np.ndarray]:
    """The head's arrays from the bytes of an .npz archive, each member's declared size and
    header checked before it is inflated."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise VerifierDirError("not an .npz archive") from None
    arrays = {}
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        for name in HEAD_ARRAYS:
            info = members.get(f"{name}.npy")
            if info is None:
                raise VerifierDirError(f"no {name!r} array")
            if info.file_size > MAX_FEATURES * 16 + 4096:  # complex128 and a long header
                raise VerifierDirError(f"{name!r} inflates to {info.file_size} bytes")
            try:
                with archive.open(info) as stream:
                    arrays[name] = _npy_array(stream, name)
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError) as exc:
                raise VerifierDirError(f"{name!r}: a damaged archive member ({exc})") from None
    return arrays


@dataclass(frozen=True)
class ProbeHead:
    """p(step is good) = sigmoid(((x - mean) / scale) . coef + intercept)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @property
    def dim(self) -> int:
        return int(self.coef.shape[0])

    def predict(self, features: np.ndarray) -> np.ndarray:
        # numpy: only learned verifiers and training need it
        import numpy as np

        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise PRMError(f"probe head takes {self.dim} features, got shape {features.shape}")
        logits = ((features - self.mean) / self.scale) @ self.coef + self.intercept
        return np.exp(-np.logaddexp(0.0, -logits))  # a sigmoid that never overflows

    def save(self, path: str | Path) -> None:
        # numpy: only learned verifiers and training need it
        import numpy as np

        np.savez(
            path,
            mean=self.mean,
            scale=self.scale,
            coef=self.coef,
            intercept=np.array([self.intercept]),
        )

    @classmethod
    def load(cls, path: str | Path, root: str | Path | None = None) -> ProbeHead:
        """The head in an .npz file (with `root`: a name resolved inside it), checked: three
        vectors of one length (scale > 0), one intercept, all finite."""
        try:
            arrays = read_head_arrays(read_bytes(path, root=root, max_bytes=MAX_HEAD_BYTES))
        except (FileError, VerifierDirError) as exc:
            raise VerifierDirError(f"head {str(path)!r}: {exc}") from None
        mean, scale, coef, intercept = (arrays[name] for name in HEAD_ARRAYS)
        if not (mean.shape == scale.shape == coef.shape) or not coef.shape[0]:
            raise VerifierDirError(f"{path}: mean, scale and coef must be vectors of one length")
        if intercept.shape != (1,):
            raise VerifierDirError(f"{path}: intercept must be one number")
        if not (scale > 0).all():
            raise VerifierDirError(f"{path}: every scale must be > 0")
        return cls(mean=mean, scale=scale, coef=coef, intercept=float(intercept[0]))


def render_solution(
    tokenizer: Any,
    problem: str,
    steps: Sequence[str],
    *,
    system_prompt: str,
    delimiter: str,
) -> tuple[list[int], list[int]]:
    """Token ids of the solution as the policy produced it, and the index of each step's last
    token (the token holding the step's last character).

    Causal attention makes a step's row independent of what follows it, so a partial solution
    (a beam) gets the same features as the full one at its steps.
    """
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": problem})
    text = str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    marks = []
    for i, step in enumerate(steps):
        text += (delimiter if i else "") + step
        marks.append(len(text))
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError) as exc:
        raise PRMError(f"the tokenizer gives no character offsets: {exc}") from exc
    ids = list(encoded["input_ids"])
    starts = [start for start, _ in encoded["offset_mapping"]]
    positions = [bisect.bisect_left(starts, mark) - 1 for mark in marks]
    if positions and positions[0] < 0:
        raise PRMError("could not locate the first step's tokens")
    return ids, positions


class HiddenStateFeatures(OnEngine):
    """Final-layer hidden states of a causal LM at each step's last token, from an in-process
    vLLM pooling engine (the model converted to an embedding model; no normalisation)."""

    def __init__(
        self,
        model: str | None,
        *,
        system_prompt: str,
        delimiter: str,
        settings: EngineSettings | None = None,
        max_concurrency: int = 64,
    ) -> None:
        # Every token's row is read, which vLLM does not serve from the prefix cache.
        settings = settings or EngineSettings(enable_prefix_caching=False)
        self.system_prompt, self.delimiter = system_prompt, delimiter
        self.max_concurrency = max_concurrency
        self.handle = EngineHandle(model or "embedded", settings=settings, runner="pooling")

    async def start(self) -> None:
        if self.handle.engine is not None:
            return
        # vLLM (and torch) load only when an engine is used
        from vllm.config import PoolerConfig

        self.handle.engine_args.setdefault("convert", "embed")
        self.handle.engine_args.setdefault(
            "pooler_config", PoolerConfig(seq_pooling_type="LAST", tok_pooling_type="ALL")
        )
        await self.handle.start()

    async def features(self, problem: str, solutions: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """One [steps, hidden] float32 array per solution."""
        if not solutions:
            return []
        await self.start()
        return await bounded_gather(
            [lambda steps=steps: self._one(problem, steps) for steps in solutions],
            self.handle.limit(self.max_concurrency),
        )

    async def _one(self, problem: str, steps: Sequence[str]) -> np.ndarray:
        # numpy: only learned verifiers and training need it
        import numpy as np
        from vllm import PoolingParams

        if not steps:
            return np.zeros((0, 0), dtype=np.float32)

        ids, positions = render_solution(
            self.handle.tokenizer,
            problem,
            steps,
            system_prompt=self.system_prompt,
            delimiter=self.delimiter,
        )
        if len(ids) > self.handle.max_model_len:
            raise ContextLengthError(
                f"prompt of {len(ids)} tokens exceeds max_model_len={self.handle.max_model_len}"
            )
        params = PoolingParams(task="token_embed", use_activation=False)
        rows = await self.handle.encode(ids, params)
        if rows.ndim != 2 or rows.shape[0] != len(ids):
            raise PRMError(f"expected one hidden state per token, got {tuple(rows.shape)}")
        return rows[positions].float().numpy()


class LearnedVerifier:
    """A verifier trained by `ttc verifier train` (`--prm learned:PATH`).

    >>> prm = LearnedVerifier("runs/verifier")
    >>> await prm.score(problem, [["step 1", "step 2"]])   # [[p1, p2]]

    A probe starts its own pooling engine on the model named in `verifier.json` (vLLM's pooling
    and generative runners cannot share one engine), or uses `features`, a `HiddenStateFeatures`
    on the same model and rendering (probes of one model can share one engine; shutting the
    verifier down leaves a shared one running). A reward model delegates to `VLLMPoolingPRM`.
    """

    name = "learned"

    def __init__(
        self,
        path: str | Path,
        *,
        settings: EngineSettings | None = None,
        max_concurrency: int = 64,
        features: HiddenStateFeatures | None = None,
    ) -> None:
        self.path = Path(path)
        self.info = read_verifier_info(self.path)
        info = VerifierInfo.model_validate(self.info)
        self.kind: str = info.kind
        self.head: ProbeHead | None = None
        self.backend: Any
        if info.kind == "probe":
            self.head = ProbeHead.load(info.head, root=self.path)
            rendering = info.rendering
            self.owns_backend = features is None
            if features is not None:
                shared = (features.system_prompt, features.delimiter)
                if shared != (rendering.system_prompt, rendering.step_delimiter):
                    raise ValueError(f"{path} renders solutions unlike the shared `features`")
            self.backend = features or HiddenStateFeatures(
                info.model,
                system_prompt=rendering.system_prompt,
                delimiter=rendering.step_delimiter or "",
                settings=settings,
                max_concurrency=max_concurrency,
            )
        else:
            self.owns_backend = True
            self.backend = VLLMPoolingPRM(
                str(checkpoint_inside(self.path, info.checkpoint or "")),
                settings=settings,
                step_tag=info.step_tag,
                max_concurrency=max_concurrency,
            )

    @property
    def startup_seconds(self) -> float | None:
        return self.backend.startup_seconds

    async def start(self) -> None:
        await self.backend.start()

    async def score(self, problem: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        if self.head is None:
            return list(await self.backend.score(problem, solutions))
        features = await self.backend.features(problem, solutions)
        return await asyncio.to_thread(self._apply_head, self.head, features)

    @staticmethod
    def _apply_head(head: ProbeHead, features: Sequence[np.ndarray]) -> list[list[float]]:
        return [
            [check_score(p, f"step {i}") for i, p in enumerate(head.predict(block))]
            if len(block)
            else []
            for block in features
        ]

    def shutdown(self) -> None:
        if self.owns_backend:
            self.backend.shutdown()
