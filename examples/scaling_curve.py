"""Accuracy against compute budget from Python: the evaluation API on a few problems.

    .venv/bin/python examples/scaling_curve.py --limit 5 --n 1,2,4 --out runs/scaling_example

`ttc eval` does the same with more options; this is what it is made of:
load_problems -> plan_runs -> build_graph (one per run) -> run_eval -> summarize -> plot_scaling.
The problems default to ../shared/data/mawps_singleop.jsonl beside the repository.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langgraph_ttc import logs
from langgraph_ttc.eval import (
    Problem,
    ResultsLog,
    build_graph,
    load_problems,
    parse_budgets,
    pending_work,
    plan_runs,
    run_eval,
    summarize,
)
from langgraph_ttc.eval.plots import plot_scaling
from langgraph_ttc.eval.report import format_table
from langgraph_ttc.types import PRM, Policy

REPOSITORY = Path(__file__).resolve().parent.parent
DATASET = REPOSITORY / ".." / "shared" / "data" / "mawps_singleop.jsonl"
SETTINGS: dict[str, Any] = dict(max_tokens=256, max_step_tokens=64, max_iterations=8, seed=0)


def new_results_log(out: Path) -> ResultsLog:
    """An empty results.jsonl in `out` (an earlier run's rows are never mixed in)."""
    out.mkdir(parents=True, exist_ok=True)
    log = ResultsLog(out / "results.jsonl")
    if log.path.exists():
        raise FileExistsError(f"{log.path} exists: choose another output directory")
    return log


async def scaling_curve(
    policy: Policy,
    prm: PRM | None,
    problems: Sequence[Problem],
    out: Path,
    *,
    strategies: Sequence[str] = ("best_of_n", "beam_search"),
    budgets: Sequence[int] = (1, 2, 4),
    beam_width: int = 2,
    settings: Mapping[str, Any] | None = None,
    concurrency: int = 4,
) -> list[dict[str, Any]]:
    """Run `strategies` (and the greedy baseline) at every budget on `problems`; write
    results.jsonl and scaling.png to `out`; return the summary (one point per strategy and
    budget: accuracy per selection mode, pass@N, tokens, time)."""
    log = new_results_log(out)
    specs = plan_runs(["greedy", *strategies], budgets, beam_width)
    graphs = {spec.key: build_graph(spec, policy, prm, settings or SETTINGS) for spec in specs}
    work = pending_work(problems, specs, done=set())
    await run_eval(work, graphs, log, concurrency=concurrency, progress=False)
    rows, _ = log.read()
    points = summarize(rows)
    await asyncio.to_thread(plot_scaling, points, out / "scaling.png", f"{len(problems)} problems")
    return points


async def main() -> None:
    from langgraph_ttc.policies import VLLMPolicy
    from langgraph_ttc.verifiers import ArithmeticVerifier

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(DATASET), help="a JSON Lines file")
    parser.add_argument("--limit", type=int, default=5, help="the first LIMIT problems")
    parser.add_argument("--n", type=parse_budgets, default=[1, 2, 4], help="budgets: 1,2,4")
    parser.add_argument("--strategies", nargs="+", default=["best_of_n", "beam_search"])
    parser.add_argument("--out", type=Path, default=Path("runs/scaling_example"))
    args = parser.parse_args()

    problems = load_problems(args.dataset, limit=args.limit)
    async with VLLMPolicy() as policy:  # the embedded model
        points = await scaling_curve(
            policy, ArithmeticVerifier(), problems, args.out,
            strategies=args.strategies, budgets=args.n,
        )  # fmt: skip
    print(format_table(points))
    print(f"plot: {args.out / 'scaling.png'}")


if __name__ == "__main__":  # vLLM spawns worker processes: keep the guard
    logs.configure()  # quiet, as `ttc` is; TTC_LOG_LEVEL=INFO shows vLLM's logs
    asyncio.run(main())
