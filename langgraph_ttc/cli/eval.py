"""`ttc eval`: accuracy of strategies against budget N on a dataset (scaling curves), from
the arguments to the report."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from langgraph_ttc.backends import ManagedLifecycle
from langgraph_ttc.cli.flags import (
    add_backend_flags,
    add_dataset_flags,
    add_few_shot_flags,
    add_setting_flags,
    examples_setting,
    make_backends,
)
from langgraph_ttc.cli.progress import say, start_policy
from langgraph_ttc.errors import BackendDeadError, PolicyError
from langgraph_ttc.eval.budgets import RunSpec, parse_budgets, plan_runs
from langgraph_ttc.eval.datasets import Fields, Problem, load_problems
from langgraph_ttc.eval.graphs import build_graph
from langgraph_ttc.eval.metrics import summarize
from langgraph_ttc.eval.outdir import (
    EvalUsageError,
    dataset_fingerprint,
    exclusive,
    prepare_out_dir,
)
from langgraph_ttc.eval.plots import plot_accuracy_tokens, plot_load, plot_scaling
from langgraph_ttc.eval.report import describe_throughput, format_table, title, write_summary
from langgraph_ttc.eval.results import ResultsLog, row_key
from langgraph_ttc.eval.runner import (
    EvalLoad,
    default_concurrency,
    done_keys,
    pending_work,
    run_eval,
)
from langgraph_ttc.eval.scheduler import policy_target
from langgraph_ttc.strategies import STRATEGY_NAMES
from langgraph_ttc.types import PRM, Policy
from langgraph_ttc.verifiers import close_prm, start_prm

# ttc eval's own defaults: shorter solutions for scaling curves, reproducible runs
EVAL_DEFAULTS = {"max_tokens": 256, "seed": 0, "beam_width": 2}


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "eval",
        help="accuracy of strategies against budget N on a dataset (scaling curves)",
        description="Run strategies over a dataset and write results.jsonl, summary.json, "
        "table.txt and scaling.png to --out.",
    )
    add_dataset_flags(parser)
    parser.add_argument(
        "--strategy",
        nargs="+",
        choices=STRATEGY_NAMES,
        default=["best_of_n"],
        help="strategies to evaluate (the greedy baseline is added unless --no-baseline)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the greedy baseline")
    parser.add_argument("--n", default="1,2,4,8", help="budgets, comma-separated")
    parser.add_argument("--limit", type=int, default=None, help="first K problems")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="most problems in flight (default: 64 when a load target governs, else 8)",
    )
    parser.add_argument(
        "--target-sequences",
        type=int,
        default=None,
        help="admit problems while the engine's sequences in flight are below this "
        "(default: the engine's max_num_seqs for the embedded engine; none for --base-url)",
    )
    parser.add_argument(
        "--peak-tok-s",
        type=float,
        default=None,
        help="the engine's peak tok/s (bench/throughput.py curve prints it): the run reports "
        "its utilisation, achieved / peak",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--resume", action="store_true", help="continue results in --out")
    add_backend_flags(parser)
    settings = add_setting_flags(
        parser, exclude=("n", "selection", "budget_tokens"), defaults=EVAL_DEFAULTS
    )
    # beam_width sizes the runs (a DVTS budget is read by whole subtrees): recorded on its own
    parser.set_defaults(settings=[k for k in settings if k != "beam_width"], run=main)
    add_few_shot_flags(parser)
    parser.add_argument("--grading-timeout", type=float, default=5.0, help="seconds per answer")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_config(args: argparse.Namespace, strategies: list[str], budgets: list[int]) -> dict:
    # settings given here apply to every strategy they fit; the rest keep their defaults
    settings = {k: getattr(args, k) for k in args.settings if getattr(args, k) is not None}
    examples = examples_setting(args)
    if examples:  # in the settings: run-defining, so --resume refuses other examples
        settings["examples"] = examples
    return {
        "dataset": args.dataset,
        "dataset_sha256": dataset_fingerprint(args.dataset),
        "split": args.split if args.dataset.startswith("hf:") else None,
        "fields": {"problem": args.problem_field, "answer": args.answer_field, "id": args.id_field},
        "model": args.model or "embedded:SmolLM2-135M-Instruct",
        "base_url": args.base_url,
        "prm": args.prm,
        "settings": settings,
        "beam_width": args.beam_width,
        "strategies": strategies,
        "budgets": budgets,
        "limit": args.limit,
        "few_shot": len(examples),
        "examples_file": args.examples,
    }


async def run_command(args: argparse.Namespace) -> int:
    budgets = parse_budgets(args.n)
    strategies = ([] if args.no_baseline else ["greedy"]) + list(dict.fromkeys(args.strategy))
    for option in ("concurrency", "target_sequences"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise EvalUsageError(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.peak_tok_s is not None and args.peak_tok_s <= 0:
        raise EvalUsageError(f"--peak-tok-s must be > 0, got {args.peak_tok_s}")
    specs = plan_runs(strategies, budgets, args.beam_width)
    problems = load_problems(
        args.dataset,
        split=args.split,
        fields=Fields(args.problem_field, args.answer_field, args.id_field),
        limit=args.limit,
    )
    config = run_config(args, strategies, budgets)
    policy, prm = make_backends(args)  # cheap: the engine starts only if there is work
    try:
        graphs = {spec.key: build_graph(spec, policy, prm, config["settings"]) for spec in specs}
        with exclusive(args.out):  # one writer per --out
            return await _run(args, problems, specs, config, policy, graphs, prm)
    finally:
        close_prm(prm)


async def _run(
    args: argparse.Namespace,
    problems: list[Problem],
    specs: list[RunSpec],
    config: dict[str, Any],
    policy: Policy,
    graphs: dict[str, Any],
    prm: PRM | None = None,
) -> int:
    log = prepare_out_dir(args.out, config, args.resume)
    rows = log.repair()  # drops a torn last line left by a killed run
    work = pending_work(problems, specs, done_keys(rows))
    say(
        f"{len(problems)} problems x {len(specs)} runs "
        f"({', '.join(s.key for s in specs)}): {len(work)} to do"
        + (f", {len(problems) * len(specs) - len(work)} already in {log.path}" if rows else "")
    )
    invocation: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "work_items": len(work),
    }
    started = time.perf_counter()
    if work:
        measured = await _run_on_engine(policy, graphs, work, log, args, prm)
        invocation["throughput"] = measured.summary(args.peak_tok_s)  # printed under the table
        plot_engine_load(measured, invocation["throughput"], Path(args.out))
    invocation["elapsed_s"] = round(time.perf_counter() - started, 1)  # engine start included
    return report(args.out, problems, specs, log, config, invocation, args.grading_timeout)


def plot_engine_load(measured: EvalLoad, throughput: dict[str, Any], out: Path) -> Path | None:
    """load.png: the engine's sequences over this invocation's run (none without samples or
    matplotlib)."""
    sampler = measured.sampler
    if sampler is None or not sampler.samples:
        return None
    utilisation = throughput.get("utilisation")
    title = f"Engine load: {throughput['tok_s']:.0f} generated tok/s" + (
        f", {utilisation:.0%} of the {throughput['peak_tok_s']:g} tok/s peak" if utilisation else ""
    )
    try:
        path = plot_load(sampler.samples, sampler.admission.target, out / "load.png", title)
    except ImportError:
        say("matplotlib is not installed (pip install 'langgraph-ttc[eval]'): no load plot")
        return None
    say(f"engine load plot: {path}")
    return path


async def _start_verifier(prm: PRM | None) -> None:
    if isinstance(prm, ManagedLifecycle):
        say("starting the verifier's engine...")
        seconds = await start_prm(prm)
        say("verifier ready" + (f" in {seconds:.0f}s" if seconds is not None else ""))


async def _run_on_engine(
    policy: Policy,
    graphs: dict[str, Any],
    work: list[Any],
    log: ResultsLog,
    args: argparse.Namespace,
    prm: PRM | None = None,
) -> EvalLoad:
    measured = EvalLoad()
    try:
        await start_policy(policy)
        await _start_verifier(prm)
        target = policy_target(policy, args.target_sequences)
        cap = args.concurrency or default_concurrency(target)
        say(
            f"admission: up to {cap} problems in flight"
            + (f", while the engine's load is below {target} sequences" if target else "")
        )
        await run_eval(
            work,
            graphs,
            log,
            concurrency=cap,
            grading_timeout=args.grading_timeout,
            fatal=(PolicyError, BackendDeadError),
            progress=not args.no_progress,
            policy=policy,
            target_sequences=target,
            measured=measured,
        )
        return measured
    finally:
        if isinstance(policy, ManagedLifecycle):
            policy.shutdown()


def report(
    out: Path,
    problems: list[Problem],
    specs: list[RunSpec],
    log: ResultsLog,
    config: dict[str, Any],
    invocation: dict[str, Any],
    grading_timeout: float = 5.0,
) -> int:
    """Summarise the rows of this plan (and these problems) from the log; table, json, plot."""
    wanted = {(s.strategy, k, p.id) for s in specs for k in s.budgets for p in problems}
    rows, _ = log.read()
    points = summarize(
        (row for row in rows if row_key(row) in wanted), grading_timeout=grading_timeout
    )
    summary_path = out / "summary.json"
    earlier = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    invocations = [*earlier.get("invocations", []), invocation]  # every (resumed) run's time
    meta = {**config, "problems": len(problems), "invocations": invocations}
    notes: list[str] = []
    if "throughput" in invocation:  # this invocation ran something
        meta["throughput"] = invocation["throughput"]
        notes = describe_throughput(invocation["throughput"]).splitlines()
    write_summary(out, points, meta, notes=notes)
    print(format_table(points, notes=notes))
    try:
        heading = title(config, len(problems))
        scaling = plot_scaling(points, out / "scaling.png", title=heading)
        tokens = plot_accuracy_tokens(points, out / "accuracy_tokens.png", title=heading)
        say(f"plots: {scaling}, {tokens}")
    except ImportError:
        say("matplotlib is not installed (pip install 'langgraph-ttc[eval]'): no plots")
    say(
        f"results: {log.path}; summary: {summary_path}; "
        f"this run took {invocation['elapsed_s']:.0f}s for {invocation['work_items']} runs"
    )
    missing = len(wanted) - sum(1 for row in rows if row_key(row) in wanted)
    if missing:
        say(f"{missing} rows are missing; run again with --resume to complete them")
    return 0


def main(args: argparse.Namespace) -> int:
    # A kill (SIGTERM, see cli.main) unwinds like Ctrl-C: rows already written stay and
    # --resume continues.
    return asyncio.run(run_command(args))
