"""Training data for verifiers: candidates sampled from the policy, labelled by grading.

For each problem, N solutions are sampled as best-of-N would (same prompt, worked examples and
settings). A candidate's label is strict: 1 when the answer it states (`\\boxed{}` or "the
answer is X") equals the reference. With `rollouts` = k, every step also gets a Monte-Carlo
label (Math-Shepherd): k continuations are sampled from the solution cut after that step, and
the step's label is the fraction of them that state the right answer; the last step's label is
the candidate's own label.

Rows go to a JSON Lines log, one per candidate, all rows of a problem in one append, so a
killed collection resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph_ttc.answers import GradingTimeout, extract_answer, grade, normalize_answer
from langgraph_ttc.candidates import from_completion
from langgraph_ttc.eval.datasets import Problem
from langgraph_ttc.eval.metrics import stated_answer
from langgraph_ttc.eval.results import ResultsLog
from langgraph_ttc.eval.scheduler import (
    ADMITTED_CONCURRENCY,
    Admission,
    measured_sequences,
    policy_target,
    run_admitted,
)
from langgraph_ttc.selection import split_steps
from langgraph_ttc.strategies.calls import check_completions
from langgraph_ttc.strategies.prompts import chat_messages
from langgraph_ttc.strategies.settings import StrategySettings
from langgraph_ttc.types import Completion, GenerationRequest, Policy

ROW_KEYS = ("problem_id", "candidate")

Grader = Callable[[str | None, str, float], bool]


@dataclass(frozen=True)
class CollectSettings:
    n: int  # candidates per problem
    rollouts: int = 0  # continuations per step prefix; 0: outcome labels only
    grading_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"--n must be >= 1, got {self.n}")
        if self.rollouts < 0:
            raise ValueError(f"--rollouts must be >= 0, got {self.rollouts}")


def collect_log(path: Any) -> ResultsLog:
    return ResultsLog(path, required=ROW_KEYS)


def _seed(base: int | None, *parts: int) -> int | None:
    """A distinct, reproducible seed per request (None stays None)."""
    if base is None:
        return None
    seed = base
    for part in parts:
        seed = seed * 1_000_003 + part + 1
    return seed % (1 << 31)


async def collect_problem(
    problem: Problem,
    policy: Policy,
    sampling: StrategySettings,
    settings: CollectSettings,
    grader: Grader = grade,
) -> list[dict[str, Any]]:
    """The labelled rows of one problem's N candidates."""
    messages = chat_messages(problem.problem, sampling.system_prompt, sampling.examples)

    def request(prefix: str, n: int, seed: int | None) -> GenerationRequest:
        return GenerationRequest(
            messages=messages,
            prefix=prefix,
            n=n,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=seed,
        )

    first = [request("", settings.n, sampling.seed)]
    results = await policy.generate(first)
    check_completions(first, results)
    # `answer`: the lenient reading, as the strategies read it; the strict one is the label's
    candidates = [from_completion(i, c, extract_answer) for i, c in enumerate(results[0])]
    steps = [split_steps(c["text"], sampling.step_delimiter) for c in candidates]
    rollouts: list[list[list[Completion]]] = [[] for _ in candidates]
    if settings.rollouts:
        delimiter = sampling.step_delimiter
        wanted = [
            (index, request(delimiter.join(s[: k + 1]) + delimiter, settings.rollouts, seed))
            for index, s in enumerate(steps)
            for k in range(len(s) - 1)  # the last step is labelled by the outcome
            for seed in [_seed(sampling.seed, index, k)]
        ]
        if wanted:
            requests = [r for _, r in wanted]
            completions = await policy.generate(requests)
            check_completions(requests, completions)
            for (index, _), samples in zip(wanted, completions, strict=True):
                rollouts[index].append(list(samples))
    return await asyncio.to_thread(
        label_rows, problem, candidates, steps, rollouts, settings, grader, sampling.step_delimiter
    )


