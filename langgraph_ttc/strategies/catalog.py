"""The strategies a router can route to (every strategy but the router itself), by name.

Each entry names its builder, its settings model (so callers pass only the settings that
apply), whether it needs a verifier and a policy that continues a partial answer, and how an
evaluation reads a smaller budget from one run ("prefix": the first k samples; "subtrees": the
first k / beam_width subtrees; "separate": one run per budget). The registry
(`registry.py`) adds the compute-optimal router, which routes to these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc.strategies.adaptive_majority import create_adaptive_majority
from langgraph_ttc.strategies.beam_search import create_beam_search
from langgraph_ttc.strategies.best_of_n import create_best_of_n
from langgraph_ttc.strategies.deepconf import create_deepconf
from langgraph_ttc.strategies.dvts import create_dvts
from langgraph_ttc.strategies.greedy import FIXED as GREEDY_FIXED
from langgraph_ttc.strategies.greedy import create_greedy
from langgraph_ttc.strategies.mcts import create_mcts
from langgraph_ttc.strategies.particle_filtering import create_particle_filtering
from langgraph_ttc.strategies.rebase import create_rebase
from langgraph_ttc.strategies.self_refine import create_self_refine
from langgraph_ttc.strategies.settings import (
    AdaptiveSettings,
    BeamSearchSettings,
    DeepConfSettings,
    MCTSSettings,
    ParticleSettings,
    RebaseSettings,
    RefineSettings,
    SearchSettings,
    SpeculativeSettings,
    StrategySettings,
    prm_needed,
)
from langgraph_ttc.strategies.speculative_rejection import create_speculative_rejection
from langgraph_ttc.types import PRM, Policy


@dataclass(frozen=True)
class StrategyInfo:
    """A strategy by name: its builder, settings model, needs, and how budgets read a run."""

    name: str
    build: Callable[..., CompiledStateGraph]
    settings: type[StrategySettings]
    needs_prm: bool = False
    steps: bool = False  # grows solutions step by step (the policy must continue a prefix)
    budgets: Literal["prefix", "subtrees", "separate"] = "separate"
    fixed: tuple[str, ...] = ()  # settings the strategy sets itself

    def settings_for(self, settings: Mapping[str, Any] | None) -> dict[str, Any]:
        """The `settings` that apply to this strategy (others are ignored: `beam_width` means
        nothing to best-of-N); None values are left to the strategy's defaults."""
        fields = set(self.settings.model_fields) - set(self.fixed)
        return {k: v for k, v in (settings or {}).items() if k in fields and v is not None}

    def create(
        self, policy: Policy, prm: PRM | None, settings: Mapping[str, Any] | None = None
    ) -> CompiledStateGraph:
        """This strategy's graph, built with the `settings` that apply to it. Invalid settings
        raise `SettingsError`; a missing verifier a `ValueError`."""
        if self.needs_prm and prm is None:
            selection = (settings or {}).get("selection")
            raise ValueError(f"{prm_needed(self.name, selection)}: choose a verifier (--prm)")
        return self.build(policy, prm, **self.settings_for(settings))


ROUTABLE: dict[str, StrategyInfo] = {
    info.name: info
    for info in (
        StrategyInfo(
            "greedy",
            create_greedy,
            StrategySettings,
            budgets="prefix",
            fixed=(*GREEDY_FIXED, "selection"),
        ),
        StrategyInfo("best_of_n", create_best_of_n, StrategySettings, budgets="prefix"),
        StrategyInfo(
            "beam_search", create_beam_search, BeamSearchSettings, needs_prm=True, steps=True
        ),
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
        StrategyInfo("mcts", create_mcts, MCTSSettings, needs_prm=True, steps=True),
        StrategyInfo("rebase", create_rebase, RebaseSettings, needs_prm=True, steps=True),
        StrategyInfo("deepconf", create_deepconf, DeepConfSettings),
        StrategyInfo(
            "speculative_rejection",
            create_speculative_rejection,
            SpeculativeSettings,
            needs_prm=True,
            steps=True,
        ),
    )
}
