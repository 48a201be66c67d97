"""Run planned strategies over problems, many at once on one engine, appending rows as each
problem finishes (resumable: work whose rows are already in the log is skipped). Which problems
run when is `langgraph_ttc.eval.scheduler`'s load-aware admission."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from langgraph_ttc.backends import ReportsEngineStats
from langgraph_ttc.engine import EngineTokens
from langgraph_ttc.eval.budgets import RunSpec, budget_tokens, subsample
from langgraph_ttc.eval.datasets import Problem
from langgraph_ttc.eval.metrics import grade_candidates, strict_fields
from langgraph_ttc.eval.results import ResultsLog, RowKey, row_key
from langgraph_ttc.eval.scheduler import (
    ADMITTED_CONCURRENCY,
    Admission,
    LoadSampler,
    ThroughputMeter,
    measured_sequences,
    policy_target,
    run_admitted,
)
from langgraph_ttc.types import Candidate

CANDIDATE_FIELDS = ("id", "text", "answer", "score", "step_scores", "num_tokens", "finish_reason")


class Graph(Protocol):
    async def ainvoke(self, input: Any, config: Any = None) -> Any: ...


@dataclass(frozen=True)
class WorkItem:
    """One problem to run with one strategy spec, for the budgets still missing."""

    problem: Problem
    spec: RunSpec
    budgets: tuple[int, ...]  # the budgets whose rows are still missing


def pending_work(
    problems: Sequence[Problem], specs: Sequence[RunSpec], done: set[RowKey]
) -> list[WorkItem]:
    """Every (problem, run) with a missing row, problem by problem (so a partial run still
    compares every strategy on the same problems)."""
    items = []
    for problem in problems:
        for spec in specs:
            missing = tuple(k for k in spec.budgets if (spec.strategy, k, problem.id) not in done)
            if missing:
                items.append(WorkItem(problem, spec, missing))
    return items


def build_rows(
    item: WorkItem,
    output: Mapping[str, Any] | None,
    *,
    wall_time_s: float,
    error: str | None = None,
    grading_timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """One results row per missing budget of a finished (or failed) run."""
    candidates: list[Candidate] = list((output or {}).get("candidates") or [])
    usage = dict((output or {}).get("usage") or {})
    rows = []
    for budget in item.budgets:
        subset = subsample(candidates, item.spec, budget) if candidates else []
        graded = grade_candidates(subset, item.problem.answer, timeout=grading_timeout)
        tokens, exact = budget_tokens(item.spec, budget, subset, int(usage.get("policy_tokens", 0)))
        rows.append(
            {
                "id": item.problem.id,
                "strategy": item.spec.strategy,
                "budget": budget,
                "run_n": item.spec.n,
                "beam_width": item.spec.beam_width,
                "problem": item.problem.problem,
                "reference": item.problem.answer,
                "predictions": graded.predictions,
                "correct": graded.correct,
                "pass": graded.passed,
                "selected": graded.selected,
                **strict_fields(graded),
                "candidates": [
                    {
                        **{f: c.get(f) for f in CANDIDATE_FIELDS},
                        "correct": ok,
                        "stated_answer": stated,
                        "strict_correct": strict_ok,
                    }
                    for c, ok, stated, strict_ok in zip(
                        subset,
                        graded.candidate_correct,
                        graded.stated_answers,
                        graded.candidate_strict,
                        strict=True,
                    )
                ],
                "tokens": tokens,
                "tokens_exact": exact,
                "wall_time_s": round(wall_time_s, 3),
                "usage": usage,
                "grading_timeouts": graded.grading_timeouts,
                "error": error,
            }
        )
    return rows


FatalError = tuple[type[BaseException], ...]

FIXED_CONCURRENCY = 8  # problems in flight without a load target (today's fixed rule)


def default_concurrency(target: int | None) -> int:
    """The cap on problems in flight when `--concurrency` is not given: with a load target,
    64, so the target governs (64 problems x n >= 2 already fill the default 128-sequence
    engine, while greedy problems, 1 sequence each, stay at 64 graph runs in memory); without
    one, the fixed 8 problems."""
    return FIXED_CONCURRENCY if target is None else ADMITTED_CONCURRENCY


@dataclass
class EvalLoad:
    """What `run_eval` measured: tokens and time per strategy, and the load samples."""

    meter: ThroughputMeter = field(default_factory=ThroughputMeter)
    sampler: LoadSampler | None = None
    engine_tokens: EngineTokens | None = None  # the engine's own totals over the run phase

    def summary(self, peak_tok_s: float | None = None) -> dict[str, Any]:
        return {
            **self.meter.summary(peak_tok_s),
            "load": None if self.sampler is None else self.sampler.summary(),
            "engine": None if self.engine_tokens is None else describe_engine(self.engine_tokens),
        }


def describe_engine(tokens: EngineTokens) -> dict[str, Any]:
    """The engine's token totals over the run and the share of its work spent prefilling."""
    share = tokens.prefill_share
    return {
        **asdict(tokens),
        "prefill_share": None if share is None else round(share, 3),
        "tokens_per_step": round(tokens.generated / tokens.steps, 1) if tokens.steps else None,
    }


