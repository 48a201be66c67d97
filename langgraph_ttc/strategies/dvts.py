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
has an answer to grade.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Overwrite

from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.events import emit
from langgraph_ttc.policies.base import require_prefix_support
from langgraph_ttc.strategies.beam_search import beams_to_candidates
from langgraph_ttc.strategies.common import finish, resolve_problem
from langgraph_ttc.strategies.step_search import (
    Beam,
    StepSearchSettings,
    check_recursion_limit,
    expand,
    new_beam,
    recursion_limit,
    score_step,
    top_k,
)
from langgraph_ttc.types import (
    PRM,
    Policy,
    StrategyInput,
    StrategyOutput,
    StrategyState,
    merge_usage,
)

STRATEGY = "dvts"


class DVTSState(StrategyState, total=False):
    current: list[Beam]  # one node per open subtree
    children: list[Beam]  # this iteration's expansions
    leaves: list[Beam]  # candidates of closed subtrees
    iteration: int
    next_id: int


def create_dvts(
    policy: Policy,
    prm: PRM,
    *,
    n: int = 8,
    beam_width: int = 2,
    max_iterations: int = 40,
    lookahead: int = 0,
    step_delimiter: str = "\n\n",
    aggregation: str = "last",
    selection: str = "weighted",
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 1024,
    max_step_tokens: int = 256,
    seed: int | None = None,
    system_prompt: str | None = None,
    answer_extractor: AnswerExtractor = extract_answer,
    name: str = STRATEGY,
) -> CompiledStateGraph:
    """Build a DVTS graph: n / beam_width greedy subtrees, beam_width candidates each."""
    require_prefix_support(policy, name)
    defaults = StepSearchSettings(
        n=n,
        beam_width=beam_width,
        max_iterations=max_iterations,
        lookahead=lookahead,
        step_delimiter=step_delimiter,
        aggregation=aggregation,
        selection=selection,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        max_step_tokens=max_step_tokens,
        seed=seed,
        stop_at_answer=True,
        **({"system_prompt": system_prompt} if system_prompt is not None else {}),
    ).validate_search(has_prm=prm is not None)

    def settings_for(config: RunnableConfig) -> StepSearchSettings:
        settings = defaults.with_overrides(config).validate_search(has_prm=True)
        check_recursion_limit(config, settings.max_iterations)
        return settings

    async def prepare(state: DVTSState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        subtrees = settings.n // settings.beam_width
        roots = [new_beam(group, group=group) for group in range(subtrees)]
        return {
            "problem": resolve_problem(state),
            "current": roots,
            "children": [],
            "leaves": [],
            "iteration": 0,
            "next_id": subtrees,
            "usage": Overwrite({}),
        }

    async def expand_subtrees(state: DVTSState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        nodes = state["current"]
        children, usage = await expand(
            policy,
            state["problem"],
            nodes,
            [settings.beam_width] * len(nodes),
            settings,
            iteration=state["iteration"],
            next_id=state["next_id"],
            strategy=STRATEGY,
        )
        return {"children": children, "next_id": state["next_id"] + len(children), "usage": usage}

    async def score(state: DVTSState, config: RunnableConfig) -> dict[str, Any]:
        scored, usage = await score_step(
            policy,
            prm,
            state["problem"],
            state["children"],
            settings_for(config),
            strategy=STRATEGY,
            iteration=state["iteration"],
        )
        return {"children": scored, "usage": usage}

    async def choose(state: DVTSState, config: RunnableConfig) -> dict[str, Any]:
        """Greedy within each subtree: move to the best child, or close the subtree."""
        current, leaves = [], list(state["leaves"])
        for node in state["current"]:
            siblings = [c for c in state["children"] if c["parent"] == node["id"]]
            (best,), rest = top_k(siblings, 1)
            emit(
                {
                    "type": "prune",
                    "strategy": STRATEGY,
                    "iteration": state["iteration"],
                    "group": node["group"],
                    "kept": [best["id"]],
                    "dropped": [c["id"] for c in rest],
                }
            )
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

    def should_continue(state: DVTSState, config: RunnableConfig) -> str:
        settings = settings_for(config)
        if state["current"] and state["iteration"] < settings.max_iterations:
            return "expand"
        return "finish_siblings"

    async def finish_siblings(state: DVTSState, config: RunnableConfig) -> dict[str, Any]:
        """Run unfinished siblings (and any still-open node) to the end, then score them."""
        settings = settings_for(config)
        done = [leaf for leaf in state["leaves"] if leaf["finish_reason"] is not None]
        open_beams = [leaf for leaf in state["leaves"] if leaf["finish_reason"] is None]
        open_beams += state["current"]
        if not open_beams:
            return {"leaves": done}
        finished, expand_usage = await expand(
            policy,
            state["problem"],
            open_beams,
            [1] * len(open_beams),
            settings,
            iteration=state["iteration"],
            next_id=state["next_id"],
            strategy=STRATEGY,
            final=True,
        )
        scored, score_usage = await score_step(
            policy,
            prm,
            state["problem"],
            finished,
            settings,
            strategy=STRATEGY,
            iteration=state["iteration"],
        )
        return {
            "leaves": done + scored,
            "next_id": state["next_id"] + len(finished),
            "usage": merge_usage(expand_usage, score_usage),
        }

    async def select_answer(state: DVTSState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        leaves = sorted(state["leaves"], key=lambda b: (b["group"], -b["score"]))
        candidates = beams_to_candidates(leaves, settings, answer_extractor)
        for candidate, leaf in zip(candidates, leaves, strict=True):
            candidate["group"] = leaf["group"]  # budget curves take whole subtrees
        return finish(STRATEGY, state, candidates, settings.selection)

    builder = StateGraph(DVTSState, input_schema=StrategyInput, output_schema=StrategyOutput)
    builder.add_node("prepare", prepare)
    builder.add_node("expand", expand_subtrees)
    builder.add_node("score", score)
    builder.add_node("choose", choose)
    builder.add_node("finish_siblings", finish_siblings)
    builder.add_node("select", select_answer)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "expand")
    builder.add_edge("expand", "score")
    builder.add_edge("score", "choose")
    builder.add_conditional_edges("choose", should_continue, ["expand", "finish_siblings"])
    builder.add_edge("finish_siblings", "select")
    builder.add_edge("select", END)
    return builder.compile(name=name).with_config(recursion_limit=recursion_limit(max_iterations))
