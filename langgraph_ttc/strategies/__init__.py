"""Strategies: one module each, every builder returns a compiled LangGraph graph."""

from langgraph_ttc.strategies.best_of_n import create_best_of_n

__all__ = ["create_best_of_n"]
