"""Evaluation harness: datasets, budget planning, the concurrent runner, metrics, reports."""

from langgraph_ttc.eval.budgets import RunSpec, parse_budgets, plan_runs, subsample
from langgraph_ttc.eval.datasets import DatasetError, Fields, Problem, load_problems
from langgraph_ttc.eval.graphs import build_graph
from langgraph_ttc.eval.metrics import grade_candidates, summarize
from langgraph_ttc.eval.results import ResultsLog
from langgraph_ttc.eval.runner import WorkItem, build_rows, pending_work, run_eval

__all__ = [
    "DatasetError",
    "Fields",
    "Problem",
    "ResultsLog",
    "RunSpec",
    "WorkItem",
    "build_graph",
    "build_rows",
    "grade_candidates",
    "load_problems",
    "parse_budgets",
    "pending_work",
    "plan_runs",
    "run_eval",
    "subsample",
    "summarize",
]
