"""Watch a PRM-guided beam search think: every beam, score and pruning decision is printed as
the search runs, from LangGraph's "custom" stream.

    .venv/bin/python examples/stream_beam_search.py "A baker has 15 cakes and sells 6. Left?"
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc import create_beam_search, logs
from langgraph_ttc.events import ProgressEvent
from langgraph_ttc.types import PRM, Policy

DEFAULT_PROBLEM = "A baker has 15 cakes and sells 6. How many cakes are left?"
SETTINGS: dict[str, Any] = dict(n=4, beam_width=2, max_iterations=8, max_tokens=256, seed=0)


def last_step(text: str) -> str:
    steps = [s for s in text.split("\n\n") if s.strip()]
    return " ".join(steps[-1].split())[:70] if steps else ""


def describe(event: ProgressEvent) -> str | None:
    """One line per event; token-count ("generation") events are skipped."""
    kind = event["type"]
    if kind == "candidate":
        state = "done" if event["finished"] else "open"
        return (
            f"[it {event.get('iteration')}] beam {event['id']:>3} ({state}) "
            f"<- {event.get('parent')}: {last_step(event['text'])}"
        )
    if kind == "score":
        return f"[it {event.get('iteration')}]   score {event['id']:>3}: {event['score']:.2f}"
    if kind == "prune":
        return f"[it {event['iteration']}] keep {event['kept']}, drop {event['dropped']}"
    if kind == "selected":
        score = f"{event['score']:.2f}" if event["score"] is not None else "-"
        return f"\nselected beam {event['id']}: answer {event['answer']!r} (score {score})"
    return None


async def watch(
    graph: CompiledStateGraph, problem: str, show: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the search, showing each progress event; returns the graph's output."""
    output: dict[str, Any] = {}
    async for mode, chunk in graph.astream({"problem": problem}, stream_mode=["custom", "values"]):
        if mode == "values":
            output = chunk
        elif (line := describe(chunk)) is not None:
            show(line)
    return output


def build_search(policy: Policy, prm: PRM, **settings: Any) -> CompiledStateGraph:
    return create_beam_search(policy, prm, **(settings or SETTINGS))


async def main(problem: str) -> None:
    from langgraph_ttc.policies import VLLMPolicy
    from langgraph_ttc.verifiers import ArithmeticVerifier

    async with VLLMPolicy() as policy:
        await watch(build_search(policy, ArithmeticVerifier()), problem)


if __name__ == "__main__":  # vLLM spawns worker processes: keep the guard
    logs.configure()  # quiet, as `ttc` is; TTC_LOG_LEVEL=INFO shows vLLM's logs
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PROBLEM))
