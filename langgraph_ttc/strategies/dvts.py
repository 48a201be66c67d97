"""DVTS: diverse verifier tree search.

    prepare -> expand -> score -> choose --(subtrees still open)--> expand
                                    | otherwise
                                    v
                             finish_siblings -> select

The budget n is split into n / beam_width independent subtrees. In each iteration every open
subtree samples beam_width next steps of its current node (all subtrees in ONE policy call),
the PRM scores them, and the subtree greedily moves to its best child. Subtrees never compete,
which keeps the candidates diverse. A subtree closes when its best child ends (EOS, an empty
step, or a step that writes a boxed answer); its candidates are that child and its siblings.
Unfinished siblings are run to the end (one batched call) before selection, so every candidate
has an answer to grade. With `budget_tokens`, every step gets an equal share of what is left
and the search stops when that share is below a useful step
(`Budget.affords_steps`); the siblings are then finished within what remains (their
length capped to an equal share).
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
    SearchSettings,
    Selection,
)
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyState, merge_usage

STRATEGY = "dvts"


class DVTSState(StrategyState, total=False):
    current: list[Candidate]  # one node per open subtree
    children: list[Candidate]  # this iteration's expansions
    leaves: list[Candidate]  # candidates of closed subtrees
    iteration: int
    next_id: int


def roots(settings: SearchSettings) -> dict[str, Any]:
    subtrees = settings.n // settings.beam_width
    return {
        "current": [cands.new_candidate(g, parent=None, group=g) for g in range(subtrees)],
        "children": [],
        "leaves": [],
        "iteration": 0,
        "next_id": subtrees,
    }


async def expand(state: DVTSState, run: Run[SearchSettings]) -> dict[str, Any]:
    nodes = state["current"]
    children, usage = await search.expand(
        run,
        nodes,
        [run.settings.beam_width] * len(nodes),
        iteration=state["iteration"],
        next_id=state["next_id"],
        stop_at_answer=True,
    )
    return {"children": children, "next_id": state["next_id"] + len(children), "usage": usage}


async def score(state: DVTSState, run: Run[SearchSettings]) -> dict[str, Any]:
    scored, usage = await search.score_beams(run, state["children"], state["iteration"])
    return {"children": scored, "usage": usage}


async def choose(state: DVTSState, run: Run[SearchSettings]) -> dict[str, Any]:
    """Greedy within each subtree: move to the best child, or close the subtree."""
    current, leaves = [], list(state["leaves"])
    for node in state["current"]:
        siblings = [c for c in state["children"] if c["parent"] == node["id"]]
        (best,), rest = search.top_k(siblings, 1)
        events.emit(events.prune(run.strategy, state["iteration"], [best], rest, node["group"]))
        if best["finish_reason"] is not None:
            leaves.extend([best, *rest])
        else:
            current.append(best)
    return {
        "current": current,
        "leaves": leaves,
        "children": [],
        "iteration": state["iteration"] + 1,
    }


def next_node(state: DVTSState, run: Run[SearchSettings]) -> str:
    nodes = state["current"]
    if not nodes or state["iteration"] >= run.settings.max_iterations:
        return "finish_siblings"
    copies = [run.settings.beam_width] * len(nodes)
    if not search.affords_expansion(run, nodes, copies, state["iteration"]):
        return "finish_siblings"
    return "expand"


async def finish_siblings(state: DVTSState, run: Run[SearchSettings]) -> dict[str, Any]:
    """Run unfinished siblings (and any still-open node) to the end, then score them."""
    done = [leaf for leaf in state["leaves"] if leaf["finish_reason"] is not None]
    open_beams = [leaf for leaf in state["leaves"] if leaf["finish_reason"] is None]
    open_beams += state["current"]
    if not open_beams:
        return {"leaves": done}
    if not run.budget.affords(len(open_beams)):  # not one token each: keep them as cut
        return {
            "leaves": done + [run.finished({**b, "finish_reason": "length"}) for b in open_beams]
        }
    finished, expand_usage = await search.expand(
        run,
        open_beams,
        [1] * len(open_beams),
        iteration=state["iteration"],
        next_id=state["next_id"],
        final=True,
        stop_at_answer=True,
    )
    scored, score_usage = await search.score_beams(run, finished, state["iteration"])
    return {
        "leaves": done + scored,
        "next_id": state["next_id"] + len(finished),
        "usage": merge_usage(expand_usage, score_usage),
    }


def leaves_by_subtree(state: DVTSState, run: Run[SearchSettings]) -> list[Candidate]:
    """Candidates subtree by subtree (budget curves read whole subtrees), best first."""
    return sorted(state["leaves"], key=lambda b: (b["group"], -b["score"]))


@builder
def create_dvts(
    policy: Policy,
    prm: PRM,
    *,
    n: int = 8,
    beam_width: int = 2,
    max_iterations: int = 40,
    lookahead: int = 0,
    max_step_tokens: int = 256,
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
    """A DVTS graph: n / beam_width greedy subtrees, beam_width candidates each
    (docs/algorithms.md). Every setting is described in docs/settings.md; the graph options as
    for `create_best_of_n`."""
    scaffold = search.search_scaffold(
        STRATEGY,
        DVTSState,
        SearchSettings,
        policy,
        prm,
        locals(),
        init=roots,
        final=leaves_by_subtree,
    )
    scaffold.add_nodes(expand, score, choose, finish_siblings)
    scaffold.add_path("prepare", "expand", "score", "choose")
    scaffold.add_branch("choose", next_node, ["expand", "finish_siblings"])
    scaffold.add_path("finish_siblings", "select")
    return scaffold.compile()
