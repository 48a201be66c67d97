"""The `probe` trainer: logistic regression on the policy model's hidden states at step ends.

Features come from `HiddenStateFeatures` (one pooling forward pass per candidate, the rows at
each step's last token). Labels are soft (Monte-Carlo step labels are fractions): each step is
fitted as a positive with weight p and a negative with weight 1 - p, which is the cross-entropy
on soft labels. The regularisation strength is picked by cross-validation grouped by problem.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from langgraph_ttc.backends import ManagedLifecycle, shutdown_backend
from langgraph_ttc.engine import EngineSettings
from langgraph_ttc.training.train import Row, Say, step_targets
from langgraph_ttc.verifiers.learned import HEAD_FILE, HiddenStateFeatures, ProbeHead

C_GRID = (0.001, 0.01, 0.1, 1.0)


def _soft_dataset(
    features: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row twice (label 1 weight p, label 0 weight 1 - p), zero weights dropped; also the
    index of the original row for each output row."""
    index = np.concatenate([np.arange(len(targets)), np.arange(len(targets))])
    labels = np.concatenate([np.ones(len(targets)), np.zeros(len(targets))]).astype(int)
    weights = np.concatenate([targets, 1.0 - targets])
    keep = weights > 0
    return features[index[keep]], labels[keep], weights[keep], index[keep]


def _fit(features: np.ndarray, targets: np.ndarray, c: float, seed: int) -> ProbeHead:
    # scikit-learn: the train extra
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    x, y, w, _ = _soft_dataset(scaler.transform(features), targets)
    if len(set(y.tolist())) < 2:
        raise ValueError("the training steps all have the same label; a probe needs both")
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(x, y, sample_weight=w)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    return ProbeHead(
        mean=scaler.mean_.astype(np.float64),
        scale=scale.astype(np.float64),
        coef=model.coef_[0].astype(np.float64),
        intercept=float(model.intercept_[0]),
    )


def _log_loss(head: ProbeHead, features: np.ndarray, targets: np.ndarray) -> float:
    p = np.clip(head.predict(features), 1e-7, 1 - 1e-7)
    return float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))


def fit_probe_head(
    features: np.ndarray,
    targets: np.ndarray,
    groups: Sequence[str],
    *,
    seed: int = 0,
    folds: int = 5,
) -> tuple[ProbeHead, dict[str, Any]]:
    """A head for [rows, dim] features and soft targets in [0, 1]; C by grouped k-fold log loss
    (the first of `C_GRID` when there are too few groups to fold)."""
    # scikit-learn: the train extra
    from sklearn.model_selection import GroupKFold

    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    distinct = sorted(set(groups))
    chosen, losses = 1.0, {}
    if len(distinct) >= 3:
        splitter = GroupKFold(n_splits=min(folds, len(distinct)))
        for c in C_GRID:
            fold_losses = []
            for train, test in splitter.split(features, targets, list(groups)):
                hard = (targets[train] > 0) & (targets[train] < 1)
                if len(set((targets[train] >= 0.5).tolist())) < 2 and not hard.any():
                    continue
                head = _fit(features[train], targets[train], c, seed)
                fold_losses.append(_log_loss(head, features[test], targets[test]))
            if fold_losses:
                losses[c] = float(np.mean(fold_losses))
        if losses:
            chosen = min(losses, key=losses.__getitem__)
    head = _fit(features, targets, chosen, seed)
    return head, {"C": chosen, "cv_log_loss": losses, "steps": len(targets)}


class ProbeTrainer:
    """Hidden-state probe on `model` (None: the embedded model); see the module docstring."""

    kind = "probe"

    def __init__(
        self,
        model: str | None,
        *,
        system_prompt: str,
        step_delimiter: str,
        settings: EngineSettings | None = None,
        seed: int = 0,
        features: Any = None,
    ) -> None:
        self.model = model or "embedded"
        self.system_prompt, self.step_delimiter, self.seed = system_prompt, step_delimiter, seed
        # `features`: a shared extractor (left running), or any object with
        # `async features(problem, solutions)`
        self.owns_extractor = features is None
        self.extractor = features or HiddenStateFeatures(
            model, system_prompt=system_prompt, delimiter=step_delimiter, settings=settings
        )
        self.head: ProbeHead | None = None
        self.facts: dict[str, Any] = {}

    async def row_features(self, rows: Sequence[Row]) -> list[np.ndarray]:
        """[steps, dim] per row: one extractor call per problem, all problems at once (the
        extractor bounds the requests in flight)."""
        by_problem: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            by_problem.setdefault(str(row["problem_id"]), []).append(i)
        groups = list(by_problem.values())
        results = await asyncio.gather(
            *(
                self.extractor.features(
                    rows[indices[0]]["problem"], [list(rows[i].get("steps") or []) for i in indices]
                )
                for indices in groups
            )
        )
        out: list[np.ndarray] = [np.zeros((0, 0))] * len(rows)
        for indices, blocks in zip(groups, results, strict=True):
            for i, block in zip(indices, blocks, strict=True):
                out[i] = block
        return out

    async def fit(self, rows: Sequence[Row], say: Say) -> dict[str, Any]:
        if isinstance(self.extractor, ManagedLifecycle):
            say(f"starting the pooling engine on {self.model}...")
            await self.extractor.start()
        say(f"reading hidden states of {len(rows)} candidates...")
        blocks, targets, groups = [], [], []
        for row, feats in zip(rows, await self.row_features(rows), strict=True):
            labels = step_targets(row)
            if labels:
                blocks.append(feats)
                targets += labels
                groups += [str(row["problem_id"])] * len(labels)
        features = np.concatenate(blocks)
        say(f"fitting the head on {len(targets)} steps x {features.shape[1]} features...")
        self.head, self.facts = fit_probe_head(features, np.array(targets), groups, seed=self.seed)
        return {**self.facts, "feature_dim": int(features.shape[1])}

    async def score(self, rows: Sequence[Row]) -> list[list[float]]:
        if self.head is None:
            raise RuntimeError("fit the probe before scoring")
        head = self.head
        return [head.predict(f).tolist() if len(f) else [] for f in await self.row_features(rows)]

    def save(self, out: Path) -> dict[str, Any]:
        if self.head is None:
            raise RuntimeError("fit the probe before saving")
        self.head.save(out / HEAD_FILE)
        return {
            "model": self.model,
            "head": HEAD_FILE,
            "features": {
                "source": "vllm pooling runner (convert=embed, token_embed, no activation)",
                "layer": "final (after the model's last norm)",
                "position": "last token of each step",
                "dim": self.head.dim,
            },
            "rendering": {
                "system_prompt": self.system_prompt,
                "step_delimiter": self.step_delimiter,
            },
        }

    def close(self) -> None:
        if self.owns_extractor:
            shutdown_backend(self.extractor)