def engine_tokens(policy: Any) -> EngineTokens | None:
    if not isinstance(policy, ReportsEngineStats):
        return None
    tokens = policy.engine_tokens()
    return tokens if isinstance(tokens, EngineTokens) else None


async def run_eval(
    work: Sequence[WorkItem],
    graphs: Mapping[str, Graph],
    log: ResultsLog,
    *,
    concurrency: int | None = None,
    grading_timeout: float = 5.0,
    fatal: FatalError = (),
    progress: bool = True,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    policy: Any = None,
    target_sequences: int | None = None,
    measured: EvalLoad | None = None,
    sample_interval: float = 0.25,
) -> int:
    """Run every work item and append its rows; returns the number of rows written.

    Admission (`langgraph_ttc.eval.scheduler`): with a load target (`target_sequences`, else
    the `policy`'s `capacity`), the next item starts while the sequences the engine is asked
    to run are below the target, and at most `concurrency` items run (default 64); without a
    target, `concurrency` items run at a time (default 8).

    A failing run is recorded as a row with its error (counted wrong). An exception of a
    `fatal` type (a dead engine) stops the whole evaluation; rows written so far stay, and a
    `--resume` continues from them. `measured`: filled with tokens, time and load samples.
    """
    target = policy_target(policy, target_sequences)
    cap = default_concurrency(target) if concurrency is None else concurrency
    admission = Admission(cap, target, measured_sequences(policy))
    measured = measured if measured is not None else EvalLoad()
    measured.meter.started = time.perf_counter()
    tokens_before = engine_tokens(policy)
    sampler = LoadSampler(admission, policy, sample_interval)
    measured.sampler = sampler
    written = 0
    bar = _progress_bar(len(work), progress)

    async def run(item: WorkItem) -> None:
        nonlocal written
        started = time.perf_counter()
        rows = await run_item(item, graphs[item.spec.key], fatal, grading_timeout)
        usage = (rows[0].get("usage") or {}) if rows else {}
        tokens = int(usage.get("policy_tokens", 0))
        measured.meter.record(item.spec.strategy, started, time.perf_counter(), tokens)
        log.append(rows)
        written += len(rows)
        if on_rows is not None:
            on_rows(rows)
        if bar is not None:
            bar.set_postfix_str(f"{item.spec.strategy} n={item.spec.n}", refresh=False)
            bar.update(1)

    try:
        with sampler:
            await run_admitted(work, run, demand=lambda item: item.spec.n, admission=admission)
    finally:
        measured.meter.stop()
        tokens_after = engine_tokens(policy)
        if tokens_before is not None and tokens_after is not None:
            measured.engine_tokens = tokens_after.since(tokens_before)
        if bar is not None:
            bar.close()
    return written


async def run_item(
    item: WorkItem, graph: Graph, fatal: FatalError, grading_timeout: float
) -> list[dict[str, Any]]:
    """Run one problem through one graph and grade it into rows; a failure other than a
    `fatal` one becomes the rows' error."""
    started = time.perf_counter()
    output, error = None, None
    try:
        output = await graph.ainvoke({"problem": item.problem.problem})
    except fatal:
        raise
    except Exception as exc:  # isolated: this problem's rows record the error
        error = f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    try:
        return await asyncio.to_thread(
            build_rows,
            item,
            output,
            wall_time_s=elapsed,
            error=error,
            grading_timeout=grading_timeout,
        )
    except Exception as exc:  # grading failed on this output: record it, never stop the run
        error = f"grading failed: {type(exc).__name__}: {exc}"
        return build_rows(item, None, wall_time_s=elapsed, error=error)


def done_keys(rows: Sequence[Mapping[str, Any]]) -> set[RowKey]:
    return {row_key(row) for row in rows}


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    try:
        # optional (the eval extra)
        from tqdm.auto import tqdm
    except ImportError:  # tqdm ships with vLLM; without it, no bar
        return None
    return tqdm(total=total, desc="eval", unit="run", file=sys.stderr, dynamic_ncols=True)
