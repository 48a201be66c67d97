"""How much of the oracle's headroom a verifier captures (a benchmark, not a test).

    PYTHONPATH=. python bench/verifier_study.py --eval runs/heldout_fs4 runs/heldout_fs0 \\
        --verifier runs/verifier --out bench/results/verifier_study

Reads `ttc eval` runs of best-of-N (one budget, e.g. N=16, any `--prm`) on problems no verifier
saw in training, and re-scores their candidates with a learned verifier (`ttc verifier train`):
the candidates are the same, so every figure compares selection only. Per run, strict
accuracy (the selected candidate states the right answer) of

    majority@N, weighted@N with the run's verifier, weighted@N with the learned verifier,
    pass@N (any candidate states the right answer: an oracle verifier)

and the headroom captured, (weighted - majority) / (pass@N - majority); also each verifier's ROC
AUC over the candidates and its naive (best-scored) pick. Writes OUT.json and a bar chart
OUT.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from langgraph_ttc.selection import aggregate, select, split_steps
from langgraph_ttc.verifiers import LearnedVerifier


def read_rows(run: Path, budget: int | None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["strategy"] == "best_of_n" and r.get("candidates")]
    budget = budget or max(r["budget"] for r in rows)
    return [r for r in rows if r["budget"] == budget]


async def learned_scores(row: dict[str, Any], verifier: LearnedVerifier) -> list[dict[str, Any]]:
    """The row's candidates re-scored by `verifier` (last step's score, as the strategies
    aggregate by default)."""
    candidates = row["candidates"]
    step_scores = await verifier.score(row["problem"], [split_steps(c["text"]) for c in candidates])
    return [
        {**c, "score": aggregate(scores, "last") if scores else 0.0}
        for c, scores in zip(candidates, step_scores, strict=True)
    ]


def picks_right(candidates: list[dict[str, Any]], mode: str) -> bool:
    """The selected candidate states the right answer."""
    chosen = select(candidates, mode)
    return bool(chosen and chosen["strict_correct"])


def auc(rows: list[list[dict[str, Any]]]) -> float | None:
    """ROC AUC of candidate scores against strict correctness, over every candidate."""
    from sklearn.metrics import roc_auc_score

    labels = [bool(c["strict_correct"]) for cands in rows for c in cands]
    if len(set(labels)) < 2:
        return None
    return round(float(roc_auc_score(labels, [c["score"] for cands in rows for c in cands])), 3)


def headroom(weighted: float, majority: float, oracle: float) -> float | None:
    return None if oracle <= majority else (weighted - majority) / (oracle - majority)


async def study(run: Path, verifier: LearnedVerifier, budget: int | None) -> dict[str, Any]:
    rows = read_rows(run, budget)
    config = json.loads((run / "config.json").read_text())
    rescored = list(await asyncio.gather(*(learned_scores(r, verifier) for r in rows)))
    learned = [picks_right(cands, "weighted") for cands in rescored]
    count = len(rows)

    def share(values: list[bool]) -> float:
        return round(sum(values) / count, 4)

    majority = share([bool(r["strict_correct"]["majority"]) for r in rows])
    weighted = share([bool(r["strict_correct"]["weighted"]) for r in rows])
    learned_share = share(list(learned))
    oracle = share([bool(r["strict_pass"]) for r in rows])
    return {
        "run": run.name,
        "problems": count,
        "n": rows[0]["budget"],
        "few_shot": config.get("few_shot", 0),
        "run_verifier": config.get("prm"),
        "majority": majority,
        "weighted_run_verifier": weighted,
        "weighted_learned": learned_share,
        "pass": oracle,
        "headroom_run_verifier": headroom(weighted, majority, oracle),
        "headroom_learned": headroom(learned_share, majority, oracle),
        # how well each verifier ranks single candidates, and its best-scored pick
        "auc_run_verifier": auc([r["candidates"] for r in rows]),
        "auc_learned": auc(rescored),
        "naive_run_verifier": share([bool(r["strict_correct"]["naive"]) for r in rows]),
        "naive_learned": share([picks_right(cands, "naive") for cands in rescored]),
    }


def plot(results: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [
        ("majority", "majority@N"),
        ("weighted_run_verifier", "weighted@N, arithmetic"),
        ("weighted_learned", "weighted@N, learned"),
        ("pass", "pass@N (oracle)"),
    ]
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    width = 0.8 / len(bars)
    for i, (key, label) in enumerate(bars):
        xs = [j + (i - (len(bars) - 1) / 2) * width for j in range(len(results))]
        ax.bar(xs, [100 * r[key] for r in results], width, label=label)
    ax.set_xticks(
        range(len(results)),
        [f"{r['few_shot']}-shot, N={r['n']}, {r['problems']} problems" for r in results],
    )
    ax.set_ylabel("strict accuracy (%)")
    ax.set_title("Selection on held-out problems: verifiers against the oracle")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval", type=Path, nargs="+", required=True, help="ttc eval --out dirs")
    parser.add_argument("--verifier", type=Path, required=True, help="ttc verifier train --out")
    parser.add_argument("--budget", type=int, default=None, help="default: the run's largest")
    parser.add_argument("--out", type=Path, default=Path("bench/results/verifier_study"))
    args = parser.parse_args()
    verifier = LearnedVerifier(args.verifier)
    try:
        results = [await study(run, verifier, args.budget) for run in args.eval]
    finally:
        verifier.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out.with_suffix(".png"))
    header = ("run", "shot", "N", "majority", "wtd-run", "wtd-learned", "pass", "head-run",
              "head-learned", "auc-run", "auc-learned")  # fmt: skip
    print("".join(f"{h:>13}" for h in header))
    for r in results:
        cells = [r["run"], r["few_shot"], r["n"], r["majority"], r["weighted_run_verifier"],
                 r["weighted_learned"], r["pass"], r["headroom_run_verifier"],
                 r["headroom_learned"], r["auc_run_verifier"], r["auc_learned"]]  # fmt: skip
        print("".join(f"{c:>13.3f}" if isinstance(c, float) else f"{c!s:>13}" for c in cells))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
