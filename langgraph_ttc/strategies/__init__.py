"""Strategies: one module each, every builder returns a compiled LangGraph graph."""

from langgraph_ttc.errors import (
    EmptyProblemError,
    PolicyContractError,
    PolicyTimeoutError,
    SettingsError,
)
from langgraph_ttc.strategies.adaptive_majority import create_adaptive_majority
from langgraph_ttc.strategies.beam_search import create_beam_search
from langgraph_ttc.strategies.best_of_n import create_best_of_n
from langgraph_ttc.strategies.budget import Budget
from langgraph_ttc.strategies.compute_optimal import RoutingTable, create_compute_optimal
from langgraph_ttc.strategies.deepconf import create_deepconf
from langgraph_ttc.strategies.dvts import create_dvts
from langgraph_ttc.strategies.greedy import create_greedy
from langgraph_ttc.strategies.mcts import create_mcts
from langgraph_ttc.strategies.particle_filtering import create_particle_filtering
from langgraph_ttc.strategies.rebase import create_rebase
from langgraph_ttc.strategies.registry import (
    STRATEGIES,
    STRATEGY_NAMES,
    StrategyInfo,
    create_strategy,
    strategy_info,
)
from langgraph_ttc.strategies.self_refine import create_self_refine
from langgraph_ttc.strategies.settings import (
    AdaptiveSettings,
    BeamSearchSettings,
    DeepConfSettings,
    MCTSSettings,
    ParticleSettings,
    RebaseSettings,
    RefineSettings,
    RouterSettings,
    SearchSettings,
    SpeculativeSettings,
    StrategySettings,
)
from langgraph_ttc.strategies.speculative_rejection import create_speculative_rejection

__all__ = [
    "STRATEGIES",
    "STRATEGY_NAMES",
    "AdaptiveSettings",
    "BeamSearchSettings",
    "Budget",
    "DeepConfSettings",
    "EmptyProblemError",
    "MCTSSettings",
    "ParticleSettings",
    "PolicyContractError",
    "PolicyTimeoutError",
    "RebaseSettings",
    "RefineSettings",
    "RouterSettings",
    "RoutingTable",
    "SearchSettings",
    "SettingsError",
    "SpeculativeSettings",
    "StrategyInfo",
    "StrategySettings",
    "create_adaptive_majority",
    "create_beam_search",
    "create_best_of_n",
    "create_compute_optimal",
    "create_deepconf",
    "create_dvts",
    "create_greedy",
    "create_mcts",
    "create_particle_filtering",
    "create_rebase",
    "create_self_refine",
    "create_speculative_rejection",
    "create_strategy",
    "strategy_info",
]
