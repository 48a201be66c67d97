"""langgraph-ttc: test-time compute strategies as composable LangGraph graphs on vLLM."""

from langgraph_ttc.answers import answers_equivalent, extract_answer, extract_boxed
from langgraph_ttc.selection import aggregate, select, split_steps
from langgraph_ttc.strategies import (
    create_beam_search,
    create_best_of_n,
    create_dvts,
    create_greedy,
    create_self_refine,
)
from langgraph_ttc.types import PRM, Candidate, Completion, GenerationRequest, Policy

__all__ = [
    "PRM",
    "Candidate",
    "Completion",
    "GenerationRequest",
    "Policy",
    "aggregate",
    "answers_equivalent",
    "create_beam_search",
    "create_best_of_n",
    "create_dvts",
    "create_greedy",
    "create_self_refine",
    "extract_answer",
    "extract_boxed",
    "select",
    "split_steps",
]
__version__ = "0.1.0"
