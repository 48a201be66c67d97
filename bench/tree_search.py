"""Benchmark: the tree searches (MCTS, REBASE) beside weighted best-of-N, beam search and
particle filtering, at budgets N, each strategy in its own `ttc eval` run (same problems,
settings and seed) so that each one's engine utilisation is its own.

The test problems are those of `bench/compute_optimal.py`: the first half of `--problems`
rows of `mawps_singleop` and of `gsm8k_test`. Embedded model, 4 worked examples (the `ttc
eval` default), arithmetic verifier, seed 0. Writes OUT/report.json (strict and lenient
accuracy, mean generated tokens per problem), OUT/table.md and OUT/accuracy_tokens.png; the
eval's own summaries (engine utilisation with --peak-tok-s) are in OUT/test/<strategy>/.

    .venv/bin/python bench/tree_search.py --problems 60 --n 4,8 --peak-tok-s 581.6 \\
        --out bench/results/tree_search

An interrupted run continues where it stopped (`ttc eval --resume`). Not a test: numbers
depend on the model and the verifier (accuracy, tokens) and on the machine (utilisation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# the compute-optimal benchmark's problem sets, report and plot (same directory)
from compute_optimal import REPORT, plot, read_jsonl, report, ttc, write_sets

STRATEGIES = ["best_of_n", "beam_search", "particle_filtering", "mcts", "rebase"]
LABELS = [
    ("best-of-N (weighted)", "best_of_n", "weighted"),
    ("beam search", "beam_search", "weighted"),
    ("particle filtering", "particle_filtering", "weighted"),
    ("MCTS", "mcts", "weighted"),
    ("REBASE", "rebase", "weighted"),
]


def eval_args(dataset: Path, out: Path, strategy: str, args: argparse.Namespace) -> list[str]:
    resume = ["--resume"] if (out / "results.jsonl").exists() else []
    peak = [] if args.peak_tok_s is None else ["--peak-tok-s", str(args.peak_tok_s)]
    return [
        "eval", "--dataset", str(dataset), "--strategy", strategy, "--no-baseline",
        "--n", args.n, "--max-tokens", str(args.max_tokens),
        "--max-iterations", str(args.max_iterations), "--max-depth", str(args.max_iterations),
        "--prm", "arithmetic", "--seed", "0", "--out", str(out), "--no-progress",
        *peak, *resume,
    ]  # fmt: skip


def table(points: list[dict]) -> str:
    lines = [
        "| strategy | N | problems | strict | lenient | mean tokens |",
        "|---|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {p['label']} | {p['budget']} | {p['problems']} | {100 * p['accuracy']:.1f}% "
            f"| {100 * p['lenient_accuracy']:.1f}% | {p['tokens']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def complete_rows(test: Path) -> Path:
    """The rows of problems every (strategy, budget) point has finished (all of them once
    the runs are done; a fair comparison of an interrupted one), written to TEST/complete.jsonl."""
    rows = [r for s in STRATEGIES if (test / s / "results.jsonl").exists()
            for r in read_jsonl(test / s / "results.jsonl")]  # fmt: skip
    points = {(r["strategy"], r["budget"]) for r in rows}
    done: dict[str, set] = {}
    for r in rows:
        done.setdefault(r["id"], set()).add((r["strategy"], r["budget"]))
    kept = [r for r in rows if done[r["id"]] == points]
    path = test / "complete.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return path


def write_report(out: Path) -> None:
    REPORT[:] = LABELS  # the rows this benchmark reports
    points = report(complete_rows(out / "test"))
    order = {label: i for i, (label, _, _) in enumerate(LABELS)}
    points.sort(key=lambda p: (order[p["label"]], p["budget"]))
    (out / "report.json").write_text(json.dumps(points, indent=2) + "\n")
    (out / "table.md").write_text(table(points))
    plot(points, out / "accuracy_tokens.png")
    print(table(points))
    print(utilisation(out))


def utilisation(out: Path) -> str:
    """Each strategy's engine throughput and utilisation over its own run."""
    lines = []
    for strategy in STRATEGIES:
        summary = out / "test" / strategy / "summary.json"
        if not summary.exists():
            lines.append(f"{strategy}: no summary.json yet (the eval writes it at the end)")
            continue
        throughput = json.loads(summary.read_text()).get("throughput") or {}
        lines.append(
            f"{strategy}: {throughput.get('tok_s')} tok/s over {throughput.get('run_s')} s, "
            f"utilisation {throughput.get('utilisation')}"
        )
    text = "\n".join(lines) + "\n"
    (out / "utilisation.txt").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--problems", type=int, default=60, help="test problems (half each)")
    parser.add_argument("--n", default="4,8", help="budgets")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-iterations", type=int, default=12, help="and MCTS/REBASE depth")
    parser.add_argument("--peak-tok-s", type=float, help="the engine's peak, for utilisation")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        test, _ = write_sets(args.data, args.out, args.problems, 0)
        for strategy in STRATEGIES:
            ttc(*eval_args(test, args.out / "test" / strategy, strategy, args))
    write_report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
