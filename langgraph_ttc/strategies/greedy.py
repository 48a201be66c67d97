"""Greedy decoding: one sample at temperature 0, the baseline every scaling curve is read against.

It is best-of-N with n=1 at temperature 0 (same graph, same output contract). With a verifier
the single candidate is still scored, so its score shows up in evaluations; without one,
nothing ranks candidates and the selection is trivially the only sample.
"""

from __future__ import annotations

from collections.abc import Sequence

from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import All, Checkpointer

from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.selection import DEFAULT_STEP_DELIMITER
from langgraph_ttc.strategies.best_of_n import best_of_n_graph
from langgraph_ttc.strategies.options import builder
from langgraph_ttc.strategies.settings import DEFAULT_SYSTEM_PROMPT, Aggregation, Selection
from langgraph_ttc.types import PRM, Policy

STRATEGY = "greedy"
# what greedy decoding is: a build or a run that changes these is an error
FIXED = {"n": 1, "temperature": 0.0, "seed": None}


@builder
def create_greedy(
    policy: Policy,
    prm: PRM | None = None,
    *,
    top_p: float = 1.0,
    max_tokens: int = 1024,
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
    """A greedy-decoding graph over `policy`: one sample at temperature 0 (no `n`,
    `temperature` or `seed`: greedy decoding fixes them, at build time and per run). The
    settings are `create_best_of_n`'s; `selection` None means "naive" with a `prm` (the one
    sample, scored) and "majority" without."""
    options = {**locals(), **FIXED}
    if selection is None:
        options["selection"] = "naive" if prm is not None else "majority"
    return best_of_n_graph(STRATEGY, policy, prm, options, fixed=tuple(FIXED))
