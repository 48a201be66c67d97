"""langgraph-ttc: test-time compute strategies as composable LangGraph graphs on vLLM."""

from langgraph_ttc.answers import (
    MAX_ANSWER_CHARS,
    answers_equivalent,
    extract_answer,
    extract_boxed,
    strict_answer,
)
from langgraph_ttc.selection import aggregate, select, split_steps
from langgraph_ttc.strategies import (
    create_adaptive_majority,
    create_beam_search,
    create_best_of_n,
    create_compute_optimal,
    create_deepconf,
    create_dvts,
    create_greedy,
    create_mcts,
    create_particle_filtering,
    create_rebase,
    create_self_refine,
    create_speculative_rejection,
)
from langgraph_ttc.types import (
    PRM,
    Candidate,
    Completion,
    ConfidenceStop,
    GenerationRequest,
    Policy,
)

_AGENTS = ("ChatTTC", "TTCMiddleware", "strategy_tool")


def __getattr__(name: str) -> object:
    """The agent entry points load on first use: they need the optional `langchain`."""
    if name in _AGENTS:
        # optional dependency: langchain (the `agents` extra)
        from langgraph_ttc import agents

        return getattr(agents, name)
    raise AttributeError(f"module 'langgraph_ttc' has no attribute {name!r}")


__all__ = [
    "MAX_ANSWER_CHARS",
    "PRM",
    "Candidate",
    "ChatTTC",
    "Completion",
    "ConfidenceStop",
    "GenerationRequest",
    "Policy",
    "TTCMiddleware",
    "aggregate",
    "answers_equivalent",
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
    "extract_answer",
    "extract_boxed",
    "select",
    "split_steps",
    "strategy_tool",
    "strict_answer",
]
__version__ = "0.1.0"
