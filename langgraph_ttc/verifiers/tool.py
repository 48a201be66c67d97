"""A PRM as a LangChain tool, a LangGraph node, and a small standalone graph.

Input: the problem and a candidate solution as text, split into steps with the step delimiter
(`langgraph_ttc.selection.split_steps`, as the strategies do). Output: the step scores and their
aggregate (`langgraph_ttc.selection.aggregate`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypedDict

from langchain_core.tools import StructuredTool
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel, Field

from langgraph_ttc.selection import (
    AGGREGATIONS,
    DEFAULT_STEP_DELIMITER,
    aggregate,
    split_steps,
    validate_choice,
)
from langgraph_ttc.types import PRM

TOOL_DESCRIPTION = (
    "Score a candidate solution to a math problem step by step with a process reward model. "
    "Steps are separated by blank lines. Returns one score in [0, 1] per step (higher means "
    "more likely correct so far) and an aggregate score for the whole solution."
)


async def score_solution(
    prm: PRM,
    problem: str,
    solution: str,
    *,
    delimiter: str = DEFAULT_STEP_DELIMITER,
    aggregation: str = "last",
) -> dict[str, Any]:
    """{"steps", "step_scores", "score", "aggregation"} for one solution text."""
    validate_choice("aggregation", aggregation, AGGREGATIONS)
    if not problem.strip():
        raise ValueError("empty problem: nothing to score the solution against")
    steps = split_steps(solution, delimiter)
    scores = (await prm.score(problem, [steps]))[0] if steps else []
    if len(scores) != len(steps):
        raise ValueError(f"the PRM returned {len(scores)} scores for {len(steps)} steps")
    step_scores = [float(s) for s in scores]
    return {
        "steps": steps,
        "step_scores": step_scores,
        "score": aggregate(step_scores, aggregation),
        "aggregation": aggregation,
    }


class ScoreSolutionInput(BaseModel):
    problem: str = Field(description="the problem statement")
    solution: str = Field(description="the candidate solution, steps separated by blank lines")


def prm_tool(
    prm: PRM,
    *,
    name: str = "score_solution",
    description: str = TOOL_DESCRIPTION,
    delimiter: str = DEFAULT_STEP_DELIMITER,
    aggregation: str = "last",
) -> StructuredTool:
    """The PRM as an async LangChain tool (`await tool.ainvoke({"problem", "solution"})`)."""
    validate_choice("aggregation", aggregation, AGGREGATIONS)

    async def run(problem: str, solution: str) -> dict[str, Any]:
        return await score_solution(
            prm, problem, solution, delimiter=delimiter, aggregation=aggregation
        )

    return StructuredTool.from_function(
        coroutine=run, name=name, description=description, args_schema=ScoreSolutionInput
    )


class PRMInput(TypedDict, total=False):
    problem: str
    solution: str


class PRMOutput(TypedDict, total=False):
    step_scores: list[float]
    score: float


def prm_node(
    prm: PRM, *, delimiter: str = DEFAULT_STEP_DELIMITER, aggregation: str = "last"
) -> Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]:
    """A LangGraph node: reads `problem` and `solution`, writes `step_scores` and `score`."""
    validate_choice("aggregation", aggregation, AGGREGATIONS)

    async def node(state: Mapping[str, Any]) -> dict[str, Any]:
        result = await score_solution(
            prm,
            state.get("problem") or "",
            state.get("solution") or "",
            delimiter=delimiter,
            aggregation=aggregation,
        )
        return {"step_scores": result["step_scores"], "score": result["score"]}

    return node


def create_prm_graph(
    prm: PRM, *, delimiter: str = DEFAULT_STEP_DELIMITER, aggregation: str = "last"
) -> Any:
    """A compiled one-node graph: {"problem", "solution"} -> {"step_scores", "score"}."""

    class State(PRMInput, PRMOutput):
        pass

    graph = StateGraph(State, input_schema=PRMInput, output_schema=PRMOutput)
    graph.add_node("score", prm_node(prm, delimiter=delimiter, aggregation=aggregation))
    graph.add_edge(START, "score")
    graph.add_edge("score", END)
    return graph.compile(name="prm")
