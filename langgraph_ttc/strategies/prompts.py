"""What a run reads from its input, and the conversation its solutions continue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import HumanMessage

from langgraph_ttc.errors import EmptyProblemError


def resolve_problem(state: Mapping[str, Any]) -> str:
    """The problem text: `problem`, else the content of the last human message."""
    problem = state.get("problem")
    if problem is None:
        for message in reversed(state.get("messages") or []):
            if isinstance(message, HumanMessage):
                problem = message.text if hasattr(message, "text") else str(message.content)
                break
    if problem is not None and not isinstance(problem, str):
        raise EmptyProblemError(f"problem must be a string, got {type(problem).__name__}")
    if not problem or not problem.strip():
        raise EmptyProblemError(
            "empty problem: pass {'problem': '...'} or {'messages': [...]} whose last human "
            "message holds the problem text"
        )
    return problem.strip()


def chat_messages(
    problem: str, system_prompt: str, examples: Sequence[Sequence[str]] = ()
) -> list[dict[str, str]]:
    """The conversation a solution continues: system prompt, worked examples as earlier
    user/assistant turns, then the problem."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for example_problem, example_solution in examples:
        messages += [
            {"role": "user", "content": example_problem},
            {"role": "assistant", "content": example_solution},
        ]
    return [*messages, {"role": "user", "content": problem}]
