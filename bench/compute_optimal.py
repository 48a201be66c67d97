"""Benchmark: the compute-optimal router against fixed strategies at equal token budgets.

1. Writes two disjoint problem sets mixing `mawps_singleop` and `gsm8k_test` (half each): a
   tuning set and a test set.
2. `ttc eval` on the tuning set (best-of-N, beam search, particle filtering, adaptive
   majority), then `ttc tune` fits a routing table from it.
3. `ttc eval` on the test set: greedy, best-of-N, beam search, particle filtering, adaptive
   majority and the router with the fitted table, at the budgets given.
4. Prints strict and lenient accuracy and mean generated tokens per problem for each
   (majority = best-of-N with majority selection; best-of-N, beam search, particle filtering
   and the router with weighted selection; adaptive majority with majority), writes them to
   OUT/report.json and plots strict accuracy against tokens in OUT/accuracy_tokens.png.

    .venv/bin/python bench/compute_optimal.py --problems 60 --tune-problems 60 --n 4,16 \\
        --out runs/compute_optimal          # the full run: hours on a laptop CPU
    .venv/bin/python bench/compute_optimal.py --problems 6 --tune-problems 6 --n 4 --out runs/co6

Each eval resumes if OUT already holds part of it (`--resume`). Not a test: numbers depend on
the machine, the model and the verifier.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SOURCES = ("mawps_singleop.jsonl", "gsm8k_test.jsonl")
FIXED = ["best_of_n", "beam_search", "particle_filtering", "adaptive_majority"]
# (label, strategy, selection mode) rows of the report
REPORT = [
    ("greedy", "greedy", "naive"),
    ("majority", "best_of_n", "majority"),
    ("best-of-N (weighted)", "best_of_n", "weighted"),
    ("beam search", "beam_search", "weighted"),
    ("particle filtering", "particle_filtering", "weighted"),
    ("adaptive majority", "adaptive_majority", "majority"),
    ("router", "compute_optimal", "weighted"),
]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_sets(data: Path, out: Path, test_n: int, tune_n: int) -> tuple[Path, Path]:
    """Test problems are the first of each source, tuning problems the next ones: disjoint."""
    test, tune = [], []
    for name in SOURCES:
        rows = read_jsonl(data / name)
        half_test, half_tune = test_n // len(SOURCES), tune_n // len(SOURCES)
        test += rows[:half_test]
        tune += rows[half_test : half_test + half_tune]
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "test.jsonl", out / "tune.jsonl"
    for path, rows in zip(paths, (test, tune), strict=True):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def ttc(*args: str) -> None:
    command = [sys.executable, "-m", "langgraph_ttc.cli", *args]
    print("+ ttc " + " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


def eval_args(dataset: Path, out: Path, strategies: list[str], args: argparse.Namespace) -> list:
    resume = ["--resume"] if (out / "results.jsonl").exists() else []
    cap = [] if args.concurrency is None else ["--concurrency", str(args.concurrency)]
    return [
        "eval", "--dataset", str(dataset), "--strategy", *strategies, "--n", args.n,
        "--max-tokens", str(args.max_tokens), "--max-iterations", str(args.max_iterations),
        *cap, "--prm", args.prm, "--seed", "0", "--out", str(out), "--no-progress", *resume,
    ]  # fmt: skip


def report(results: Path) -> list[dict]:
    """Accuracy (strict: the selected candidate states the right answer; lenient: with the
    last-number fallback) and mean generated tokens per problem, per (strategy, budget)."""
    by_point: dict[tuple[str, str, int], list[tuple[bool, bool, int]]] = defaultdict(list)
    for row in read_jsonl(results):
        for label, strategy, mode in REPORT:
            if row["strategy"] == strategy:
                strict = bool((row.get("strict_correct") or {}).get(mode))
                lenient = bool((row.get("correct") or {}).get(mode))
                by_point[(label, strategy, row["budget"])].append((strict, lenient, row["tokens"]))
    points = []
    for (label, strategy, budget), values in sorted(by_point.items()):
        count = len(values)
        points.append(
            {
                "label": label,
                "strategy": strategy,
                "budget": budget,
                "problems": count,
                "accuracy": round(sum(v[0] for v in values) / count, 4),
                "lenient_accuracy": round(sum(v[1] for v in values) / count, 4),
                "tokens": round(sum(v[2] for v in values) / count, 1),
            }
        )
    return points


def plot(points: list[dict], out: Path) -> None:
    """Strict accuracy against mean generated tokens per problem, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    # distinct markers and hollow, larger ones on dashed lines: equal points stay visible
    for i, label in enumerate(dict.fromkeys(p["label"] for p in points)):
        line = sorted((p for p in points if p["label"] == label), key=lambda p: p["tokens"])
        style: dict = {"marker": "osD^vPX"[i % 7]}
        if i % 3 == 0:
            style |= {"ls": "--", "markersize": 11, "markerfacecolor": "none"}
        if label == "router":
            style |= {"lw": 2.5, "color": "black"}
        ax.plot([p["tokens"] for p in line], [100 * p["accuracy"] for p in line],
                label=label, **style)  # fmt: skip
        for p in line:
            ax.annotate(f"N={p['budget']}", (p["tokens"], 100 * p["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("mean generated tokens per problem (log)")
    ax.set_ylabel("strict accuracy (%)")
    problems = max(p["problems"] for p in points)
    ax.set_title(f"Accuracy against compute, {problems} test problems")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def write_report(out: Path) -> None:
    points = report(out / "test" / "results.jsonl")
    (out / "report.json").write_text(json.dumps(points, indent=2) + "\n")
    plot(points, out / "accuracy_tokens.png")
    print(f"{'strategy':<22}{'N':>4}{'problems':>10}{'strict':>8}{'lenient':>9}{'tokens':>9}")
    for p in points:
        print(
            f"{p['label']:<22}{p['budget']:>4}{p['problems']:>10}{p['accuracy']:>8.3f}"
            f"{p['lenient_accuracy']:>9.3f}{p['tokens']:>9.1f}"
        )
    print(f"wrote {out / 'report.json'} and {out / 'accuracy_tokens.png'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--problems", type=int, default=60, help="test problems (half each)")
    parser.add_argument("--tune-problems", type=int, default=60, help="tuning problems")
    parser.add_argument("--n", default="4,16", help="budgets (samples of --max-tokens)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-iterations", type=int, default=12)
    parser.add_argument("--prm", default="arithmetic")
    parser.add_argument(
        "--concurrency", type=int, help="ttc eval's cap on problems in flight (default: its own)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report-only", action="store_true", help="only report OUT/test")
    args = parser.parse_args()

    if not args.report_only:
        test, tune = write_sets(args.data, args.out, args.problems, args.tune_problems)
        ttc(*eval_args(tune, args.out / "tune", FIXED, args))
        table = args.out / "table.json"
        ttc("tune", "--results", str(args.out / "tune" / "results.jsonl"), "--out", str(table))
        strategies = [*FIXED, "compute_optimal"]
        ttc(*eval_args(test, args.out / "test", strategies, args), "--table", str(table))
    write_report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
