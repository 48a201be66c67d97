"""Confidence-based methods against majority and a verifier (a benchmark, not a test).

    PYTHONPATH=. python bench/confidence.py --out bench/results/confidence

The 60 held-out problems of the verifier study (rows 100-114 of mawps_singleop,
mawps_addsub, mawps_multiarith and gsm8k_test), the embedded model, 4 worked examples,
max_tokens 256, seed 0. Three runs per problem:

1. best-of-N, n=16, with token confidences (top-20 log-probabilities) and the arithmetic
   verifier's scores: majority@16, weighted best-of-N (arithmetic), self-certainty, and
   DeepConf offline (its own `voting`: the 90% most confident traces by lowest 32-token group
   confidence, confidence-weighted vote) are all read from these same 16 samples;
2. DeepConf online (n <= 16, 4 warm-up traces, keep 0.9, window 32, consensus 0.95);
3. speculative rejection (n=16, checkpoints every 64 tokens, half of the growing samples
   rejected at each, arithmetic verifier).

Strict accuracy (the selected candidate states the right answer), generated tokens per
problem, and headroom captured = (accuracy - majority@16) / (strict pass@16 - majority@16).
Writes OUT/report.json, OUT/report.md and OUT/accuracy_tokens.png; OUT/rows.jsonl keeps one
line per problem and method, so an interrupted run resumes. `--report-only` redraws the plot
from an existing OUT/report.json without running anything:

    PYTHONPATH=. python bench/confidence.py --out bench/results/confidence --report-only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from langgraph_ttc import create_best_of_n, create_deepconf, create_speculative_rejection
from langgraph_ttc.answers import grade
from langgraph_ttc.eval.datasets import load_problems
from langgraph_ttc.eval.metrics import stated_answer
from langgraph_ttc.policies import VLLMPolicy
from langgraph_ttc.selection import select
from langgraph_ttc.strategies.deepconf import voting
from langgraph_ttc.strategies.settings import DeepConfSettings
from langgraph_ttc.verifiers import ArithmeticVerifier
from langgraph_ttc.worked_examples import select_examples

SOURCES = ("mawps_singleop", "mawps_addsub", "mawps_multiarith", "gsm8k_test")
ROWS = range(100, 115)
METHODS = [
    ("majority", "majority@16"),
    ("weighted", "weighted best-of-16 (arithmetic)"),
    ("self_certainty", "self-certainty vote"),
    ("deepconf_offline", "DeepConf offline (keep 90%)"),
    ("deepconf_online", "DeepConf online (keep 90%)"),
    ("speculative_rejection", "speculative rejection (arithmetic)"),
]


def problems(data: Path, per_source: int) -> list[Any]:
    chosen = []
    for source in SOURCES:
        rows = load_problems(str(data / f"{source}.jsonl"), limit=ROWS.stop)
        chosen += [(f"{source}:{p.id}", p) for p in rows[ROWS.start : ROWS.start + per_source]]
    return chosen


def strictly_right(candidate: dict[str, Any] | None, reference: str) -> bool:
    answer = stated_answer(candidate) if candidate else None
    return answer is not None and bool(grade(answer, reference, 5.0))


async def solve(
    key: str, problem: Any, policy: VLLMPolicy, common: dict[str, Any]
) -> list[dict[str, Any]]:
    """The rows of one problem: every method's strict verdict and tokens."""
    inp = {"problem": problem.problem}
    prm = ArithmeticVerifier()
    bon = create_best_of_n(policy, prm, n=16, selection="confidence", **common)
    out = await bon.ainvoke(inp)
    pool, tokens = out["candidates"], out["usage"]["policy_tokens"]
    offline = voting(pool, DeepConfSettings(mode="offline", keep=0.9, selection="confidence"))
    picks = {
        "majority": select(pool, "majority"),
        "weighted": select(pool, "weighted"),
        "self_certainty": select(pool, "self_certainty"),
        "deepconf_offline": select(offline, "confidence"),
    }
    rows = [
        {"method": m, "right": strictly_right(c, problem.answer), "tokens": tokens}
        for m, c in picks.items()
    ]
    passed = any(strictly_right(c, problem.answer) for c in pool)
    online = await create_deepconf(policy, n=16, warmup=4, keep=0.9, window=32, **common).ainvoke(
        inp
    )
    rows.append(method_row("deepconf_online", online, problem.answer))
    spec = create_speculative_rejection(
        policy, prm, n=16, checkpoint_tokens=64, reject=0.5, **common
    )
    rows.append(method_row("speculative_rejection", await spec.ainvoke(inp), problem.answer))
    return [{**row, "id": key, "pass": passed} for row in rows]


