"""Step-level beam search guided by a PRM.

    prepare -> expand -> score -> prune --(active beams left, iterations left,
                 ^                   |     fewer than n completed)--> expand
                 +-------------------+ otherwise --> select

Every iteration, each of the n active beams samples one next step (ONE policy call: a request
with n=copies per surviving beam); finished beams leave the pool; the PRM scores the rest (with
optional greedy lookahead); the best n / beam_width survive, globally; survivors are copied to
refill the pool to n. The final iteration lets the survivors run to the end. The best n
completed beams (not the first n) are the candidates. With `budget_tokens`, every step gets
an equal share of what is left (lookahead included); the search stops when that share is
below a useful step (`Budget.affords_steps`) and selects from the beams it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import All, Checkpointer

from langgraph_ttc import candidates as cands
from langgraph_ttc import events
from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.selection import DEFAULT_STEP_DELIMITER
from langgraph_ttc.strategies import step_search as search
from langgraph_ttc.strategies.options import builder
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.settings import (
    DEFAULT_SYSTEM_PROMPT,
    Aggregation,
    BeamSearchSettings,
    Selection,
)
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyState

STRATEGY = "beam_search"


class BeamSearchState(StrategyState, total=False):
    active: list[Candidate]  # growing beams
    completed: list[Candidate]  # finished beams
    iteration: int
    next_id: int


def refill_counts(survivors: int, n: int) -> list[int]:
    """How many copies of each survivor make a pool of n (spread as evenly as possible)."""
    base, extra = divmod(n, survivors)
    return [base + (1 if i < extra else 0) for i in range(survivors)]


async def expand(state: BeamSearchState, run: Run[BeamSearchSettings]) -> dict[str, Any]:
    survivors = state["active"]
    children, usage = await search.expand(
        run,
        survivors,
        refill_counts(len(survivors), run.settings.n),
        iteration=state["iteration"],
        next_id=state["next_id"],
    )
    return {"active": children, "next_id": state["next_id"] + len(children), "usage": usage}


async def score(state: BeamSearchState, run: Run[BeamSearchSettings]) -> dict[str, Any]:
    scored, usage = await search.score_beams(run, state["active"], state["iteration"])
    finished = [b for b in scored if b["finish_reason"] is not None]
    return {
        "active": [b for b in scored if b["finish_reason"] is None],
        "completed": state["completed"] + finished,
        "usage": usage,
    }


async def prune(state: BeamSearchState, run: Run[BeamSearchSettings]) -> dict[str, Any]:
    active, duplicates = state["active"], []
    if run.settings.filter_duplicates:
        active, duplicates = search.drop_duplicates(active)
    kept, dropped = search.top_k(active, run.settings.n // run.settings.beam_width)
    events.emit(events.prune(run.strategy, state["iteration"], kept, dropped + duplicates))
    return {"active": kept, "iteration": state["iteration"] + 1}


def next_node(state: BeamSearchState, run: Run[BeamSearchSettings]) -> str:
    settings, active = run.settings, state["active"]
    done = len(state["completed"]) >= settings.n or state["iteration"] >= settings.max_iterations
    if done or not active:
        return "select"
    copies = refill_counts(len(active), settings.n)
    if not search.affords_expansion(run, active, copies, state["iteration"]):
        return "select"
    return "expand"


def best_completed(state: BeamSearchState, run: Run[BeamSearchSettings]) -> list[Candidate]:
    """The best n completed beams; solutions cut by the token budget only fill up the rest,
    then (rarely) the best unfinished beams, marked as cut."""
    n = run.settings.n
    ranked = sorted(state["completed"], key=lambda b: (b["finish_reason"] != "stop", -b["score"]))
    unfinished = sorted(state["active"], key=lambda b: -search.rank(b))[: max(0, n - len(ranked))]
    return ranked[:n] + [run.finished({**b, "finish_reason": "length"}) for b in unfinished]


@builder
def create_beam_search(
    policy: Policy,
    prm: PRM,
    *,
    n: int = 8,
    beam_width: int = 2,
    max_iterations: int = 40,
    lookahead: int = 0,
    max_step_tokens: int = 256,
    filter_duplicates: bool = True,
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
    """A PRM-guided step-level beam search graph (docs/algorithms.md).

    `n` beams stay alive per iteration; `beam_width` is the expansion factor (the best
    n / beam_width survive each iteration). `max_tokens` bounds a whole solution,
    `max_step_tokens` one step; `lookahead` greedy steps are rolled out before scoring. Every
    setting is described in docs/settings.md; the graph options as for `create_best_of_n`.
    """
    scaffold = search.search_scaffold(
        STRATEGY,
        BeamSearchState,
        BeamSearchSettings,
        policy,
        prm,
        locals(),
        init=lambda settings: {
            "active": [cands.new_candidate(0, parent=None)],
            "completed": [],
            "iteration": 0,
            "next_id": 1,
        },
        final=best_completed,
    )
    scaffold.add_nodes(expand, score, prune)
    scaffold.add_path("prepare", "expand", "score", "prune")
    scaffold.add_branch("prune", next_node, ["expand", "select"])
    return scaffold.compile()
