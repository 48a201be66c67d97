"""Best-of-N: sample N full solutions in one request, score their steps, select one.

    prepare -> generate -> score -> select

With `budget_tokens`, only the samples the budget pays for at `max_tokens` each are drawn
(at least one, its length capped to the budget).

Naive, weighted and majority selection all read the same samples (docs/algorithms.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    StrategySettings,
)
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyState

STRATEGY = "best_of_n"


class BestOfNState(StrategyState, total=False):
    pool: list[Candidate]  # the N samples, scored once the verifier has run


async def generate(state: BestOfNState, run: Run[StrategySettings]) -> dict[str, Any]:
    # with a token budget: as many samples as it pays for at max_tokens each (at least one)
    n = run.budget.samples(run.settings.n, run.settings.max_tokens)
    request = run.solution_request(n, run.settings.seed)
    (completions,), usage = await run.generate([request])
    pool = [cands.from_completion(i, c, run.extractor) for i, c in enumerate(completions)]
    for candidate in pool:
        events.emit(events.candidate(run.strategy, candidate))
    return {"pool": pool, "usage": usage}


async def score(state: BestOfNState, run: Run[StrategySettings]) -> dict[str, Any]:
    pool, usage = await run.score(state["pool"])
    return {"pool": pool, "usage": usage}


def best_of_n_graph(
    strategy: str,
    policy: Policy,
    prm: PRM | None,
    options: Mapping[str, Any],
    fixed: Sequence[str] = (),
) -> CompiledStateGraph:
    """The best-of-N graph, named `strategy` in its events; `fixed` settings may not change
    per run (greedy decoding is this graph with n=1 at temperature 0)."""
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


@builder
def create_best_of_n(
    policy: Policy,
    prm: PRM | None = None,
    *,
    n: int = 8,
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
    """Best-of-N over `policy`: `n` samples, ranked by `prm`'s step scores.

    `selection`: "weighted" (the answer whose samples' scores sum highest), "naive" (the best
    sample) or "majority" (the most frequent answer); None picks "weighted" with a `prm` and
    "majority" without. Every setting is described in docs/settings.md; the graph options go
    to LangGraph's `compile` (`answer_extractor` reads a solution's final answer).
    """
    return best_of_n_graph(STRATEGY, policy, prm, locals())
