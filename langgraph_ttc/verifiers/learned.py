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
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph_ttc.engine import EngineSettings
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


def read_verifier_info(path: str | Path) -> dict[str, Any]:
    """The validated `verifier.json` of a trained verifier directory."""
    path = Path(path)
    info_path = path / VERIFIER_FILE
    if not info_path.is_file():
        raise ValueError(f"{path} is not a trained verifier: no {VERIFIER_FILE} in it")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{info_path} is not valid JSON: {exc}") from exc
    if not isinstance(info, dict) or info.get("kind") not in KINDS:
        raise ValueError(f"{info_path}: 'kind' must be one of {KINDS}")
    if info.get("format") != FORMAT_VERSION:
        raise ValueError(f"{info_path}: format {info.get('format')!r}, expected {FORMAT_VERSION}")
    return info


def write_verifier_info(path: str | Path, info: Mapping[str, Any]) -> None:
    Path(path, VERIFIER_FILE).write_text(
        json.dumps({"format": FORMAT_VERSION, **info}, indent=2) + "\n"
    )


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
    def load(cls, path: str | Path) -> ProbeHead:
        # numpy: only learned verifiers and training need it
        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            head = cls(
                mean=data["mean"].astype(np.float64),
                scale=data["scale"].astype(np.float64),
                coef=data["coef"].astype(np.float64),
                intercept=float(data["intercept"][0]),
            )
        if not head.mean.shape == head.scale.shape == head.coef.shape or head.coef.ndim != 1:
            raise ValueError(f"{path}: mean, scale and coef must be vectors of one length")
        return head


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
        self.kind: str = self.info["kind"]
        self.head: ProbeHead | None = None
        self.backend: Any
        if self.kind == "probe":
            self.head = ProbeHead.load(self.path / self.info.get("head", HEAD_FILE))
            rendering = self.info["rendering"]
            self.owns_backend = features is None
            if features is not None:
                shared = (features.system_prompt, features.delimiter)
                if shared != (rendering["system_prompt"], rendering["step_delimiter"]):
                    raise ValueError(f"{path} renders solutions unlike the shared `features`")
            self.backend = features or HiddenStateFeatures(
                self.info["model"],
                system_prompt=rendering["system_prompt"],
                delimiter=rendering["step_delimiter"],
                settings=settings,
                max_concurrency=max_concurrency,
            )
        else:
            self.owns_backend = True
            self.backend = VLLMPoolingPRM(
                str(self.path / self.info["checkpoint"]),
                settings=settings,
                step_tag=self.info.get("step_tag", "<extra_0>"),
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
