"""Verifiers: anything with `async score(problem, solutions) -> list[list[float]]`.

The vLLM-backed ones (`VLLMPoolingPRM`, `TokenProbPRM`, `LearnedVerifier`) import vLLM only when
they start.
"""

from langgraph_ttc.types import PRM
from langgraph_ttc.verifiers.arithmetic import ArithmeticVerifier, check_equalities, evaluate
from langgraph_ttc.verifiers.combinators import EnsemblePRM, running_aggregate
from langgraph_ttc.verifiers.engine import ContextLengthError, PRMError, VerifierEngineDiedError
from langgraph_ttc.verifiers.judge import LLMJudgePRM
from langgraph_ttc.verifiers.learned import LearnedVerifier
from langgraph_ttc.verifiers.pooling import VLLMPoolingPRM
from langgraph_ttc.verifiers.registry import build_prm, close_prm, start_prm
from langgraph_ttc.verifiers.token_prob import FormatError, TokenProbPRM
from langgraph_ttc.verifiers.tool import create_prm_graph, prm_node, prm_tool, score_solution

__all__ = [
    "PRM",
    "ArithmeticVerifier",
    "ContextLengthError",
    "EnsemblePRM",
    "FormatError",
    "LLMJudgePRM",
    "LearnedVerifier",
    "PRMError",
    "TokenProbPRM",
    "VLLMPoolingPRM",
    "VerifierEngineDiedError",
    "build_prm",
    "check_equalities",
    "close_prm",
    "create_prm_graph",
    "evaluate",
    "prm_node",
    "prm_tool",
    "running_aggregate",
    "score_solution",
    "start_prm",
]
