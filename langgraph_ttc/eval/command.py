"""`ttc eval`: arguments, output directory handling, and the run from start to report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langgraph_ttc.errors import TTCError
from langgraph_ttc.eval.budgets import RunSpec, parse_budgets, plan_runs
from langgraph_ttc.eval.datasets import Fields, Problem, add_dataset_arguments, load_problems
from langgraph_ttc.eval.graphs import build_graph
from langgraph_ttc.eval.metrics import summarize
from langgraph_ttc.eval.report import format_table, write_summary
from langgraph_ttc.eval.results import ResultsLog, row_key
from langgraph_ttc.eval.runner import (
    EvalLoad,
    default_concurrency,
    done_keys,
    pending_work,
    run_eval,
)
from langgraph_ttc.eval.scheduler import policy_target
from langgraph_ttc.strategies.registry import STRATEGY_NAMES as STRATEGIES
from langgraph_ttc.worked_examples import add_few_shot_arguments, examples_for_run

# Settings that change what a row means: a resumed run must use the same ones.
RUN_DEFINING = (
    "dataset",
    "dataset_sha256",
    "split",
    "fields",
    "model",
    "prm",
    "settings",
    "beam_width",
)


class EvalUsageError(TTCError, ValueError):
    """The output directory or options do not fit together."""


def add_eval_parser(commands: Any) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "eval",
        help="accuracy of strategies against budget N on a dataset (scaling curves)",
        description="Run strategies over a dataset and write results.jsonl, summary.json, "
        "table.txt and scaling.png to --out.",
    )
    add_dataset_arguments(parser)
    parser.add_argument(
        "--strategy",
        nargs="+",
        choices=STRATEGIES,
        default=["best_of_n"],
        help="strategies to evaluate (the greedy baseline is added unless --no-baseline)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the greedy baseline")
    parser.add_argument("--n", default="1,2,4,8", help="budgets, comma-separated")
    parser.add_argument("--limit", type=int, default=None, help="first K problems")
    parser.add_argument("--seed", type=int, default=0)
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
    parser.add_argument("--model", default=None, help="default: embedded SmolLM2-135M")
    from langgraph_ttc.cli import add_server_argument

    add_server_argument(parser)
    parser.add_argument(
        "--prm", default="arithmetic", help="verifier spec, as for `ttc solve` (see --help there)"
    )
    parser.add_argument("--beam-width", type=int, default=2, help="beam search / DVTS")
    parser.add_argument("--max-iterations", type=int, help="beam search / DVTS")
    parser.add_argument("--lookahead", type=int, help="beam search / DVTS")
    parser.add_argument("--rounds", type=int, help="self-refinement rounds")
    parser.add_argument(
        "--table", help="compute_optimal: routing table JSON from `ttc tune` (default: shipped)"
    )
    parser.add_argument("--probe-n", type=int, help="compute_optimal: samples in the probe")
    parser.add_argument("--aggregation", choices=("last", "min", "prod", "mean"))
    parser.add_argument("--temperature", type=float)
    parser.add_argument(
        "--max-tokens", type=int, default=256, help="tokens per solution (default 256: curves)"
    )
    add_few_shot_arguments(parser)
    parser.add_argument("--grading-timeout", type=float, default=5.0, help="seconds per answer")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_config(args: argparse.Namespace, strategies: list[str], budgets: list[int]) -> dict:
    # settings given here apply to every strategy they fit; the rest keep their defaults
    names = ("max_tokens", "temperature", "seed", "aggregation", "max_iterations", "lookahead")
    extra = ("rounds", "table", "probe_n")
    settings = {k: getattr(args, k) for k in (*names, *extra) if getattr(args, k) is not None}
    examples = examples_for_run(args.few_shot, args.examples, earlier_config(args))
    if examples:  # in the settings: run-defining, so --resume refuses other examples
        settings["examples"] = [list(example) for example in examples]
    return {
        "dataset": args.dataset,
        "dataset_sha256": dataset_fingerprint(args.dataset),
        "split": args.split if args.dataset.startswith("hf:") else None,
        "fields": {"problem": args.problem_field, "answer": args.answer_field, "id": args.id_field},
        "model": args.model or "embedded:SmolLM2-135M-Instruct",
        "base_url": getattr(args, "base_url", None),
        "prm": args.prm,
        "settings": settings,
        "beam_width": args.beam_width,
        "strategies": strategies,
        "budgets": budgets,
        "limit": args.limit,
        "few_shot": len(examples),
        "examples_file": args.examples,
    }


def earlier_config(args: argparse.Namespace) -> dict[str, Any] | None:
    """The config.json of the run `--resume` continues, if there is one."""
    path = args.out / "config.json"
    return json.loads(path.read_text()) if args.resume and path.exists() else None


def prepare_out_dir(
    out: Path,
    config: dict[str, Any],
    resume: bool,
    *,
    log: ResultsLog | None = None,
    run_defining: tuple[str, ...] = RUN_DEFINING,
) -> ResultsLog:
    """Create --out, or check it may be continued; never overwrites earlier results. `log`:
    the results file (default results.jsonl); `run_defining`: the config keys a resumed run
    must share with the earlier one."""
    log = log or ResultsLog(out / "results.jsonl")
    config_path = out / "config.json"
    if resume and log.path.exists() and not config_path.exists():
        raise EvalUsageError(
            f"{log.path} holds results but {config_path} is missing, so nothing shows which "
            "settings made them; restore it, or start again in another --out"
        )
    if resume:
        if config_path.exists():
            earlier = json.loads(config_path.read_text())
            changed = [k for k in run_defining if earlier.get(k) != config.get(k)]
            if changed:
                raise EvalUsageError(
                    f"{out} holds results made with different {', '.join(changed)} "
                    f"({', '.join(f'{k}={earlier.get(k)!r}' for k in changed)}); resume with the "
                    "same options or choose another --out"
                )
    elif log.path.exists() and log.path.stat().st_size > 0:
        raise EvalUsageError(
            f"{log.path} already holds results: pass --resume to continue them, or choose "
            "another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return log


def dataset_fingerprint(spec: str) -> str | None:
    """sha256 of a local dataset file (a file changed in place must not mix with old rows);
    None for hub datasets, named by their spec."""
    path = Path(spec)
    if spec.startswith("hf:") or not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on --out for the whole run: a second `ttc eval` on the same
    directory fails at once instead of interleaving duplicate rows (POSIX advisory lock)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise EvalUsageError(
                f"{out} is in use by another ttc eval ({holder}); wait for it or choose "
                "another --out"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
        from langgraph_ttc.verifiers import close_prm

        close_prm(prm)


async def _run(
    args: argparse.Namespace,
    problems: list[Problem],
    specs: list[RunSpec],
    config: dict[str, Any],
    policy: Any,
    graphs: dict[str, Any],
    prm: Any = None,
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
    from langgraph_ttc.eval.plots import plot_load

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


async def _start_verifier(prm: Any) -> None:
    from langgraph_ttc.verifiers import start_prm

    if callable(getattr(prm, "start", None)):
        say("starting the verifier's engine...")
        seconds = await start_prm(prm)
        say("verifier ready" + (f" in {seconds:.0f}s" if seconds is not None else ""))


def make_backends(args: argparse.Namespace) -> tuple[Any, Any]:
    """The policy (engine not started yet) and the verifier the options name."""
    from langgraph_ttc.cli import make_policy
    from langgraph_ttc.verifiers import build_prm

    policy = make_policy(args)
    return policy, build_prm(args.prm, policy)


async def _run_on_engine(
    policy: Any,
    graphs: dict[str, Any],
    work: list[Any],
    log: ResultsLog,
    args: argparse.Namespace,
    prm: Any = None,
) -> EvalLoad:
    from langgraph_ttc.cli import describe_start
    from langgraph_ttc.policies import PolicyError
    from langgraph_ttc.types import BackendDeadError

    start = getattr(policy, "start", None)
    measured = EvalLoad()
    try:
        if start is not None:
            before, after = describe_start(policy)
            say(before)
            await start()
            say(f"{after} in {policy.startup_seconds:.0f}s")
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
        shutdown = getattr(policy, "shutdown", None)
        if shutdown is not None:
            shutdown()


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
        from langgraph_ttc.eval.plots import plot_accuracy_tokens, plot_scaling

        title = _title(config, len(problems))
        scaling = plot_scaling(points, out / "scaling.png", title=title)
        tokens = plot_accuracy_tokens(points, out / "accuracy_tokens.png", title=title)
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


def describe_throughput(throughput: dict[str, Any]) -> str:
    """The run phase's tok/s (engine start excluded), utilisation and engine load, in words."""
    lines = [
        f"throughput: {throughput['policy_tokens']} policy tokens in {throughput['run_s']:.1f} s "
        f"= {throughput['tok_s']:.1f} tok/s"
        + (
            f", {throughput['utilisation']:.0%} of the engine's peak {throughput['peak_tok_s']:g}"
            " tok/s"
            if throughput.get("utilisation") is not None
            else " (engine utilisation: pass --peak-tok-s)"
        )
    ]
    per = throughput.get("per_strategy") or {}
    if len(per) > 1:
        lines.append(
            "  per strategy (its tokens / the time its problems ran, beside the others): "
            + "; ".join(
                f"{name} {g['tok_s'] or 0:.1f} tok/s over {g['active_s']:.1f} s"
                for name, g in per.items()
            )
        )
    load = throughput.get("load") or {}
    line = _describe_load(load)
    if line:
        lines.append(line)
    engine = throughput.get("engine") or {}
    if engine.get("prefill_share") is not None:
        lines.append(
            f"  engine work: {engine['generated']} tokens generated, {engine['prompt_computed']}"
            f" prompt tokens prefilled ({engine['prefill_share']:.0%} of its tokens), "
            f"{engine['prompt_cached']} read from the prefix cache"
            + (
                f"; {engine['tokens_per_step']} tokens generated per engine step"
                if engine.get("tokens_per_step")
                else ""
            )
        )
    return "\n".join(lines)


