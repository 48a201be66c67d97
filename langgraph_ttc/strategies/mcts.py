"""Monte Carlo tree search over solution steps (as in rStar-Math, LATS), guided by a PRM.

    prepare -> expand -> score -> backup --(fewer than n finished, iterations, leaves and
                 ^                   |      budget left)--> expand
                 +-------------------+ otherwise --> select

The whole tree is in the graph state (`tree`: plain `TreeNode` dicts; `nodes`: each node's
candidate), so a checkpointed run resumes the tree where it stopped. Every iteration:

- select: n / `expansions` leaves (at least one), each by UCT from the root
  (Q + c sqrt(ln N_parent / N_child), c = `exploration`, an unvisited child first), with a
  virtual loss (a visit of value 0) on every node of a chosen path, so the leaves differ;
- expand: `expansions` next steps of every selected leaf, in ONE policy call (when fewer
  leaves are open, as for the root, the same number of steps is spread over them: every
  iteration samples about n steps, as beam search does); a leaf at depth `max_depth` - 1
  samples the rest of its solution instead;
- score: the new children in ONE verifier call; with `rollout="greedy"` each unfinished child
  is first run greedily to the end (one more policy call) and valued by the rolled-out
  solution's score, otherwise by its own score;
- backup: each child's value is added to it and to every ancestor (visits + 1), so a node's
  mean value is the mean over the values below it.

Finished children are terminal: never selected again. The search stops once `n` solutions
have finished (`n` counts finished solutions, not expansions), after `max_iterations`, when no
leaf is left to expand, or when `budget_tokens` cannot pay for the next expansion. The
candidates are the best n finished solutions (filled up, if fewer finished, with the best
unfinished leaves, marked as cut).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

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
    MCTSSettings,
    Selection,
)
from langgraph_ttc.types import (
    PRM,
    Candidate,
    Policy,
    StrategyState,
    Usage,
    empty_usage,
    merge_usage,
)

STRATEGY = "mcts"


class MCTSState(StrategyState, total=False):
    tree: list[trees.TreeNode]  # index = node id; node 0 is the root (the empty solution)
    nodes: list[Candidate]  # each node's candidate: its text, steps' scores, answer
    selected: list[int]  # the leaves the next expansion grows
    fresh: list[int]  # the children the last expansion added (to score and back up)
    iteration: int


def leaves_per_iteration(settings: MCTSSettings) -> int:
    return max(1, settings.n // settings.expansions)


def children_per_leaf(settings: MCTSSettings, leaves: int) -> list[int]:
    """`expansions` each; when fewer leaves are open (the root, at first), the iteration's
    samples are spread over them, so every iteration samples as many steps."""
    return trees.spread(leaves_per_iteration(settings) * settings.expansions, leaves)


def is_last_step(settings: MCTSSettings, node: trees.TreeNode) -> bool:
    return node["depth"] >= settings.max_depth - 1


def initial(settings: MCTSSettings) -> dict[str, Any]:
    return {
        "tree": [trees.root()],
        "nodes": [cands.new_candidate(0, parent=None)],
        "selected": [0],
        "fresh": [],
        "iteration": 0,
    }


async def expand(state: MCTSState, run: Run[MCTSSettings]) -> dict[str, Any]:
    tree = trees.copied(state["tree"])
    nodes = list(state["nodes"])
    parents = [nodes[i] for i in state["selected"]]
    finals = [is_last_step(run.settings, tree[i]) for i in state["selected"]]
    children, usage = await search.expand(
        run,
        parents,
        children_per_leaf(run.settings, len(parents)),
        iteration=state["iteration"],
        next_id=len(nodes),
        final=finals,
    )
    search.add_to_tree(run, tree, nodes, children, state["iteration"])
    return {
        "tree": tree,
        "nodes": nodes,
        "fresh": [c["id"] for c in children],
        "usage": usage,
    }


async def rollout_texts(
    run: Run[MCTSSettings], children: Sequence[Candidate], iteration: int
) -> tuple[list[str], Usage]:
    """Each child's text, unfinished ones run greedily to the end in ONE policy call."""
    texts = [c["text"] for c in children]
    rolling = [i for i, c in enumerate(children) if c["finish_reason"] is None]
    share = run.budget.step_share(len(rolling))
    if not rolling or share == 0:
        return texts, empty_usage()
    requests = []
    for i in rolling:
        request = search.step_request(
            run,
            children[i]["text"],
            n=1,
            final=True,
            seed=None,
            temperature=0.0,
            prefix_token_ids=children[i].get("token_ids"),
            confidences=False,
        )
        cap = search.step_cap(run.settings, children[i], final=True)
        requests.append(replace(request, max_tokens=cap if share is None else min(cap, share)))
    results, usage = await run.generate(requests, iteration=iteration)
    for i, (completion,) in zip(rolling, results, strict=True):
        texts[i] += completion.text
    return texts, usage


