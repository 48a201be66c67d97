"""DeepConf (arXiv 2508.15260): vote with the model's own confidence, and stop weak traces.

    prepare -> sample --(online, not decisive, traces and budget left)--> sample
                 | otherwise
                 v
               score -> select

Each trace is sampled with the top-k log-probabilities of every token; its confidence is its
lowest (or last) `window`-token group confidence (`langgraph_ttc.confidence`).

- Offline: `n` traces; the `keep` share with the highest confidence vote, each with its
  confidence as weight (`selection="confidence"`).
- Online: `warmup` traces are drawn whole; the 100 x (1 - keep) percentile of their
  confidences is the threshold. Later traces, in rounds of `batch_size`, carry a
  `ConfidenceStop(window, threshold)`: the policy stops each one in the engine the moment a
  group confidence falls below it (those traces do not vote). Sampling stops when the
  leading answer holds `consensus` of the confidence-weighted vote, after `n` traces, or when
  the budget cannot pay for another whole trace.

With a `prm`, the voting traces are scored too (for `selection="weighted"` or "naive").
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any, Literal

from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import All, Checkpointer

from langgraph_ttc import candidates as cands
from langgraph_ttc import events
from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.confidence import DEFAULT_TOP_LOGPROBS, percentile
from langgraph_ttc.errors import PolicyContractError
from langgraph_ttc.selection import DEFAULT_STEP_DELIMITER, group_by_answer
from langgraph_ttc.strategies.options import builder
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.scaffold import Scaffold
from langgraph_ttc.strategies.settings import (
    DEFAULT_SYSTEM_PROMPT,
    Aggregation,
    DeepConfSettings,
    Selection,
)
from langgraph_ttc.types import (
    PRM,
    Candidate,
    Completion,
    ConfidenceStop,
    Policy,
    StrategyState,
)

STRATEGY = "deepconf"


class DeepConfState(StrategyState, total=False):
    pool: list[Candidate]  # every trace so far (stopped ones included)
    threshold: float | None  # online: set by the warm-up
    decisive: bool  # the vote of the voting traces passed `consensus`


def voting(pool: Sequence[Candidate], settings: DeepConfSettings) -> list[Candidate]:
    """The traces that vote: online, those not stopped; offline, the `keep` most confident."""
    finished = [c for c in pool if c["finish_reason"] != "confidence"]
    if settings.mode == "online":
        return finished
    count = max(1, math.ceil(settings.keep * len(finished)))
    # sorted() is stable: equal confidences keep sampling order
    return sorted(finished, key=lambda c: -c.get("confidence", 0.0))[:count]


def leader_share(pool: Sequence[Candidate]) -> float:
    """The leading answer's share of the confidence-weighted vote (0 without votes)."""
    tally = [sum(c.get("confidence", 0.0) for c in g) for g in group_by_answer(pool)]
    total = sum(tally)
    return max(tally) / total if total > 0 else 0.0


def trace(candidate_id: int, completion: Completion, run: Run[DeepConfSettings]) -> Candidate:
    """A candidate from a sampled trace, its confidence by the run's window and measure."""
    if completion.token_confidences is None:
        raise PolicyContractError(
            "deepconf asked for token confidences (top_logprobs) and the policy returned none"
        )
    settings = run.settings
    candidate = cands.from_completion(candidate_id, completion, run.extractor)
    return cands.with_confidence(
        candidate,
        completion.token_confidences,
        window=settings.window,
        measure=settings.measure,
        k=DEFAULT_TOP_LOGPROBS,
    )


def round_plan(state: DeepConfState, settings: DeepConfSettings) -> tuple[int, bool]:
    """(traces to draw next, whether they carry the stop rule)."""
    drawn = len(state["pool"])
    if settings.mode == "offline":
        return settings.n - drawn, False
    if state.get("threshold") is None:
        return min(settings.warmup, settings.n) - drawn, False
    return min(settings.batch_size, settings.n - drawn), True


