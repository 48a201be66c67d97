"""Self-refinement: draft, then critique and revise for a number of rounds (sequential
revisions, after Snell et al. 2024), optionally in parallel chains.

    prepare -> draft -> score --(rounds left)--> critique -> revise -> score
                          | otherwise
                          v
                        select

Every version of every chain is kept as a candidate. With a verifier, its step scores are shown
to the critic (the weakest step is named) and the final choice is by score; without one, by
majority vote across all versions. Each phase is one policy call covering every chain. With
`budget_tokens`, only the drafts it pays for are written, and a round starts only if the
budget pays for every chain's critique and revision at their token caps.
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
from langgraph_ttc.errors import SettingsError
from langgraph_ttc.selection import DEFAULT_STEP_DELIMITER
from langgraph_ttc.strategies.options import builder
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.scaffold import Scaffold
from langgraph_ttc.strategies.settings import (
    DEFAULT_SYSTEM_PROMPT,
    Aggregation,
    RefineSettings,
    Selection,
)
from langgraph_ttc.types import PRM, Candidate, GenerationRequest, Policy, StrategyState

STRATEGY = "self_refine"

CRITIC_PROMPT = (
    "You check math solutions. Read the solution step by step, recompute every calculation, "
    "and list the mistakes you find. If every step is right, say that it is correct."
)
REVISE_PROMPT = (
    "Solve the math problem step by step, using the feedback on an earlier attempt. Separate "
    "the steps with a blank line. End with the final answer written as \\boxed{answer}."
)


class SelfRefineState(StrategyState, total=False):
    versions: list[Candidate]  # every version of every chain (chain, round set)
    critiques: list[str]  # latest critique per chain
    round: int


def verifier_feedback(step_scores: list[float]) -> str:
    """One line naming the step the verifier trusts least, for the critic."""
    if not step_scores:
        return ""
    weakest = min(range(len(step_scores)), key=step_scores.__getitem__)
    return (
        f"A verifier rated the steps {', '.join(f'{s:.2f}' for s in step_scores)} "
        f"(0 = wrong, 1 = right); it doubts step {weakest + 1} most."
    )


def critique_messages(problem: str, solution: str, feedback: str) -> list[dict[str, str]]:
    user = f"Problem:\n{problem}\n\nSolution:\n{solution.strip()}"
    if feedback:
        user += f"\n\n{feedback}"
    return [{"role": "system", "content": CRITIC_PROMPT}, {"role": "user", "content": user}]


def revise_messages(problem: str, solution: str, critique: str) -> list[dict[str, str]]:
    user = (
        f"Problem:\n{problem}\n\nEarlier attempt:\n{solution.strip()}\n\n"
        f"Feedback:\n{critique.strip()}\n\nWrite a corrected solution."
    )
    return [{"role": "system", "content": REVISE_PROMPT}, {"role": "user", "content": user}]


def seed_for(settings: RefineSettings, phase: int, chain: int) -> int | None:
    """A distinct seed per (phase, chain): phases are `max(1000, n)` apart."""
    if settings.seed is None:
        return None
    return settings.seed + max(1000, settings.n) * phase + chain


def latest(state: SelfRefineState) -> list[Candidate]:
    return [v for v in state["versions"] if v["round"] == state["round"]]


async def draft(state: SelfRefineState, run: Run[RefineSettings]) -> dict[str, Any]:
    chains = run.budget.samples(run.settings.n, run.settings.max_tokens)
    request = run.solution_request(chains, seed_for(run.settings, 0, 0))
    (drafts,), usage = await run.generate([request], iteration=0)
    versions = [
        cands.from_completion(chain, c, run.extractor, chain=chain, round=0)
        for chain, c in enumerate(drafts)
    ]
    for version in versions:
        events.emit(events.candidate(run.strategy, version, 0))
    return {"versions": versions, "usage": usage}


async def score(state: SelfRefineState, run: Run[RefineSettings]) -> dict[str, Any]:
    scored, usage = await run.score(latest(state), iteration=state["round"])
    by_id = {v["id"]: v for v in scored}
    return {"versions": [by_id.get(v["id"], v) for v in state["versions"]], "usage": usage}


async def critique(state: SelfRefineState, run: Run[RefineSettings]) -> dict[str, Any]:
    settings, versions = run.settings, latest(state)
    requests = [
        GenerationRequest(
            messages=critique_messages(run.problem, v["text"], verifier_feedback(v["step_scores"])),
            max_tokens=settings.critique_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=seed_for(settings, 2 * state["round"] + 1, v["chain"]),
        )
        for v in versions
    ]
    results, usage = await run.generate(requests, iteration=state["round"])
    critiques = [completions[0].text for completions in results]
    for version, text in zip(versions, critiques, strict=True):
        events.emit(events.critique(run.strategy, state["round"], version, text))
    return {"critiques": critiques, "usage": usage}


async def revise(state: SelfRefineState, run: Run[RefineSettings]) -> dict[str, Any]:
    settings, versions, next_round = run.settings, latest(state), state["round"] + 1
    requests = [
        GenerationRequest(
            messages=revise_messages(run.problem, v["text"], critique),
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=seed_for(settings, 2 * next_round, v["chain"]),
            top_logprobs=run.top_logprobs(),  # a revision's confidence: its own tokens
        )
        for v, critique in zip(versions, state["critiques"], strict=True)
    ]
    results, usage = await run.generate(requests, iteration=next_round)
    first_id = len(state["versions"])
    revised = [
        cands.from_completion(first_id + k, c[0], run.extractor, chain=v["chain"], round=next_round)
        for k, (v, c) in enumerate(zip(versions, results, strict=True))
    ]
    for version in revised:
        events.emit(events.candidate(run.strategy, version, next_round))
    return {"versions": state["versions"] + revised, "round": next_round, "usage": usage}


def next_node(state: SelfRefineState, run: Run[RefineSettings]) -> str:
    settings = run.settings
    if state["round"] >= settings.rounds:
        return "select"
    # a round is a critique and a revision of every chain, each at its token cap
    round_cost = len(latest(state)) * (settings.critique_tokens + settings.max_tokens)
    if not run.budget.affords(round_cost):
        return "select"
    return "critique"


@builder
def create_self_refine(
    policy: Policy,
    prm: PRM | None = None,
    *,
    n: int = 1,
    chains: int | None = None,
    rounds: int = 2,
    critique_tokens: int = 256,
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
    """Self-refinement: `n` drafts (the chains; `chains` is another name), each critiqued and
    revised `rounds` times. Selection defaults to "weighted" with a verifier and "majority"
    without one. Every setting is described in docs/settings.md; the graph options as for
    `create_best_of_n`."""
    options = dict(locals())
    if options.pop("chains") is not None:  # another name for n
        if n != 1 and n != chains:
            raise SettingsError(f"chains={chains} and n={n} name the same setting: give one")
        options["n"] = chains
    scaffold = Scaffold(
        STRATEGY,
        SelfRefineState,
        RefineSettings,
        policy,
        prm,
        options,
        init=lambda settings: {"versions": [], "critiques": [], "round": 0},
        final=lambda state, run: state["versions"],
        supersteps=lambda settings: 3 * settings.rounds + 10,
        loop_setting="rounds",
    )
    scaffold.add_nodes(draft, score, critique, revise)
    scaffold.add_path("prepare", "draft", "score")
    scaffold.add_branch("score", next_node, ["critique", "select"])
    scaffold.add_path("critique", "revise", "score")
    return scaffold.compile()
