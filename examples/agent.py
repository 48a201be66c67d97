"""A chat agent that sends math questions to a PRM-guided beam search and answers anything
else with one plain sample of the same model, streaming the agent's steps and the search's
progress as they happen.

    .venv/bin/python examples/agent.py "Tom has 12 apples and buys 7 more. How many now?"
    .venv/bin/python examples/agent.py "Say hello in French."

The graph:

    START --route--> solve_math (the beam-search graph, a subgraph node) --> END
                 \\--> chat (one policy call, one sample) -------------------> END

`astream(..., stream_mode=["custom", "updates"], subgraphs=True)` yields the agent's node
updates (namespace `()`) and the subgraph's progress events (namespace `("solve_math:<task>",)`).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc import GenerationRequest, create_beam_search, logs
from langgraph_ttc.types import PRM, Policy

DEFAULT_QUESTION = "A baker has 15 cakes and sells 6. How many cakes are left?"
CHAT_SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."
# Small enough for a laptop CPU; pass others to build_agent.
SEARCH_SETTINGS: dict[str, Any] = dict(
    n=4, beam_width=2, max_iterations=8, max_step_tokens=64, max_tokens=256, seed=0
)

# A math question states a number or an arithmetic symbol: word problems ("Tom has 12
# apples...") always carry their numbers; small talk seldom does. ("-" and "/" are left out:
# hyphens and "and/or".) A misrouted question still gets an answer, from the other path.
_MATH = re.compile(r"\d|[+*=×÷^]")

Route = Literal["solve_math", "chat"]


def is_math(text: str) -> bool:
    return bool(_MATH.search(text))


def last_question(messages: Sequence[AnyMessage]) -> str:
    human = [m for m in messages if isinstance(m, HumanMessage)]
    return human[-1].text if human else ""


def route(state: MessagesState) -> Route:
    return "solve_math" if is_math(last_question(state["messages"])) else "chat"


def as_chat(messages: Sequence[AnyMessage]) -> list[dict[str, str]]:
    """The conversation as role/content dicts, the policy's input format."""
    roles = {"human": "user", "ai": "assistant", "system": "system"}
    turns = [{"role": "system", "content": CHAT_SYSTEM_PROMPT}]
    return turns + [{"role": roles[m.type], "content": m.text} for m in messages if m.type in roles]


def build_agent(
    policy: Policy, prm: PRM, *, chat_tokens: int = 128, **search_settings: Any
) -> CompiledStateGraph:
    """The agent over `policy` (both paths) and `prm` (the search's verifier);
    `search_settings` go to `create_beam_search` (default: SEARCH_SETTINGS)."""
    search = create_beam_search(policy, prm, **(search_settings or SEARCH_SETTINGS))

    async def chat(state: MessagesState) -> dict[str, Any]:
        request = GenerationRequest(
            messages=as_chat(state["messages"]), n=1, max_tokens=chat_tokens, temperature=0.0
        )
        [[completion]] = await policy.generate([request])
        return {"messages": [AIMessage(content=completion.text.strip(), name="chat")]}

    graph = StateGraph(MessagesState)
    graph.add_node("solve_math", search)  # a compiled graph as a node: a subgraph
    graph.add_node("chat", chat)
    graph.add_conditional_edges(START, route, ["solve_math", "chat"])
    graph.add_edge("solve_math", END)
    graph.add_edge("chat", END)
    return graph.compile(name="agent")


@dataclass
class AgentRun:
    """What one question produced: every streamed item and the reply."""

    items: list[tuple[tuple[str, ...], str, Any]] = field(default_factory=list)
    reply: AIMessage | None = None

    @property
    def route(self) -> str | None:
        """The agent node that answered."""
        for namespace, mode, chunk in self.items:
            if mode == "updates" and not namespace:
                return next(iter(chunk))
        return None


async def ask(
    agent: CompiledStateGraph, question: str, show: Callable[[str], None] = print
) -> AgentRun:
    """Stream one question through the agent, showing each item as it arrives."""
    run = AgentRun()
    async for namespace, mode, chunk in agent.astream(
        {"messages": [HumanMessage(question)]},
        stream_mode=["custom", "updates"],
        subgraphs=True,
    ):
        run.items.append((namespace, mode, chunk))
        line = describe(namespace, mode, chunk)
        if line:
            show(line)
        if mode == "updates" and not namespace:
            for update in chunk.values():
                replies = [
                    m for m in (update or {}).get("messages", []) if isinstance(m, AIMessage)
                ]
                run.reply = replies[-1] if replies else run.reply
    return run


def describe(namespace: tuple[str, ...], mode: str, chunk: Any) -> str | None:
    """One printable line per streamed item (token-count events are skipped)."""
    where = "agent" if not namespace else namespace[-1].split(":")[0]
    if mode == "updates":
        nodes = ", ".join(chunk)
        return f"[{where}] update from {nodes}"
    kind = chunk["type"]
    if kind == "candidate":
        state = "done" if chunk["finished"] else "open"
        text = " ".join(chunk["text"].split())[-60:]
        return f"[{where}] it {chunk['iteration']} beam {chunk['id']} ({state}): ...{text}"
    if kind == "score":
        return f"[{where}] it {chunk['iteration']} beam {chunk['id']} score {chunk['score']:.2f}"
    if kind == "prune":
        return f"[{where}] it {chunk['iteration']} keep {chunk['kept']} drop {chunk['dropped']}"
    if kind == "selected":
        return f"[{where}] selected beam {chunk['id']}: answer {chunk['answer']!r}"
    return None


async def main(question: str) -> None:
    from langgraph_ttc.policies import VLLMPolicy
    from langgraph_ttc.verifiers import ArithmeticVerifier

    async with VLLMPolicy() as policy:  # the embedded model
        agent = build_agent(policy, ArithmeticVerifier())
        run = await ask(agent, question)
    print(f"\nroute: {run.route}\nreply: {run.reply.text if run.reply else None}")


if __name__ == "__main__":  # vLLM spawns worker processes: keep the guard
    logs.configure()  # quiet, as `ttc` is; TTC_LOG_LEVEL=INFO shows vLLM's logs
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_QUESTION))
