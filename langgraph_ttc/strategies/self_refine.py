"""Self-refinement: draft, then critique and revise for a number of rounds (sequential
revisions, after Snell et al. 2024), optionally in parallel chains.

    prepare -> draft -> score --(rounds left)--> critique -> revise -> score
                          | otherwise
                          v
                        select

Every version of every chain is kept as a candidate. With a verifier, its step scores are shown
to the critic (the weakest step is named) and the final choice is by score; without one, by
majority vote across all versions. Each phase is one policy call covering every chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Overwrite

from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.events import emit
from langgraph_ttc.selection import aggregate, split_steps
from langgraph_ttc.strategies.common import (
    SamplingSettings,
    chat_messages,
    finish,
    make_candidate,
    resolve_problem,
    score_solutions,
)
from langgraph_ttc.types import (
    PRM,
    GenerationRequest,
    Policy,
    StrategyInput,
    StrategyOutput,
    StrategyState,
)

STRATEGY = "self_refine"

CRITIC_PROMPT = (
    "You check math solutions. Read the solution step by step, recompute every calculation, "
    "and list the mistakes you find. If every step is right, say that it is correct."
)
REVISE_PROMPT = (
    "Solve the math problem step by step, using the feedback on an earlier attempt. Separate "
    "the steps with a blank line. End with the final answer written as \\boxed{answer}."
)


@dataclass(frozen=True)
class RefineSettings(SamplingSettings):
    """`n` is the number of parallel chains (per-run override: "chains" or "n")."""

    aliases: ClassVar[dict[str, str]] = {"chains": "n"}
    rounds: int = 2
    critique_tokens: int = 256

    def validate_refine(self, *, has_prm: bool) -> RefineSettings:
        self.validate(has_prm=has_prm)
        if not isinstance(self.rounds, int) or self.rounds < 0:
            raise ValueError(f"rounds must be an integer >= 0, got {self.rounds!r}")
        if self.critique_tokens < 1:
            raise ValueError(f"critique_tokens must be >= 1, got {self.critique_tokens}")
        return self


class SelfRefineState(StrategyState, total=False):
    versions: list[dict[str, Any]]  # every version: chain, round, text, tokens, scores
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


def create_self_refine(
    policy: Policy,
    prm: PRM | None = None,
    *,
    rounds: int = 2,
    chains: int = 1,
    selection: str | None = None,
    aggregation: str = "last",
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 1024,
    critique_tokens: int = 256,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answer_extractor: AnswerExtractor = extract_answer,
    name: str = STRATEGY,
) -> CompiledStateGraph:
    """Build a self-refinement graph: `chains` drafts, each critiqued and revised `rounds`
    times. Selection defaults to "weighted" with a verifier and "majority" without one."""
    defaults = RefineSettings(
        n=chains,
        rounds=rounds,
        selection=selection or ("weighted" if prm is not None else "majority"),
        aggregation=aggregation,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        critique_tokens=critique_tokens,
        seed=seed,
        step_delimiter=step_delimiter,
        **({"system_prompt": system_prompt} if system_prompt is not None else {}),
    ).validate_refine(has_prm=prm is not None)

    def settings_for(config: RunnableConfig) -> RefineSettings:
        return defaults.with_overrides(config).validate_refine(has_prm=prm is not None)

    def seed_for(settings: RefineSettings, phase: int, chain: int) -> int | None:
        return None if settings.seed is None else settings.seed + 1000 * phase + chain

    async def prepare(state: SelfRefineState, config: RunnableConfig) -> dict[str, Any]:
        settings_for(config)
        return {
            "problem": resolve_problem(state),
            "versions": [],
            "critiques": [],
            "round": 0,
            "usage": Overwrite({}),
        }

    async def draft(state: SelfRefineState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        request = GenerationRequest(
            messages=chat_messages(state["problem"], settings.system_prompt),
            n=settings.n,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=seed_for(settings, 0, 0),
        )
        (drafts,) = await policy.generate([request])
        versions = [
            _version(chain, chain, 0, c.text, c.num_tokens, c.finish_reason)
            for chain, c in enumerate(drafts)
        ]
        _emit_versions(versions)
        return {
            "versions": versions,
            "usage": {"policy_tokens": _tokens(versions), "policy_calls": 1},
        }

    async def score(state: SelfRefineState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        versions = list(state["versions"])
        latest = [i for i, v in enumerate(versions) if v["round"] == state["round"]]
        if prm is None:
            return {}
        steps = [split_steps(versions[i]["text"], settings.step_delimiter) for i in latest]
        scores, errors, calls = await score_solutions(
            prm, state["problem"], steps, settings.prm_timeout
        )
        for i, row, error in zip(latest, scores, errors, strict=True):
            versions[i] = {**versions[i], "step_scores": row, "error": error}
            emit(
                {
                    "type": "score",
                    "strategy": STRATEGY,
                    "iteration": state["round"],
                    "id": versions[i]["id"],
                    "step_scores": row,
                    "score": aggregate(row, settings.aggregation),
                }
            )
        return {
            "versions": versions,
            "usage": {"prm_calls": calls, "errors": [e for e in errors if e]},
        }

    async def critique(state: SelfRefineState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        latest = [v for v in state["versions"] if v["round"] == state["round"]]
        requests = [
            GenerationRequest(
                messages=critique_messages(
                    state["problem"], v["text"], verifier_feedback(v["step_scores"])
                ),
                max_tokens=settings.critique_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
                seed=seed_for(settings, 2 * state["round"] + 1, v["chain"]),
            )
            for v in latest
        ]
        results = await policy.generate(requests)
        critiques = [completions[0].text for completions in results]
        tokens = sum(completions[0].num_tokens for completions in results)
        for v, text in zip(latest, critiques, strict=True):
            emit(
                {
                    "type": "critique",
                    "strategy": STRATEGY,
                    "iteration": state["round"],
                    "id": v["id"],
                    "text": text,
                }
            )
        return {"critiques": critiques, "usage": {"policy_tokens": tokens, "policy_calls": 1}}

    async def revise(state: SelfRefineState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        latest = [v for v in state["versions"] if v["round"] == state["round"]]
        next_round = state["round"] + 1
        requests = [
            GenerationRequest(
                messages=revise_messages(state["problem"], v["text"], critique),
                max_tokens=settings.max_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
                seed=seed_for(settings, 2 * next_round, v["chain"]),
            )
            for v, critique in zip(latest, state["critiques"], strict=True)
        ]
        results = await policy.generate(requests)
        first_id = len(state["versions"])
        revised = [
            _version(
                first_id + k,
                v["chain"],
                next_round,
                c[0].text,
                c[0].num_tokens,
                c[0].finish_reason,
                critique=critique,
            )
            for k, (v, c, critique) in enumerate(
                zip(latest, results, state["critiques"], strict=True)
            )
        ]
        _emit_versions(revised)
        return {
            "versions": state["versions"] + revised,
            "round": next_round,
            "usage": {"policy_tokens": _tokens(revised), "policy_calls": 1},
        }

    def should_refine(state: SelfRefineState, config: RunnableConfig) -> str:
        return "critique" if state["round"] < settings_for(config).rounds else "select"

    async def select_answer(state: SelfRefineState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        candidates = []
        for v in state["versions"]:
            candidate = make_candidate(
                v["id"],
                v["text"],
                num_tokens=v["num_tokens"],
                finish_reason=v["finish_reason"],
                step_scores=v["step_scores"],
                aggregation=settings.aggregation,
                extractor=answer_extractor,
                error=v.get("error"),
            )
            candidates.append({**candidate, "chain": v["chain"], "round": v["round"]})
        return finish(STRATEGY, state, candidates, settings.selection)  # type: ignore[arg-type]

    builder = StateGraph(SelfRefineState, input_schema=StrategyInput, output_schema=StrategyOutput)
    builder.add_node("prepare", prepare)
    builder.add_node("draft", draft)
    builder.add_node("score", score)
    builder.add_node("critique", critique)
    builder.add_node("revise", revise)
    builder.add_node("select", select_answer)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "draft")
    builder.add_edge("draft", "score")
    builder.add_conditional_edges("score", should_refine, ["critique", "select"])
    builder.add_edge("critique", "revise")
    builder.add_edge("revise", "score")
    builder.add_edge("select", END)
    return builder.compile(name=name).with_config(recursion_limit=3 * rounds + 10)


def _version(
    version_id: int,
    chain: int,
    round_: int,
    text: str,
    num_tokens: int,
    finish_reason: str,
    critique: str | None = None,
) -> dict[str, Any]:
    return {
        "id": version_id,
        "chain": chain,
        "round": round_,
        "text": text,
        "num_tokens": num_tokens,
        "finish_reason": finish_reason,
        "step_scores": [],
        "critique": critique,
        "error": None,
    }


def _emit_versions(versions: list[dict[str, Any]]) -> None:
    for v in versions:
        emit(
            {
                "type": "candidate",
                "strategy": STRATEGY,
                "iteration": v["round"],
                "id": v["id"],
                "chain": v["chain"],
                "text": v["text"],
                "num_tokens": v["num_tokens"],
                "finished": True,
            }
        )


def _tokens(versions: list[dict[str, Any]]) -> int:
    return sum(v["num_tokens"] for v in versions)
