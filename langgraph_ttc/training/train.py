"""`ttc verifier train`: fit a verifier on collected rows and measure it on held-out problems.

The rows (`candidates.jsonl` from `ttc verifier collect`) are split by problem id; a `Trainer`
fits on the training problems, scores the held-out candidates step by step, and saves itself.
The held-out report (AUC and best-of-N selection accuracy, with majority vote and "any correct"
for reference) goes to the log and into `verifier.json`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from langgraph_ttc.answers import normalize_answer
from langgraph_ttc.selection import aggregate
from langgraph_ttc.verifiers.learned import write_verifier_info

Row = Mapping[str, Any]
Say = Callable[[str], None]


class Trainer(Protocol):
    """One kind of learned verifier: fit on rows, score rows, save to a directory."""

    kind: str

    async def fit(self, rows: Sequence[Row], say: Say) -> dict[str, Any]:
        """Train on the rows; returns training facts (sizes, losses) for the report."""
        ...

    async def score(self, rows: Sequence[Row]) -> list[list[float]]:
        """Per-step scores in [0, 1] for each row's steps."""
        ...

    def save(self, out: Path) -> dict[str, Any]:
        """Write the model files into `out`; returns the `verifier.json` fields describing them."""
        ...

    def close(self) -> None: ...


def step_targets(row: Row) -> list[float]:
    """A row's per-step training labels: its Monte-Carlo step labels when it has them (one per
    step), else its outcome label for every step."""
    steps = row.get("steps") or []
    step_labels = row.get("step_labels")
    if step_labels is not None and len(step_labels) == len(steps):
        return [float(x) for x in step_labels]
    return [float(row["label"])] * len(steps)


def split_by_problem(
    rows: Sequence[Row], holdout: float, seed: int = 0
) -> tuple[list[Row], list[Row]]:
    """(train, held-out) with every problem's candidates on one side."""
    if not 0 <= holdout < 1:
        raise ValueError(f"--holdout must be in [0, 1), got {holdout}")
    problems = sorted({str(row["problem_id"]) for row in rows})
    random.Random(seed).shuffle(problems)
    count = round(len(problems) * holdout)
    if holdout > 0 and len(problems) >= 2:
        count = min(max(count, 1), len(problems) - 1)
    held = set(problems[:count])
    return (
        [row for row in rows if str(row["problem_id"]) not in held],
        [row for row in rows if str(row["problem_id"]) in held],
    )


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """ROC AUC, None when only one class is present."""
    if len(set(labels)) < 2:
        return None
    # scikit-learn: the train extra
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _majority_label(rows: Sequence[Row]) -> int:
    """The label of the most frequent stated answer (no answer: wrong)."""
    answers = [
        (normalize_answer(row["stated_answer"]), row)
        for row in rows
        if row.get("stated_answer") is not None
    ]
    if not answers:
        return 0
    top, _ = Counter(key for key, _ in answers).most_common(1)[0]
    return int(next(row for key, row in answers if key == top)["label"])


def heldout_metrics(
    rows: Sequence[Row], step_scores: Sequence[Sequence[float]], aggregation: str = "last"
) -> dict[str, Any]:
    """AUC (candidates by aggregated score vs outcome; steps vs step labels >= 0.5) and
    best-of-N selection accuracy per problem, against majority vote and the oracle."""
    scores = [aggregate(s, aggregation) for s in step_scores]
    by_problem: dict[str, list[tuple[float, Row]]] = defaultdict(list)
    for score, row in zip(scores, rows, strict=True):
        by_problem[str(row["problem_id"])].append((score, row))
    picks = [max(group, key=lambda pair: pair[0])[1]["label"] for group in by_problem.values()]
    problems = max(len(by_problem), 1)
    step_pairs = [
        (score, int(target >= 0.5))
        for row, row_scores in zip(rows, step_scores, strict=True)
        for score, target in zip(row_scores, step_targets(row), strict=False)
    ]
    return {
        "problems": len(by_problem),
        "candidates": len(rows),
        "aggregation": aggregation,
        "candidate_auc": auc(scores, [int(row["label"]) for row in rows]),
        "step_auc": auc([s for s, _ in step_pairs], [t for _, t in step_pairs]),
        "selection_accuracy": sum(picks) / problems,
        "majority_accuracy": sum(
            _majority_label([row for _, row in group]) for group in by_problem.values()
        )
        / problems,
        "any_correct": sum(any(row["label"] for _, row in group) for group in by_problem.values())
        / problems,
        "mean_label": sum(int(row["label"]) for row in rows) / max(len(rows), 1),
    }


def describe_metrics(metrics: Mapping[str, Any]) -> str:
    def fmt(value: Any) -> str:
        return "n/a (one class)" if value is None else f"{value:.3f}"

    return (
        f"held-out: {metrics['problems']} problems, {metrics['candidates']} candidates; "
        f"candidate AUC {fmt(metrics['candidate_auc'])}, step AUC {fmt(metrics['step_auc'])}; "
        f"selection accuracy {metrics['selection_accuracy']:.3f} (majority "
        f"{metrics['majority_accuracy']:.3f}, any correct {metrics['any_correct']:.3f}, "
        f"random {metrics['mean_label']:.3f})"
    )


def _save(trainer: Trainer, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    return trainer.save(out)


async def run_train(
    rows: Sequence[Row],
    trainer: Trainer,
    out: Path,
    *,
    holdout: float = 0.2,
    seed: int = 0,
    say: Say = print,
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Split, fit, evaluate on the held-out problems, save; returns the `verifier.json` dict."""
    train, held = split_by_problem(rows, holdout, seed)
    if not any(row.get("steps") for row in train):
        raise ValueError("no training rows with steps")
    say(
        f"training a {trainer.kind} on {len(train)} candidates "
        f"({len({r['problem_id'] for r in train})} problems); holding out {len(held)}"
    )
    started = time.perf_counter()
    try:
        facts = await trainer.fit(train, say)
        fit_seconds = time.perf_counter() - started
        metrics = heldout_metrics(held, await trainer.score(held)) if held else None
        info = await asyncio.to_thread(_save, trainer, out)
    finally:
        trainer.close()
    if metrics is not None:
        say(describe_metrics(metrics))
    info = {
        "kind": trainer.kind,
        **info,
        "training": {
            **facts,
            "source": dict(source or {}),
            "holdout": holdout,
            "seed": seed,
            "train_candidates": len(train),
            "fit_seconds": round(fit_seconds, 1),
            "heldout": metrics,
        },
    }
    await asyncio.to_thread(write_verifier_info, out, info)
    say(f"saved the {trainer.kind} to {out} in {time.perf_counter() - started:.0f}s")
    return info
