"""Verifiers: anything with `async score(problem, solutions) -> list[list[float]]`."""

from langgraph_ttc.types import PRM
from langgraph_ttc.verifiers.arithmetic import ArithmeticVerifier, check_equalities, evaluate

__all__ = ["PRM", "ArithmeticVerifier", "check_equalities", "evaluate"]