async def sample(state: DeepConfState, run: Run[DeepConfSettings]) -> dict[str, Any]:
    settings, drawn = run.settings, len(state["pool"])
    size, stopping = round_plan(state, settings)
    size = run.budget.samples(size, settings.max_tokens)
    threshold = state.get("threshold")
    rule = None
    if stopping and threshold is not None:
        rule = ConfidenceStop(settings.window, threshold)
    # trace i of the run gets seed + i, as in one request of n samples
    seed = None if settings.seed is None else settings.seed + drawn
    request = run.solution_request(size, seed, stop=rule)
    (completions,), usage = await run.generate([request], iteration=drawn)
    new = [trace(drawn + i, c, run) for i, c in enumerate(completions)]
    for candidate in new:
        events.emit(events.candidate(run.strategy, candidate, drawn))
        if candidate["finish_reason"] == "confidence":
            events.emit(events.early_stop(run.strategy, candidate, drawn))
    pool = state["pool"] + new
    update: dict[str, Any] = {"pool": pool, "usage": {**usage, "samples": len(new)}}
    if settings.mode == "online" and threshold is None:
        update["threshold"] = warmup_threshold(pool, settings)
        events.emit(events.threshold(run.strategy, update["threshold"], len(pool)))
    # answer equivalence (math-verify) may take a while: keep the event loop free
    share = await asyncio.to_thread(leader_share, voting(pool, settings))
    update["decisive"] = settings.mode == "online" and share >= settings.consensus
    return update


def warmup_threshold(pool: Sequence[Candidate], settings: DeepConfSettings) -> float:
    """The 100 x (1 - keep) percentile of the warm-up traces' confidences: keep=0.9 stops a
    later trace only where it is less confident than 90% of the warm-up was at its weakest."""
    return round(percentile([c.get("confidence", 0.0) for c in pool], 100 * (1 - settings.keep)), 6)


def next_node(state: DeepConfState, run: Run[DeepConfSettings]) -> str:
    settings = run.settings
    if settings.mode == "offline" or state["decisive"]:
        return "score"
    if len(state["pool"]) >= settings.n or not run.budget.affords(settings.max_tokens):
        return "score"
    return "sample"


async def score(state: DeepConfState, run: Run[DeepConfSettings]) -> dict[str, Any]:
    """Score the voting traces (a no-op without a verifier)."""
    keep = {c["id"] for c in voting(state["pool"], run.settings)}
    to_score = [c for c in state["pool"] if c["id"] in keep]
    scored, usage = await run.score(to_score)
    by_id = {c["id"]: c for c in scored}
    return {"pool": [by_id.get(c["id"], c) for c in state["pool"]], "usage": usage}


def final(state: DeepConfState, run: Run[DeepConfSettings]) -> list[Candidate]:
    """The voting traces (every trace if none finished)."""
    return voting(state["pool"], run.settings) or list(state["pool"])


@builder
def create_deepconf(
    policy: Policy,
    prm: PRM | None = None,
    *,
    n: int = 16,
    mode: Literal["online", "offline"] = "online",
    warmup: int = 4,
    keep: float = 0.9,
    window: int = 32,
    measure: Literal["lowest_group", "tail"] = "lowest_group",
    consensus: float = 0.95,
    batch_size: int = 4,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 1024,
    seed: int | None = None,
    selection: Selection | None = None,
    aggregation: Aggregation = "last",
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    examples: Sequence[tuple[str, str]] = (),
    step_delimiter: str = DEFAULT_STEP_DELIMITER,
    prm_timeout: float | None = 120.0,
    policy_timeout: float | None = 600.0,
    budget_tokens: int | None = None,
    answer_extractor: AnswerExtractor = extract_answer,
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
    interrupt_before: All | list[str] | None = None,
    interrupt_after: All | list[str] | None = None,
    debug: bool = False,
    name: str | None = None,
) -> CompiledStateGraph:
    """DeepConf over `policy` (which must give token log-probabilities: `VLLMPolicy` or
    `OpenAIPolicy`): `mode="online"` stops weak traces in the engine, "offline" keeps
    the most confident finished ones; the algorithm is in this module's docstring. `selection`
    None is "confidence" (the confidence-weighted vote). Every setting is described in
    docs/settings.md; the graph options as for `create_best_of_n`."""
    options = {**locals(), "selection": selection or "confidence"}
    scaffold = Scaffold(
        STRATEGY,
        DeepConfState,
        DeepConfSettings,
        policy,
        prm,
        options,
        init=lambda settings: {"pool": [], "threshold": None, "decisive": False},
        final=final,
        supersteps=lambda settings: 2 * (settings.n + 1) + 10,
        loop_setting="n",
    )
    scaffold.add_nodes(sample, score)
    scaffold.add_path("prepare", "sample")
    scaffold.add_branch("sample", next_node, ["sample", "score"])
    scaffold.add_path("score", "select")
    return scaffold.compile()
