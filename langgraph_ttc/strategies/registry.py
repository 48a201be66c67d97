"""Every strategy by name: what the CLI, the evaluation harness, the servers and graphs/ read.

The routable strategies (`catalog.py`) and the compute-optimal router that routes to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc.strategies.catalog import ROUTABLE, StrategyInfo
from langgraph_ttc.strategies.compute_optimal import create_compute_optimal
from langgraph_ttc.strategies.settings import RouterSettings
from langgraph_ttc.types import PRM, Policy

STRATEGIES: dict[str, StrategyInfo] = {
    **ROUTABLE,
    # budget k: k x max_tokens generated tokens (RouterSettings.token_budget)
    "compute_optimal": StrategyInfo("compute_optimal", create_compute_optimal, RouterSettings),
}
STRATEGY_NAMES = tuple(STRATEGIES)

__all__ = ["STRATEGIES", "STRATEGY_NAMES", "StrategyInfo", "create_strategy", "strategy_info"]


def strategy_info(name: str) -> StrategyInfo:
    """The registry entry of strategy `name`; an unknown name raises ValueError listing them."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGY_NAMES}")
    return STRATEGIES[name]


def create_strategy(
    name: str, policy: Policy, prm: PRM | None, settings: Mapping[str, Any] | None = None
) -> CompiledStateGraph:
    """The graph `name` names, built with the `settings` that apply to it (others are ignored:
    `beam_width` means nothing to best-of-N; `n` is the samples of best-of-N, the beams of the
    step searches, the chains of self-refinement). Invalid settings raise ValueError."""
    return strategy_info(name).create(policy, prm, settings)
