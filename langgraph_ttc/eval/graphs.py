"""The strategy graph for each planned run, built with the evaluation's settings."""

from __future__ import annotations

from dataclasses import dataclass

from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc.eval.budgets import RunSpec
from langgraph_ttc.types import PRM, Policy


@dataclass(frozen=True)
class StrategySettings:
    """What every run of one evaluation shares (recorded in config.json)."""

    max_tokens: int = 256
    temperature: float = 0.8
    seed: int | None = 0
    aggregation: str = "last"
    max_iterations: int = 40
    max_step_tokens: int = 256
    rounds: int = 2  # self-refinement


def build_graph(
    spec: RunSpec, policy: Policy, prm: PRM | None, settings: StrategySettings
) -> CompiledStateGraph:
    """A compiled graph for `spec`; invalid settings raise ValueError before any run."""
    from langgraph_ttc.strategies import (
        create_beam_search,
        create_best_of_n,
        create_dvts,
        create_greedy,
        create_self_refine,
    )

    # the run's own selection does not matter: every mode is re-computed from the candidates
    selection = "weighted" if prm is not None else "majority"
    common = {
        "aggregation": settings.aggregation,
        "max_tokens": settings.max_tokens,
    }
    sampling = {**common, "temperature": settings.temperature, "seed": settings.seed}
    if spec.strategy == "greedy":
        return create_greedy(policy, prm, **common)
    if spec.strategy == "best_of_n":
        return create_best_of_n(policy, prm, n=spec.n, selection=selection, **sampling)
    if spec.strategy == "self_refine":
        return create_self_refine(
            policy, prm, chains=spec.n, rounds=settings.rounds, selection=selection, **sampling
        )
    if prm is None:
        raise ValueError(f"{spec.strategy} is guided by a verifier: choose a --prm")
    search = {
        "n": spec.n,
        "beam_width": spec.beam_width,
        "max_iterations": settings.max_iterations,
        "max_step_tokens": settings.max_step_tokens,
        "selection": selection,
        **sampling,
    }
    if spec.strategy == "beam_search":
        return create_beam_search(policy, prm, **search)
    if spec.strategy == "dvts":
        return create_dvts(policy, prm, **search)
    raise ValueError(f"unknown strategy {spec.strategy!r}")
