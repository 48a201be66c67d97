"""Speculative rejection (arXiv 2410.20290): start N samples, abort the weak ones early.

    prepare -> extend -> reject_weakest --(samples still growing)--> extend
                                  | otherwise
                                  v
                                select

`extend` generates up to `checkpoint_tokens` more tokens of every growing sample (one policy
call; a sample continues from the token ids it generated). `reject_weakest` scores every sample that
grew, partial texts included, with the verifier; of the samples still growing, the lowest
`reject` share (rounded down) is aborted ("prune" event; their `finish_reason` is "rejected").
A sample ends at end-of-sequence or at `max_tokens`; the finished samples are the candidates
(selected by their last scores, "weighted" by default). Under a token budget, growing stops
when the next checkpoint no longer fits; the samples still growing then end as "length".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import All, Checkpointer

from langgraph_ttc import candidates as cands
from langgraph_ttc import events
from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.selection import DEFAULT_STEP_DELIMITER
from langgraph_ttc.strategies.options import builder
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.scaffold import Scaffold
from langgraph_ttc.strategies.settings import (
    DEFAULT_SYSTEM_PROMPT,
    Aggregation,
    Selection,
    SpeculativeSettings,
)
from langgraph_ttc.types import PRM, Candidate, Completion, Policy, StrategyState

STRATEGY = "speculative_rejection"
_STRIDE = 1 << 16  # seed offset between checkpoints (a sample's slot is below it)


class SpeculativeState(StrategyState, total=False):
    pool: list[Candidate]  # every sample: growing (finish_reason None), finished or rejected
    checkpoint: int  # checkpoints passed
    grew: list[int]  # the samples the last `extend` grew (scored by `reject`)


def growing(pool: Sequence[Candidate]) -> list[Candidate]:
    return [c for c in pool if c["finish_reason"] is None]


def chunk_tokens(run: Run[SpeculativeSettings], sample: Candidate) -> int:
    """Tokens the sample may generate before the next checkpoint."""
    settings = run.settings
    return min(settings.checkpoint_tokens, max(1, settings.max_tokens - sample["num_tokens"]))


def grown(run: Run[SpeculativeSettings], sample: Candidate, completion: Completion) -> Candidate:
    """The sample with one more chunk; finished (answer read) at EOS or at `max_tokens`."""
    reason: str | None = None
    total = sample["num_tokens"] + completion.num_tokens
    if completion.finish_reason == "stop" or not completion.text:
        reason = "stop"
    elif total >= run.settings.max_tokens:
        reason = "length"
    child = cands.grow(sample, sample["id"], completion, reason)
    child.pop("parent", None)  # the same sample, longer
    return run.finished(child) if reason is not None else child


def affordable(run: Run[SpeculativeSettings], alive: Sequence[Candidate]) -> bool:
    """Whether the budget pays for the next chunk of every growing sample."""
    return run.budget.affords(sum(chunk_tokens(run, c) for c in alive))


async def extend(state: SpeculativeState, run: Run[SpeculativeSettings]) -> dict[str, Any]:
    settings, checkpoint = run.settings, state["checkpoint"]
    alive = growing(state["pool"])
    requests = []
    for slot, sample in enumerate(alive):
        seed = None if settings.seed is None else settings.seed + checkpoint * _STRIDE + slot
        request = run.solution_request(1, seed)
        requests.append(
            replace(
                request,
                prefix=sample["text"],
                prefix_token_ids=sample.get("token_ids") if sample["text"] else None,
                max_tokens=chunk_tokens(run, sample),
            )
        )
    results, usage = await run.generate(requests, iteration=checkpoint)
    by_id = {}
    for sample, (completion,) in zip(alive, results, strict=True):
        by_id[sample["id"]] = grown(run, sample, completion)
        events.emit(events.candidate(run.strategy, by_id[sample["id"]], checkpoint))
    return {
        "pool": [by_id.get(c["id"], c) for c in state["pool"]],
        "grew": list(by_id),
        "usage": usage,
    }


async def reject_weakest(state: SpeculativeState, run: Run[SpeculativeSettings]) -> dict[str, Any]:
    """Score the samples that grew at this checkpoint; abort the weakest growing ones."""
    checkpoint, grew_ids = state["checkpoint"], set(state["grew"])
    scored, usage = await run.score(
        [c for c in state["pool"] if c["id"] in grew_ids], iteration=checkpoint
    )
    by_id = {c["id"]: c for c in scored}
    pool = [by_id.get(c["id"], c) for c in state["pool"]]
    alive = growing(pool)
    # the lowest scores go first; of equal scores, the later sample
    dropped = sorted(alive, key=lambda c: (c["score"], -c["id"]))[
        : math.floor(run.settings.reject * len(alive))
    ]
    dropped_ids = {c["id"] for c in dropped}
    pool = [{**c, "finish_reason": "rejected"} if c["id"] in dropped_ids else c for c in pool]
    events.emit(events.prune(run.strategy, checkpoint, growing(pool), dropped))
    if growing(pool) and not affordable(run, growing(pool)):  # the budget ends the growth
        pool = [
            run.finished({**c, "finish_reason": "length"}) if c["finish_reason"] is None else c
            for c in pool
        ]
    return {"pool": pool, "checkpoint": checkpoint + 1, "usage": usage}


def next_node(state: SpeculativeState, run: Run[SpeculativeSettings]) -> str:
    return "extend" if growing(state["pool"]) else "select"


def final(state: SpeculativeState, run: Run[SpeculativeSettings]) -> list[Candidate]:
    return [c for c in state["pool"] if c["finish_reason"] in ("stop", "length")]


def supersteps(settings: SpeculativeSettings) -> int:
    return 2 * -(-settings.max_tokens // settings.checkpoint_tokens) + 10


@builder
def create_speculative_rejection(
    policy: Policy,
    prm: PRM,
    *,
    n: int = 16,
    checkpoint_tokens: int = 64,
    reject: float = 0.5,
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
    """Speculative rejection over `policy` (which must continue a prefix) guided by `prm`:
    `n` samples, the lowest `reject` share of the growing ones aborted every
    `checkpoint_tokens` tokens (the algorithm is in this module's docstring). Every setting
    is described in docs/settings.md; the graph options as for `create_best_of_n`."""
    scaffold = Scaffold(
        STRATEGY,
        SpeculativeState,
        SpeculativeSettings,
        policy,
        prm,
        locals(),
        init=lambda settings: {
            "pool": [cands.new_candidate(i) for i in range(settings.n)],
            "checkpoint": 0,
            "grew": [],
        },
        final=final,
        supersteps=supersteps,
        loop_setting="max_tokens",
        needs_prm=True,
        continues_prefix=True,
    )
    scaffold.add_nodes(extend, reject_weakest)
    scaffold.add_path("prepare", "extend", "reject_weakest")
    scaffold.add_branch("reject_weakest", next_node, ["extend", "select"])
    return scaffold.compile()
