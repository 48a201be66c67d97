"""The strategy graph for each planned run, built with the evaluation's settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc.eval.budgets import RunSpec
from langgraph_ttc.strategies import create_strategy
from langgraph_ttc.types import PRM, Policy


def build_graph(
    spec: RunSpec, policy: Policy, prm: PRM | None, settings: Mapping[str, Any]
) -> CompiledStateGraph:
    """A compiled graph for `spec` with the evaluation's strategy `settings` (recorded in
    config.json; unset ones keep each strategy's default). Invalid settings raise ValueError
    before any run. The run's own selection does not matter: every mode is re-computed from
    the candidates."""
    return create_strategy(
        spec.strategy, policy, prm, {**settings, "n": spec.n, "beam_width": spec.beam_width}
    )