def _describe_load(load: dict[str, Any]) -> str | None:
    """The engine's running sequences while problems waited for admission (steady state)."""
    target = load.get("target_sequences")
    of_target = f" (target {target})" if target else ""
    if not load.get("steady_samples"):
        whole = _first_known(
            load, "mean_engine_running_whole_run", "mean_sequences_in_flight_whole_run"
        )
        if whole is None:
            return None
        return (
            f"  engine load: every problem was admitted at once (no steady state); "
            f"{whole:.1f} sequences running on average{of_target}"
        )
    running = _first_known(load, "mean_engine_running", "mean_sequences_in_flight")
    if running is None:
        return None
    below = load.get("share_below_half_target")
    return (
        f"  engine load while problems waited: {running:.1f} sequences running on average"
        + of_target
        + (f", below half the target in {below:.0%} of samples" if below is not None else "")
        + f"; {load['mean_items']:.1f} problems in flight"
    )


def _first_known(values: dict[str, Any], *keys: str) -> Any:
    return next((values[k] for k in keys if values.get(k) is not None), None)


def _title(config: dict[str, Any], problems: int) -> str:
    name = (
        Path(config["dataset"]).stem
        if not config["dataset"].startswith("hf:")
        else config["dataset"]
    )
    shots = f", {config['few_shot']}-shot" if config.get("few_shot") else ""
    return f"{name}, {problems} problems{shots}\n{config['model']}, verifier: {config['prm']}"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    # A kill (SIGTERM, see cli.main) unwinds like Ctrl-C: rows already written stay and
    # --resume continues.
    return asyncio.run(run_command(args))
