"""REBASE: reward-balanced tree search (Wu et al. 2024, "Inference Scaling Laws", arXiv
2408.00724), guided by a PRM.

    prepare -> expand -> score --(fewer than n finished, a frontier, depth and budget
                 ^          |     left)--> expand
                 +----------+ otherwise --> select

The tree grows one depth per iteration. The frontier (the unfinished nodes of the deepest
level) shares an expansion budget of n minus the solutions already finished: node i gets
round(B * softmax(score / `weight_temperature`)_i) children (largest remainder, so the counts
sum to exactly B), so strong nodes get many children and weak ones few or none. All of a
depth's children are sampled in ONE policy call and scored in ONE verifier call; finished
children are kept as solutions (and shrink the next budget), the others form the next
frontier. At depth `max_depth` - 1 the children are sampled to the end. The whole tree is in
the graph state, so a checkpointed run resumes it. With `budget_tokens`, every step gets an
equal share of what is left and the search stops when that share is below a useful step.
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
from langgraph_ttc.strategies import tree as trees
from langgraph_ttc.strategies.options import builder
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.scaffold import Scaffold
from langgraph_ttc.strategies.settings import (
    DEFAULT_SYSTEM_PROMPT,
    Aggregation,
    RebaseSettings,
    Selection,
)
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyState

STRATEGY = "rebase"


class RebaseState(StrategyState, total=False):
    tree: list[trees.TreeNode]  # index = node id; node 0 is the root (the empty solution)
    nodes: list[Candidate]  # each node's candidate
    frontier: list[int]  # the unfinished nodes of the deepest level
    fresh: list[int]  # the children the last expansion added (to score)
    completed: list[int]  # finished solutions, in the order they finished
    iteration: int  # the frontier's depth


def initial(settings: RebaseSettings) -> dict[str, Any]:
    return {
        "tree": [trees.root()],
        "nodes": [cands.new_candidate(0, parent=None)],
        "frontier": [0],
        "fresh": [],
        "completed": [],
        "iteration": 0,
    }


def allocation(state: RebaseState, run: Run[RebaseSettings]) -> list[int]:
    """Children per frontier node: n minus the finished solutions, by softmax weight."""
    budget = run.settings.n - len(state["completed"])
    scores = [state["tree"][i]["score"] for i in state["frontier"]]
    return trees.allocate(scores, budget, run.settings.weight_temperature)


def is_last_depth(settings: RebaseSettings, iteration: int) -> bool:
    return iteration >= settings.max_depth - 1


async def expand(state: RebaseState, run: Run[RebaseSettings]) -> dict[str, Any]:
    tree = trees.copied(state["tree"])
    nodes, iteration = list(state["nodes"]), state["iteration"]
    counts = allocation(state, run)
    kept = [i for i, k in zip(state["frontier"], counts, strict=True) if k]
    dropped = [nodes[i] for i, k in zip(state["frontier"], counts, strict=True) if not k]
    events.emit(events.prune(run.strategy, iteration, [nodes[i] for i in kept], dropped))
    children, usage = await search.expand(
        run,
        [nodes[i] for i in kept],
        [k for k in counts if k],
        iteration=iteration,
        next_id=len(nodes),
        final=is_last_depth(run.settings, iteration),
    )
    search.add_to_tree(run, tree, nodes, children, iteration)
    return {"tree": tree, "nodes": nodes, "fresh": [c["id"] for c in children], "usage": usage}


async def score(state: RebaseState, run: Run[RebaseSettings]) -> dict[str, Any]:
    tree = trees.copied(state["tree"])
    nodes, iteration = list(state["nodes"]), state["iteration"]
    scored, usage = await run.score([nodes[i] for i in state["fresh"]], iteration=iteration)
    for child in scored:
        node = tree[child["id"]]
        node["score"] = child["score"]
        nodes[child["id"]] = child
        events.emit(events.tree(run.strategy, iteration, "score", node, score=child["score"]))
    return {
        "tree": tree,
        "nodes": nodes,
        "frontier": [c["id"] for c in scored if c["finish_reason"] is None],
        "completed": state["completed"] + [c["id"] for c in scored if c["finish_reason"]],
        "fresh": [],
        "iteration": iteration + 1,
        "usage": usage,
    }


def next_node(state: RebaseState, run: Run[RebaseSettings]) -> str:
    settings, frontier = run.settings, state["frontier"]
    budget = settings.n - len(state["completed"])
    if budget <= 0 or not frontier or state["iteration"] >= settings.max_depth:
        return "select"
    last = is_last_depth(settings, state["iteration"])
    caps = [search.step_cap(settings, state["nodes"][i], final=last) for i in frontier]
    return "expand" if run.budget.affords_steps(budget, caps) else "select"


def solutions(state: RebaseState, run: Run[RebaseSettings]) -> list[Candidate]:
    """The finished solutions, filled up (if fewer than n) with the best frontier nodes, cut."""
    finished = [state["nodes"][i] for i in state["completed"]]
    growing = [state["nodes"][i] for i in state["frontier"] if i != 0]
    return search.best_solutions(run, finished, growing, run.settings.n)


@builder
def create_rebase(
    policy: Policy,
    prm: PRM,
    *,
    n: int = 8,
    weight_temperature: float = 1.0,
    max_depth: int = 40,
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
    """A REBASE graph (docs/algorithms.md): at each depth, n minus the finished solutions
    children are split over the frontier by softmax(PRM score / `weight_temperature`); it
    stops once `n` solutions finished. Every setting is described in docs/settings.md; the
    graph options as for `create_best_of_n`."""
    scaffold = Scaffold(
        STRATEGY,
        RebaseState,
        RebaseSettings,
        policy,
        prm,
        locals(),
        init=initial,
        final=solutions,
        supersteps=lambda settings: 2 * settings.max_depth + 10,
        loop_setting="max_depth",
        needs_prm=True,
        continues_prefix=True,
    )
    scaffold.add_nodes(expand, score)
    scaffold.add_path("prepare", "expand", "score")
    scaffold.add_branch("score", next_node, ["expand", "select"])
    return scaffold.compile()
