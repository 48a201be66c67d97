"""The strategies by name: what the CLI, the evaluation harness and graphs/ read.

Each entry names its builder, its settings model (so callers pass only the settings that
apply), whether it needs a verifier and a policy that continues a partial answer, and how an
evaluation reads a smaller budget from one run ("prefix": the first k samples; "subtrees": the
first k / beam_width subtrees; "separate": one run per budget).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc.strategies.adaptive_majority import create_adaptive_majority
from langgraph_ttc.strategies.beam_search import create_beam_search
from langgraph_ttc.strategies.best_of_n import create_best_of_n
from langgraph_ttc.strategies.compute_optimal import create_compute_optimal
from langgraph_ttc.strategies.dvts import create_dvts
from langgraph_ttc.strategies.greedy import create_greedy
from langgraph_ttc.strategies.particle_filtering import create_particle_filtering
from langgraph_ttc.strategies.self_refine import create_self_refine
from langgraph_ttc.strategies.settings import (
    AdaptiveSettings,
    ParticleSettings,
    RefineSettings,
    RouterSettings,
    SearchSettings,
    StrategySettings,
)
from langgraph_ttc.types import PRM, Policy


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    build: Callable[..., CompiledStateGraph]
    settings: type[StrategySettings]
    needs_prm: bool = False
    steps: bool = False  # grows solutions step by step (the policy must continue a prefix)
    budgets: Literal["prefix", "subtrees", "separate"] = "separate"
    fixed: tuple[str, ...] = ()  # settings the strategy sets itself


STRATEGIES: dict[str, StrategyInfo] = {
    info.name: info
    for info in (
        StrategyInfo(
            "greedy",
            create_greedy,
            StrategySettings,
            budgets="prefix",
            fixed=("n", "temperature", "seed", "selection"),
        ),
        StrategyInfo("best_of_n", create_best_of_n, StrategySettings, budgets="prefix"),
        StrategyInfo("beam_search", create_beam_search, SearchSettings, needs_prm=True, steps=True),
        StrategyInfo(
            "dvts", create_dvts, SearchSettings, needs_prm=True, steps=True, budgets="subtrees"
        ),
        StrategyInfo("self_refine", create_self_refine, RefineSettings),
        StrategyInfo("adaptive_majority", create_adaptive_majority, AdaptiveSettings),
        StrategyInfo(
            "particle_filtering",
            create_particle_filtering,
            ParticleSettings,
            needs_prm=True,
            steps=True,
        ),
        # budget k: k x max_tokens generated tokens (RouterSettings.token_budget)
        StrategyInfo("compute_optimal", create_compute_optimal, RouterSettings),
    )
}
STRATEGY_NAMES = tuple(STRATEGIES)


def strategy_info(name: str) -> StrategyInfo:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGY_NAMES}")
    return STRATEGIES[name]


def create_strategy(
    name: str, policy: Policy, prm: PRM | None, settings: Mapping[str, Any] | None = None
) -> CompiledStateGraph:
    """The graph `name` names, built with the `settings` that apply to it (others are ignored:
    `beam_width` means nothing to best-of-N; `n` is the samples of best-of-N, the beams of the
    step searches, the chains of self-refinement). Invalid settings raise ValueError."""
    info = strategy_info(name)
    if info.needs_prm and prm is None:
        raise ValueError(f"{name} needs a prm to guide the search: choose a verifier (--prm)")
    fields = set(info.settings.model_fields) - set(info.fixed)
    applicable = {k: v for k, v in (settings or {}).items() if k in fields and v is not None}
    return info.build(policy, prm, **applicable)
