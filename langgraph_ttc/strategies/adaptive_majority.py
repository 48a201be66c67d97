"""Adaptive majority (adaptive self-consistency): sample in rounds until the vote is decisive.

    prepare -> sample -> decide --(not decisive, samples and budget left)--> sample
                           | otherwise
                           v
                         select

A round is one policy call of `batch_size` samples, then one verifier call on them.

The stopping rule. After every round the answers are grouped (equivalent answers together;
samples without an answer do not vote). Let a be the leader's vote and b the runner-up's
(0 if there is none); a vote is a count, or with `selection="weighted"` and a verifier the
sum of the group's scores (with "confidence" / "self_certainty", of its members' token
confidence figures). Between the two, the share p of votes the leader would win is
given a uniform prior, so its posterior is Beta(a + 1, b + 1); sampling stops once

    P(p > 1/2 | votes) = 1 - I_{1/2}(a + 1, b + 1) >= confidence

(I is the regularized incomplete beta function), or when `n` samples are drawn, or when the
token budget cannot pay for another sample. A round the budget cannot fully pay for (at
`max_tokens` a sample) is shrunk to what it pays for, and is the last round: the rounds never
outnumber ceil(n / batch_size). With the default confidence 0.95, unanimous
counts stop after 4 samples (P = 0.969), 5 of 6 stop (0.9375 does not; 6 of 7 does).
Usage reports the samples drawn ("samples").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import mpmath
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import All, Checkpointer

from langgraph_ttc import candidates as cands
from langgraph_ttc import events
from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.selection import (
    CONFIDENCE_SELECTIONS,
    DEFAULT_STEP_DELIMITER,
    group_by_answer,
)
from langgraph_ttc.strategies.options import builder
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.scaffold import Scaffold
from langgraph_ttc.strategies.settings import (
    DEFAULT_SYSTEM_PROMPT,
    AdaptiveSettings,
    Aggregation,
    Selection,
)
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyState, merge_usage

STRATEGY = "adaptive_majority"


class AdaptiveState(StrategyState, total=False):
    pool: list[Candidate]  # every sample so far, scored
    decisive: bool  # the last round's vote passed the test
    shrunk: bool  # the last round was cut to what the budget pays: it was the last one


def leader_probability(leader: float, runner_up: float) -> float:
    """P(p > 1/2) for p ~ Beta(leader + 1, runner_up + 1): how sure the votes make us that
    the leader, not the runner-up, is the answer more samples would favour."""
    tail = mpmath.betainc(leader + 1, runner_up + 1, 0.5, 1, regularized=True)
    return float(tail)


def votes(pool: list[Candidate], weight: str | None) -> list[float]:
    """Each answer group's vote, largest first: a count, or the sum of its members' `weight`
    field ("score", "confidence", "self_certainty")."""
    groups = group_by_answer(pool)
    tally = [sum(float(c.get(weight, 0.0)) for c in g) if weight else float(len(g)) for g in groups]
    return sorted(tally, reverse=True)


def is_decisive(tally: list[float], confidence: float) -> bool:
    if not tally or tally[0] <= 0:
        return False
    runner_up = tally[1] if len(tally) > 1 else 0.0
    return leader_probability(tally[0], runner_up) >= confidence


def round_size(state: AdaptiveState, settings: AdaptiveSettings) -> int:
    return min(settings.batch_size, settings.n - len(state["pool"]))


async def sample(state: AdaptiveState, run: Run[AdaptiveSettings]) -> dict[str, Any]:
    settings, drawn = run.settings, len(state["pool"])
    size = run.budget.samples(round_size(state, settings), settings.max_tokens)
    # sample i of the run gets seed + i, as in one best-of-N request of n samples
    seed = None if settings.seed is None else settings.seed + drawn
    (completions,), usage = await run.generate([run.solution_request(size, seed)], iteration=drawn)
    new = [cands.from_completion(drawn + i, c, run.extractor) for i, c in enumerate(completions)]
    for candidate in new:
        events.emit(events.candidate(run.strategy, candidate, drawn))
    scored, score_usage = await run.score(new, iteration=drawn)
    return {
        "pool": state["pool"] + scored,
        "usage": {**merge_usage(usage, score_usage), "samples": len(new)},
        "decisive": False,
        "shrunk": size < round_size(state, settings),
    }


async def decide(state: AdaptiveState, run: Run[AdaptiveSettings]) -> dict[str, Any]:
    selection = run.settings.selection
    weight = CONFIDENCE_SELECTIONS.get(selection)
    if selection == "weighted" and run.prm is not None:
        weight = "score"
    # answer equivalence (math-verify) may take a while: keep the event loop free
    tally = await asyncio.to_thread(votes, state["pool"], weight)
    return {"decisive": is_decisive(tally, run.settings.confidence)}


def next_node(state: AdaptiveState, run: Run[AdaptiveSettings]) -> str:
    # a shrunk round ends the loop, so the rounds never outnumber ceil(n / batch_size) (the
    # recursion limit's assumption), whatever the budget pays per round
    if state["decisive"] or state.get("shrunk") or round_size(state, run.settings) <= 0:
        return "select"
    if not run.budget.affords(run.settings.max_tokens):  # not one whole sample
        return "select"
    return "sample"


@builder
def create_adaptive_majority(
    policy: Policy,
    prm: PRM | None = None,
    *,
    n: int = 16,
    batch_size: int = 4,
    confidence: float = 0.95,
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
    """Adaptive majority voting: rounds of `batch_size` samples, up to `n`, until the leading
    answer is decisive at `confidence` (the rule is in this module's docstring). Votes are
    counts, or with a verifier and `selection="weighted"` score sums. Every setting is
    described in docs/settings.md; the graph options as for `create_best_of_n`."""
    scaffold = Scaffold(
        STRATEGY,
        AdaptiveState,
        AdaptiveSettings,
        policy,
        prm,
        locals(),
        init=lambda settings: {"pool": [], "decisive": False, "shrunk": False},
        final=lambda state, run: state["pool"],
        supersteps=lambda settings: 2 * -(-settings.n // settings.batch_size) + 10,
        loop_setting="n",
    )
    scaffold.add_nodes(sample, decide)
    scaffold.add_path("prepare", "sample", "decide")
    scaffold.add_branch("decide", next_node, ["sample", "select"])
    return scaffold.compile()
