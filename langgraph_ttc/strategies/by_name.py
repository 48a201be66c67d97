"""Build any strategy graph by name, from one flat set of settings (for the CLI and eval)."""

from __future__ import annotations

from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc.strategies.beam_search import create_beam_search
from langgraph_ttc.strategies.best_of_n import create_best_of_n
from langgraph_ttc.strategies.dvts import create_dvts
from langgraph_ttc.strategies.greedy import create_greedy
from langgraph_ttc.strategies.self_refine import create_self_refine
from langgraph_ttc.types import PRM, Policy

STRATEGY_NAMES = ("greedy", "best_of_n", "beam_search", "dvts", "self_refine")


def create_strategy(
    name: str,
    policy: Policy,
    prm: PRM | None,
    *,
    n: int = 8,
    beam_width: int = 2,
    max_iterations: int = 40,
    max_step_tokens: int = 256,
    lookahead: int = 0,
    rounds: int = 2,
    selection: str | None = None,
    aggregation: str = "last",
    temperature: float = 0.8,
    max_tokens: int = 1024,
    seed: int | None = None,
) -> CompiledStateGraph:
    """The graph `name` names; each strategy takes the settings that apply to it (`n` is the
    samples of best-of-N, the beams of the step searches, the chains of self-refinement).
    Invalid settings raise ValueError before any run."""
    selection = selection or ("weighted" if prm is not None else "majority")
    common: dict[str, Any] = {"aggregation": aggregation, "max_tokens": max_tokens}
    sampling = {**common, "selection": selection, "temperature": temperature, "seed": seed}
    if name == "greedy":
        return create_greedy(policy, prm, **common)
    if name == "best_of_n":
        return create_best_of_n(policy, prm, n=n, **sampling)
    if name == "self_refine":
        return create_self_refine(policy, prm, chains=n, rounds=rounds, **sampling)
    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGY_NAMES}")
    if prm is None:
        raise ValueError(f"{name} needs a prm to guide the search: choose a verifier (--prm)")
    search = {
        "n": n,
        "beam_width": beam_width,
        "max_iterations": max_iterations,
        "max_step_tokens": max_step_tokens,
        "lookahead": lookahead,
        **sampling,
    }
    if name == "beam_search":
        return create_beam_search(policy, prm, **search)
    return create_dvts(policy, prm, **search)
