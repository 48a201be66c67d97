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
    create_particle_filtering,
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

__all__ = [
    "MAX_ANSWER_CHARS",
    "PRM",
    "Candidate",
    "Completion",
    "ConfidenceStop",
    "GenerationRequest",
    "Policy",
    "aggregate",
    "answers_equivalent",
    "create_adaptive_majority",
    "create_beam_search",
    "create_best_of_n",
    "create_compute_optimal",
    "create_deepconf",
    "create_dvts",
    "create_greedy",
    "create_particle_filtering",
    "create_self_refine",
    "create_speculative_rejection",
    "extract_answer",
    "extract_boxed",
    "select",
    "split_steps",
    "strict_answer",
]
__version__ = "0.1.0"
