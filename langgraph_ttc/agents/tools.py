"""A strategy graph as an agent tool: "solve with beam search" called like any tool (as
`prm_tool` offers a verifier)."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

DEFAULT_DESCRIPTION = (
    "Solve a math problem with a test-time-compute search (several sampled solutions, checked "
    "and compared). Input: the full problem statement. Returns the final answer and the "
    "solution that reached it."
)
MAX_SOLUTION_CHARS = 4000  # what the agent reads back; the graph's full output stays in the run


class SolveInput(BaseModel):
    problem: str = Field(description="the full problem statement, self-contained")


def strategy_tool(
    graph: Any,
    *,
    name: str = "solve_with_search",
    description: str = DEFAULT_DESCRIPTION,
    config: dict[str, Any] | None = None,
) -> StructuredTool:
    """A compiled strategy graph (e.g. `create_beam_search(...)`) as an async LangChain tool:
    `{"problem"}` -> `{"answer", "solution", "tokens"}`. `config` (e.g. a run's
    `configurable` settings) goes to every run."""
    if not hasattr(graph, "ainvoke"):
        raise TypeError("strategy_tool needs a compiled graph (something with ainvoke)")

    async def solve(problem: str) -> dict[str, Any]:
        if not problem.strip():
            raise ValueError("empty problem: nothing to solve")
        output = await graph.ainvoke({"problem": problem}, config=config)
        usage = output.get("usage") or {}
        return {
            "answer": output.get("answer"),
            "solution": (output.get("solution") or "")[:MAX_SOLUTION_CHARS],
            "tokens": usage.get("policy_tokens"),
        }

    return StructuredTool.from_function(
        coroutine=solve, name=name, description=description, args_schema=SolveInput
    )
