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
    from langgraph_ttc.strategies import create_strategy

    # the run's own selection does not matter: every mode is re-computed from the candidates
    return create_strategy(
        spec.strategy,
        policy,
        prm,
        n=spec.n,
        beam_width=spec.beam_width,
        max_iterations=settings.max_iterations,
        max_step_tokens=settings.max_step_tokens,
        rounds=settings.rounds,
        aggregation=settings.aggregation,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        seed=settings.seed,
    )
