"""Greedy decoding: one sample at temperature 0, the baseline every scaling curve is read against.

It is best-of-N with n=1 at temperature 0 (same graph, same output contract). With a verifier
the single candidate is still scored, so its score shows up in evaluations; without one,
nothing ranks candidates and the selection is trivially the only sample.
"""

from __future__ import annotations

from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.strategies.best_of_n import create_best_of_n
from langgraph_ttc.types import PRM, Policy

STRATEGY = "greedy"


def create_greedy(
    policy: Policy,
    prm: PRM | None = None,
    *,
    aggregation: str = "last",
    max_tokens: int = 1024,
    system_prompt: str | None = None,
    step_delimiter: str = "\n\n",
    answer_extractor: AnswerExtractor = extract_answer,
    name: str = STRATEGY,
) -> CompiledStateGraph:
    """Build a greedy-decoding graph (one sample, temperature 0) over `policy`.

    Per-run overrides of `n` or `temperature` would turn it into sampling; they are rejected
    by the same validation as best-of-N (temperature 0 with n > 1).
    """
    return create_best_of_n(
        policy,
        prm,
        n=1,
        temperature=0.0,
        selection="naive" if prm is not None else "majority",
        aggregation=aggregation,
        max_tokens=max_tokens,
        seed=None,  # nothing to seed at temperature 0
        system_prompt=system_prompt,
        step_delimiter=step_delimiter,
        answer_extractor=answer_extractor,
        name=name,
    )