def method_row(method: str, out: dict[str, Any], reference: str) -> dict[str, Any]:
    chosen = next((c for c in out["candidates"] if c["text"] == out["solution"]), None)
    return {
        "method": method,
        "right": strictly_right(chosen, reference),
        "tokens": out["usage"]["policy_tokens"],
    }


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = sorted({r["id"] for r in rows})
    solved = [i for i in ids if len([r for r in rows if r["id"] == i]) == len(METHODS)]
    done = [r for r in rows if r["id"] in solved]
    count = len(solved)
    pass_at = sum(next(r["pass"] for r in done if r["id"] == i) for i in solved) / count
    by = {m: [r for r in done if r["method"] == m] for m, _ in METHODS}
    majority = sum(r["right"] for r in by["majority"]) / count
    table = []
    for method, label in METHODS:
        accuracy = sum(r["right"] for r in by[method]) / count
        room = pass_at - majority
        table.append(
            {
                "method": label,
                "problems": count,
                "strict_accuracy": round(accuracy, 4),
                "tokens_per_problem": round(sum(r["tokens"] for r in by[method]) / count, 1),
                "headroom_captured": None if room <= 0 else round((accuracy - majority) / room, 3),
                "strict_pass@16": round(pass_at, 4),
            }
        )
    return table


def report(table: list[dict[str, Any]], out: Path) -> None:
    lines = [
        f"{table[0]['problems']} problems, n=16, strict pass@16 {table[0]['strict_pass@16']:.1%}",
        "",
        "| method | strict accuracy | tokens / problem | headroom captured |",
        "|---|---|---|---|",
    ]
    for row in table:
        room = row["headroom_captured"]
        lines.append(
            f"| {row['method']} | {row['strict_accuracy']:.1%} | {row['tokens_per_problem']:.0f}"
            f" | {'-' if room is None else f'{room:.0%}'} |"
        )
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(table, indent=2) + "\n")
    print("\n".join(lines))
    plot(table, out / "accuracy_tokens.png")


def plot(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = same_point_groups(table)
    xs = [x for x, _, _ in points]
    span = (max(xs) - min(xs)) or 1.0
    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    # a legend, not labels at the points: several methods share a point (read from the same
    # samples), and nearby points leave no room for text; a marker and colour per point
    for (x, y, names), marker in zip(points, "osD^vPX*", strict=False):
        ax.scatter([x], [y], s=60, marker=marker, zorder=3, label=" & ".join(names))
    pass_at = 100 * table[0]["strict_pass@16"]
    ax.axhline(pass_at, ls=":", c="grey", label="strict pass@16")
    ax.set_xlim(min(xs) - 0.25 * span, max(xs) + 0.25 * span)
    ax.set_ylim(0, pass_at * 1.1)
    ax.set_xlabel("generated tokens per problem")
    ax.set_ylabel("strict accuracy (%)")
    ax.set_title(f"{table[0]['problems']} held-out problems, embedded model, n=16")
    ax.legend(
        loc="center",
        fontsize=8,
        title="methods (those at one point share its marker)",
        title_fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def same_point_groups(table: list[dict[str, Any]]) -> list[tuple[float, float, list[str]]]:
    """(tokens, accuracy %, methods) per distinct point: methods read from the same samples
    share their tokens, and often their accuracy."""
    groups: dict[tuple[float, float], list[str]] = {}
    for row in table:
        key = (row["tokens_per_problem"], 100 * row["strict_accuracy"])
        groups.setdefault(key, []).append(row["method"])
    return [(x, y, names) for (x, y), names in groups.items()]


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


async def run_all(
    todo: list[tuple[str, Any]], saved: Path, rows: list[dict[str, Any]], concurrency: int
) -> None:
    common = {"max_tokens": 256, "seed": 0, "examples": tuple(select_examples(4))}
    policy = VLLMPolicy()
    await policy.start()
    started, limit = time.perf_counter(), asyncio.Semaphore(concurrency)

    async def one(key: str, problem: Any) -> None:
        async with limit:
            new = await solve(key, problem, policy, common)
        rows.extend(new)
        append_rows(saved, new)
        print(f"{len({r['id'] for r in rows})} problems, {time.perf_counter() - started:.0f}s")

    try:
        await asyncio.gather(*(one(k, p) for k, p in todo))
    finally:
        policy.shutdown()


def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        plot(json.loads((out / "report.json").read_text()), out / "accuracy_tokens.png")
        return
    saved = out / "rows.jsonl"
    rows = [json.loads(line) for line in saved.read_text().splitlines()] if saved.exists() else []
    done = {r["id"] for r in rows}
    todo = [(k, p) for k, p in problems(Path(args.data), args.per_source) if k not in done]
    if todo:
        asyncio.run(run_all(todo, saved, rows, args.concurrency))
    report(summarize(rows), out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="bench/results/confidence")
    parser.add_argument("--per-source", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="redraw OUT/accuracy_tokens.png from OUT/report.json (runs nothing)",
    )
    main(parser.parse_args())
    sys.exit(0)
