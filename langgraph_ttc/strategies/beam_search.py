"""Step-level beam search guided by a PRM.

    prepare -> expand -> score -> prune --(active beams left, iterations left,
                 ^                   |     fewer than n completed)--> expand
                 +-------------------+ otherwise --> select

Every iteration, each of the n active beams samples one next step (ONE policy call: a request
with n=copies per surviving beam); finished beams leave the pool; the PRM scores the rest (with
optional greedy lookahead); the best n / beam_width survive, globally; survivors are copied to
refill the pool to n. The final iteration lets the survivors run to the end. The best n
completed beams (not the first n) are the candidates.
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
from langgraph_ttc.strategies.common import finish, make_candidate, resolve_problem
from langgraph_ttc.strategies.step_search import (
    Beam,
    StepSearchSettings,
    check_recursion_limit,
    drop_duplicates,
    expand,
    new_beam,
    recursion_limit,
    score_step,
    top_k,
)
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyInput, StrategyOutput, StrategyState

STRATEGY = "beam_search"


class BeamSearchState(StrategyState, total=False):
    active: list[Beam]
    completed: list[Beam]
    iteration: int
    next_id: int


def refill_counts(survivors: int, n: int) -> list[int]:
    """How many copies of each survivor make a pool of n (spread as evenly as possible)."""
    base, extra = divmod(n, survivors)
    return [base + (1 if i < extra else 0) for i in range(survivors)]


def beams_to_candidates(
    beams: list[Beam], settings: StepSearchSettings, extractor: AnswerExtractor
) -> list[Candidate]:
    candidates = []
    for beam in beams:
        candidate = make_candidate(
            beam["id"],
            beam["text"],
            num_tokens=beam["num_tokens"],
            finish_reason=beam["finish_reason"] or "length",
            step_scores=beam["step_scores"],
            aggregation=settings.aggregation,
            extractor=extractor,
            error=beam["error"],
        )
        candidate["score"] = beam["score"]
        candidates.append(candidate)
    return candidates


def create_beam_search(
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
    filter_duplicates: bool = True,
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 1024,
    max_step_tokens: int = 256,
    seed: int | None = None,
    system_prompt: str | None = None,
    answer_extractor: AnswerExtractor = extract_answer,
    name: str = STRATEGY,
) -> CompiledStateGraph:
    """Build a PRM-guided step-level beam search graph (REFERENCE.md section 2).

    `n` beams stay alive per iteration; `beam_width` is the expansion factor (the best
    n / beam_width survive each iteration). `max_tokens` bounds a whole solution,
    `max_step_tokens` one step. Per-run overrides go in `config["configurable"]`.
    """
    require_prefix_support(policy, name)
    defaults = StepSearchSettings(
        n=n,
        beam_width=beam_width,
        max_iterations=max_iterations,
        lookahead=lookahead,
        step_delimiter=step_delimiter,
        aggregation=aggregation,
        selection=selection,
        filter_duplicates=filter_duplicates,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        max_step_tokens=max_step_tokens,
        seed=seed,
        **({"system_prompt": system_prompt} if system_prompt is not None else {}),
    ).validate_search(has_prm=prm is not None)

    def settings_for(config: RunnableConfig) -> StepSearchSettings:
        settings = defaults.with_overrides(config).validate_search(has_prm=True)
        check_recursion_limit(config, settings.max_iterations)
        return settings

    async def prepare(state: BeamSearchState, config: RunnableConfig) -> dict[str, Any]:
        settings_for(config)
        return {
            "problem": resolve_problem(state),
            "active": [new_beam(0)],
            "completed": [],
            "iteration": 0,
            "next_id": 1,
            "usage": Overwrite({}),
        }

    async def expand_beams(state: BeamSearchState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        survivors = state["active"]
        children, usage = await expand(
            policy,
            state["problem"],
            survivors,
            refill_counts(len(survivors), settings.n),
            settings,
            iteration=state["iteration"],
            next_id=state["next_id"],
            strategy=STRATEGY,
        )
        return {"active": children, "next_id": state["next_id"] + len(children), "usage": usage}

    async def score(state: BeamSearchState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        scored, usage = await score_step(
            policy,
            prm,
            state["problem"],
            state["active"],
            settings,
            strategy=STRATEGY,
            iteration=state["iteration"],
        )
        finished = [b for b in scored if b["finish_reason"] is not None]
        return {
            "active": [b for b in scored if b["finish_reason"] is None],
            "completed": state["completed"] + finished,
            "usage": usage,
        }

    async def prune(state: BeamSearchState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        active, duplicates = (
            drop_duplicates(state["active"])
            if settings.filter_duplicates
            else (state["active"], [])
        )
        kept, dropped = top_k(active, settings.n // settings.beam_width)
        emit(
            {
                "type": "prune",
                "strategy": STRATEGY,
                "iteration": state["iteration"],
                "kept": [b["id"] for b in kept],
                "dropped": [b["id"] for b in dropped + duplicates],
            }
        )
        return {"active": kept, "iteration": state["iteration"] + 1}

    def should_continue(state: BeamSearchState, config: RunnableConfig) -> str:
        settings = settings_for(config)
        if (
            not state["active"]
            or state["iteration"] >= settings.max_iterations
            or len(state["completed"]) >= settings.n
        ):
            return "select"
        return "expand"

    async def select_answer(state: BeamSearchState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        # the best n completed beams; solutions cut by the token budget only fill up the rest
        ranked = sorted(
            state["completed"], key=lambda b: (b["finish_reason"] != "stop", -b["score"])
        )[: settings.n]
        if len(ranked) < settings.n:  # pad with the best unfinished beams (rare)
            ranked += sorted(state["active"], key=lambda b: -b["score"])[: settings.n - len(ranked)]
        candidates = beams_to_candidates(ranked, settings, answer_extractor)
        return finish(STRATEGY, state, candidates, settings.selection)

    builder = StateGraph(BeamSearchState, input_schema=StrategyInput, output_schema=StrategyOutput)
    builder.add_node("prepare", prepare)
    builder.add_node("expand", expand_beams)
    builder.add_node("score", score)
    builder.add_node("prune", prune)
    builder.add_node("select", select_answer)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "expand")
    builder.add_edge("expand", "score")
    builder.add_edge("score", "prune")
    builder.add_conditional_edges("prune", should_continue, ["expand", "select"])
    builder.add_edge("select", END)
    # 3 supersteps per iteration plus prepare/select: a runaway loop fails fast.
    return builder.compile(name=name).with_config(recursion_limit=recursion_limit(max_iterations))
