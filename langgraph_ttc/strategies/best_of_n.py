"""Best-of-N: sample N full solutions in one request, score their steps, select one.

    prepare -> generate -> score -> select

With `budget_tokens`, only the samples the budget pays for at `max_tokens` each are drawn
(at least one, its length capped to the budget).

Naive, weighted and majority selection all read the same samples (docs/algorithms.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc import candidates as cands
from langgraph_ttc import events
from langgraph_ttc.strategies.scaffold import Run, Scaffold
from langgraph_ttc.strategies.settings import StrategySettings
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyState

STRATEGY = "best_of_n"


class BestOfNState(StrategyState, total=False):
    pool: list[Candidate]  # the N samples, scored once the verifier has run


async def generate(state: BestOfNState, run: Run[StrategySettings]) -> dict[str, Any]:
    # with a token budget: as many samples as it pays for at max_tokens each (at least one)
    n = run.samples_within_budget(run.settings.n, run.settings.max_tokens)
    request = run.solution_request(n, run.settings.seed)
    (completions,), usage = await run.generate([request])
    pool = [cands.from_completion(i, c, run.extractor) for i, c in enumerate(completions)]
    for candidate in pool:
        events.emit(events.candidate(run.strategy, candidate))
    return {"pool": pool, "usage": usage}


async def score(state: BestOfNState, run: Run[StrategySettings]) -> dict[str, Any]:
    pool, usage = await run.score(state["pool"])
    return {"pool": pool, "usage": usage}


def create_best_of_n(
    policy: Policy,
    prm: PRM | None = None,
    *,
    strategy: str = STRATEGY,
    fixed: Sequence[str] = (),
    **options: Any,
) -> CompiledStateGraph:
    """Best-of-N over `policy`, ranked by `prm` (without one, selection is by majority vote).

    `options`: any `StrategySettings` field (n, selection, aggregation, temperature, seed,
    max_tokens, ...; see docs/settings.md) and the graph options `answer_extractor`,
    `checkpointer`, `store`, `interrupt_before`, `interrupt_after`, `debug`, `name`.
    `strategy` names the graph in events; `fixed` lists settings a run may not override.
    """
    scaffold = Scaffold(
        strategy,
        BestOfNState,
        StrategySettings,
        policy,
        prm,
        options,
        init=lambda settings: {"pool": []},
        final=lambda state, run: state["pool"],
        fixed=fixed,
    )
    scaffold.add_nodes(generate, score)
    scaffold.add_path("prepare", "generate", "score", "select")
    return scaffold.compile()