def value_of(child: Candidate) -> float:
    """A child's value: its rolled-out solution's score when rolled out, else its own."""
    return child.get("lookahead_score", child["score"])


async def score(state: MCTSState, run: Run[MCTSSettings]) -> dict[str, Any]:
    nodes, tree = list(state["nodes"]), trees.copied(state["tree"])
    children = [nodes[i] for i in state["fresh"]]
    iteration, usage = state["iteration"], empty_usage()
    if run.settings.rollout == "greedy":
        texts, usage = await rollout_texts(run, children, iteration)
        scored, score_usage = await run.score(children, iteration=iteration, rollouts=texts)
    else:
        scored, score_usage = await run.score(children, iteration=iteration)
    for child in scored:
        node = tree[child["id"]]
        node["score"] = child["score"]
        nodes[child["id"]] = child
        events.emit(
            events.tree(
                run.strategy, iteration, "score", node, score=child["score"], value=value_of(child)
            )
        )
    return {"tree": tree, "nodes": nodes, "usage": merge_usage(usage, score_usage)}


async def backup(state: MCTSState, run: Run[MCTSSettings]) -> dict[str, Any]:
    """Back every new child's value up to the root, then select the next leaves."""
    tree = trees.copied(state["tree"])
    touched: dict[int, None] = {}
    for child_id in state["fresh"]:
        for i in trees.backup(tree, child_id, value_of(state["nodes"][child_id])):
            touched[i] = None
    for i in touched:
        node = tree[i]
        events.emit(
            events.tree(
                run.strategy,
                state["iteration"],
                "backup",
                node,
                value=trees.mean_value(node),
                visits=node["visits"],
            )
        )
    settings = run.settings
    selected = trees.select_leaves(
        tree, leaves_per_iteration(settings), settings.exploration, settings.max_depth
    )
    return {"tree": tree, "selected": selected, "fresh": [], "iteration": state["iteration"] + 1}


def finished_nodes(state: MCTSState) -> list[Candidate]:
    return [state["nodes"][n["id"]] for n in state["tree"] if n["finished"]]


def next_node(state: MCTSState, run: Run[MCTSSettings]) -> str:
    settings, selected = run.settings, state["selected"]
    done = len(finished_nodes(state)) >= settings.n or state["iteration"] >= settings.max_iterations
    if done or not selected:
        return "select"
    caps = [
        search.step_cap(settings, state["nodes"][i], final=is_last_step(settings, state["tree"][i]))
        for i in selected
    ]
    steps = search.sampled_steps(settings, sum(children_per_leaf(settings, len(selected))))
    return "expand" if run.budget.affords_steps(steps, caps) else "select"


def best_leaves(state: MCTSState, run: Run[MCTSSettings]) -> list[Candidate]:
    """The best n finished solutions, filled up with the best unfinished leaves (cut)."""
    growing = [
        state["nodes"][n["id"]]
        for n in state["tree"]
        if not n["children"] and not n["finished"] and n["id"] != 0
    ]
    return search.best_solutions(run, finished_nodes(state), growing, run.settings.n)


@builder
def create_mcts(
    policy: Policy,
    prm: PRM,
    *,
    n: int = 8,
    expansions: int = 2,
    exploration: float = 1.0,
    rollout: Literal["none", "greedy"] = "none",
    max_depth: int = 40,
    max_iterations: int = 100,
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
    """An MCTS graph over solution steps (docs/algorithms.md): each iteration selects
    n / `expansions` leaves by UCT (exploration weight `exploration`) with virtual loss,
    samples `expansions` next steps of each, values them by the PRM (after a greedy rollout
    with `rollout="greedy"`) and backs the values up; it stops once `n` solutions finished.
    Every setting is described in docs/settings.md; the graph options as for
    `create_best_of_n`."""
    scaffold = Scaffold(
        STRATEGY,
        MCTSState,
        MCTSSettings,
        policy,
        prm,
        locals(),
        init=initial,
        final=best_leaves,
        supersteps=lambda settings: 3 * settings.max_iterations + 10,
        loop_setting="max_iterations",
        needs_prm=True,
        continues_prefix=True,
    )
    scaffold.add_nodes(expand, score, backup)
    scaffold.add_path("prepare", "expand", "score", "backup")
    scaffold.add_branch("backup", next_node, ["expand", "select"])
    return scaffold.compile()
