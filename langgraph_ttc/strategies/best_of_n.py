"""Best-of-N: sample N full solutions in one request, score their steps, select one.

    prepare -> generate -> score -> select

Naive, weighted and majority selection all read the same samples (REFERENCE.md section 2).
"""

from __future__ import annotations

from typing import Any

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

STRATEGY = "best_of_n"


class BestOfNState(StrategyState, total=False):
    samples: list[dict[str, Any]]  # raw completions: text, num_tokens, finish_reason
    step_scores: list[list[float]]
    score_errors: list[str | None]


def create_best_of_n(
    policy: Policy,
    prm: PRM | None = None,
    *,
    n: int = 8,
    selection: str = "weighted",
    aggregation: str = "last",
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 1024,
    seed: int | None = None,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answer_extractor: AnswerExtractor = extract_answer,
    name: str = STRATEGY,
) -> CompiledStateGraph:
    """Build a best-of-N graph over `policy`, ranked by `prm` (optional for majority voting).

    Per-run overrides: `config={"configurable": {"n": 4, "seed": 1, "selection": ...}}`.
    """
    defaults = SamplingSettings(
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        seed=seed,
        selection=selection,
        aggregation=aggregation,
        step_delimiter=step_delimiter,
        **({"system_prompt": system_prompt} if system_prompt is not None else {}),
    ).validate(has_prm=prm is not None)

    def settings_for(config: RunnableConfig) -> SamplingSettings:
        return defaults.with_overrides(config).validate(has_prm=prm is not None)

    async def prepare(state: BestOfNState, config: RunnableConfig) -> dict[str, Any]:
        settings_for(config)  # fail before any generation on bad overrides
        return {"problem": resolve_problem(state), "usage": Overwrite({})}

    async def generate(state: BestOfNState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        request = GenerationRequest(
            messages=chat_messages(state["problem"], settings.system_prompt),
            n=settings.n,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=settings.seed,
        )
        (completions,) = await policy.generate([request])
        samples = []
        for i, completion in enumerate(completions):
            samples.append(
                {
                    "text": completion.text,
                    "num_tokens": completion.num_tokens,
                    "finish_reason": completion.finish_reason,
                }
            )
            emit(
                {
                    "type": "candidate",
                    "strategy": STRATEGY,
                    "id": i,
                    "text": completion.text,
                    "num_tokens": completion.num_tokens,
                    "finished": True,
                }
            )
        tokens = sum(s["num_tokens"] for s in samples)
        return {"samples": samples, "usage": {"policy_tokens": tokens, "policy_calls": 1}}

    async def score(state: BestOfNState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        steps = [split_steps(s["text"], settings.step_delimiter) for s in state["samples"]]
        if prm is None:
            return {"step_scores": [[] for _ in steps], "score_errors": [None] * len(steps)}
        scores, errors, calls = await score_solutions(
            prm, state["problem"], steps, settings.prm_timeout
        )
        for i, row in enumerate(scores):
            emit(
                {
                    "type": "score",
                    "strategy": STRATEGY,
                    "id": i,
                    "step_scores": row,
                    "score": aggregate(row, settings.aggregation),
                }
            )
        usage = {
            "prm_calls": calls,
            "prm_steps": sum(map(len, steps)),
            "errors": [e for e in errors if e],
        }
        return {"step_scores": scores, "score_errors": errors, "usage": usage}

    async def select_answer(state: BestOfNState, config: RunnableConfig) -> dict[str, Any]:
        settings = settings_for(config)
        candidates = [
            make_candidate(
                i,
                sample["text"],
                num_tokens=sample["num_tokens"],
                finish_reason=sample["finish_reason"],
                step_scores=state["step_scores"][i],
                aggregation=settings.aggregation,
                extractor=answer_extractor,
                error=state["score_errors"][i],
            )
            for i, sample in enumerate(state["samples"])
        ]
        return finish(STRATEGY, state, candidates, settings.selection)

    builder = StateGraph(BestOfNState, input_schema=StrategyInput, output_schema=StrategyOutput)
    builder.add_node("prepare", prepare)
    builder.add_node("generate", generate)
    builder.add_node("score", score)
    builder.add_node("select", select_answer)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "generate")
    builder.add_edge("generate", "score")
    builder.add_edge("score", "select")
    builder.add_edge("select", END)
    return builder.compile(name=name)