def label_rows(
    problem: Problem,
    candidates: Sequence[Mapping[str, Any]],
    steps: Sequence[Sequence[str]],
    rollouts: Sequence[Sequence[Sequence[Completion]]],
    settings: CollectSettings,
    grader: Grader,
    delimiter: str,
) -> list[dict[str, Any]]:
    """Grade every candidate (and every rollout) strictly against the reference."""
    verdicts: dict[str, bool] = {}

    def right(answer: str | None) -> bool:
        if answer is None:
            return False
        key = normalize_answer(answer)
        if key not in verdicts:
            try:
                verdicts[key] = bool(grader(answer, problem.answer, settings.grading_timeout))
            except GradingTimeout:
                verdicts[key] = False
        return verdicts[key]

    rows = []
    for index, candidate in enumerate(candidates):
        stated = stated_answer(candidate)
        label = int(right(stated))
        lenient = candidate["answer"]
        step_labels = None
        if settings.rollouts:
            step_labels = []
            for k, samples in enumerate(rollouts[index]):
                prefix = delimiter.join(steps[index][: k + 1]) + delimiter
                hits = sum(
                    right(
                        stated_answer({"text": prefix + s.text, "finish_reason": s.finish_reason})
                    )
                    for s in samples
                )
                step_labels.append(hits / len(samples))
            if steps[index]:
                step_labels.append(float(label))
        rows.append(
            {
                "problem_id": problem.id,
                "candidate": index,
                "problem": problem.problem,
                "reference": problem.answer,
                "text": candidate["text"],
                "steps": list(steps[index]),
                "stated_answer": stated,
                "label": label,
                "lenient_answer": lenient,
                "lenient_label": int(right(lenient)),
                "step_labels": step_labels,
                "rollouts": settings.rollouts,
                "num_tokens": candidate["num_tokens"],
                "finish_reason": candidate["finish_reason"],
            }
        )
    return rows


def complete_problems(rows: Sequence[Mapping[str, Any]], n: int) -> set[str]:
    counts = Counter(str(row["problem_id"]) for row in rows)
    return {problem_id for problem_id, count in counts.items() if count >= n}


def drop_incomplete(log: ResultsLog, n: int) -> list[dict[str, Any]]:
    """Read the log (cutting a torn tail); rows of a problem left incomplete by a kill are
    removed so the problem is collected again without duplicates."""
    rows = log.repair()
    complete = complete_problems(rows, n)
    kept = [row for row in rows if str(row["problem_id"]) in complete]
    if len(kept) != len(rows):
        log.rewrite(kept)
    return kept


async def run_collect(
    problems: Sequence[Problem],
    policy: Policy,
    sampling: StrategySettings,
    settings: CollectSettings,
    log: ResultsLog,
    *,
    concurrency: int | None = None,
    progress: bool = True,
    grader: Grader = grade,
    target_sequences: int | None = None,
) -> int:
    """Collect every problem not yet in `log`; returns the number of problems collected.

    Problems are admitted as `ttc eval` admits its runs (`langgraph_ttc.eval.scheduler`): with
    a load target (`target_sequences`, else the policy's `capacity`) while the engine's load is
    below it, at most `concurrency` at a time (default 64); without a target, `concurrency` at
    a time (default 4)."""
    target = policy_target(policy, target_sequences)
    cap = concurrency if concurrency is not None else (ADMITTED_CONCURRENCY if target else 4)
    admission = Admission(cap, target, measured_sequences(policy))
    done = complete_problems(log.read()[0], settings.n)
    todo = [problem for problem in problems if problem.id not in done]
    collected = 0
    bar = _progress_bar(len(todo), progress)

    async def collect(problem: Problem) -> None:
        nonlocal collected
        rows = await collect_problem(problem, policy, sampling, settings, grader)
        log.append(rows)
        collected += 1
        if bar is not None:
            bar.update(1)

    try:
        await run_admitted(todo, collect, demand=lambda _: settings.n, admission=admission)
    finally:
        if bar is not None:
            bar.close()
    return collected


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    try:
        # optional (the eval extra)
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="collect", unit="problem", file=sys.stderr, dynamic_ncols=True)


CANDIDATES_FILE = "candidates.jsonl"


def describe(rows: list[dict[str, Any]]) -> str:
    """A one-paragraph account of the collected labels."""
    if not rows:
        return "no rows"
    problems = len({row["problem_id"] for row in rows})
    positive = sum(row["label"] for row in rows)
    stated = sum(row["stated_answer"] is not None for row in rows)
    solved = len({row["problem_id"] for row in rows if row["label"]})
    text = (
        f"{len(rows)} candidates of {problems} problems: {positive} labelled right "
        f"({positive / len(rows):.1%}), {stated / len(rows):.1%} state an answer, "
        f"{solved} problems with at least one right candidate"
    )
    step_labels = [x for row in rows for x in row.get("step_labels") or []]
    if step_labels:
        text += f"; {len(step_labels)} step labels, mean {sum(step_labels) / len(step_labels):.2f}"
    return text


def read_collected(data: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and the collection config of a `ttc verifier collect` directory."""
    path = data / CANDIDATES_FILE
    if not path.is_file():
        raise ValueError(f"{data} holds no {CANDIDATES_FILE}: run `ttc verifier collect` first")
    rows = collect_log(path).read()[0]
    if not rows:
        raise ValueError(f"{path} has no rows")
    config_path = data / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return rows, config
