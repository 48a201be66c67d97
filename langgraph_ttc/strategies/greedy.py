"""Greedy decoding: one sample at temperature 0, the baseline every scaling curve is read against.

It is best-of-N with n=1 at temperature 0 (same graph, same output contract). With a verifier
the single candidate is still scored, so its score shows up in evaluations; without one,
nothing ranks candidates and the selection is trivially the only sample.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc.strategies.best_of_n import create_best_of_n
from langgraph_ttc.types import PRM, Policy

STRATEGY = "greedy"


def create_greedy(policy: Policy, prm: PRM | None = None, **options: Any) -> CompiledStateGraph:
    """A greedy-decoding graph (one sample, temperature 0) over `policy`.

    `options` as for `create_best_of_n`, except `n`, `temperature` and `seed`, which greedy
    decoding fixes, at build time and per run.
    """
    fixed = {"n": 1, "temperature": 0.0, "seed": None}
    clash = sorted(set(fixed) & set(options))
    if clash:
        raise ValueError(f"greedy decoding fixes {', '.join(clash)}; use create_best_of_n")
    selection = "naive" if prm is not None else "majority"
    return create_best_of_n(
        policy,
        prm,
        strategy=STRATEGY,
        fixed=tuple(fixed),
        **fixed,
        **{"selection": selection, **options},
    )
