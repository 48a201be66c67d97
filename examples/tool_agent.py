"""A tool-calling agent that samples several next actions per step and votes on them.

Start a server with tool calling (on by default), then ask:

    ttc serve --port 8000 &
    .venv/bin/python examples/tool_agent.py "What is 37 * 43?"
    .venv/bin/python examples/tool_agent.py --react "What is 37 * 43?"   # the chat-model way

The default builds `langchain.agents.create_agent(ChatOpenAI(...), [calculator],
middleware=[TTCMiddleware(n=4)])`; `--react` builds LangGraph's prebuilt
`create_react_agent(ChatTTC(ChatOpenAI(...), n=4), [calculator])`. Each model call samples n
replies, groups equivalent ones (the same tool call with the same arguments, or the same
answer) and keeps the largest group; the record is on the message:
`message.response_metadata["ttc"]`. Four worked turns (question, calculator call, result,
"The answer is N.") go before the question: the embedded 135M model calls the tool after
them, hardly ever without.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent

from langgraph_ttc import ChatTTC, TTCMiddleware
from langgraph_ttc.verifiers.arithmetic import ExpressionError, evaluate

DEFAULT_QUESTION = "What is 37 * 43?"
SYSTEM_PROMPT = (
    "You are a careful assistant. For any arithmetic, call the calculator tool with the "
    "expression, then give the final answer as a number."
)


def demonstration(question: str, expression: str, result: str) -> list[BaseMessage]:
    """One worked turn: the question, a calculator call, its result, the final answer."""
    call = {"name": "calculator", "args": {"expression": expression}, "id": f"demo-{result}"}
    return [
        HumanMessage(question),
        AIMessage("", tool_calls=[call]),
        ToolMessage(result, tool_call_id=call["id"]),
        AIMessage(f"The answer is {result}."),
    ]


WORKED = (  # question, calculator expression, result
    ("A shop had 12 apples and got 18 more. It sold 7. How many are left?", "12 + 18 - 7", "23"),
    ("Sam has 15 red and 21 blue marbles in bags of 4. How many bags?", "(15 + 21) / 4", "9"),
    ("Each box holds 6 pens. Ann buys 4 boxes and gives away 5 pens. How many pens does she "
     "have?", "6 * 4 - 5", "19"),
    ("Tom had 40 stickers. He gave 8 to his sister and shared the rest equally among 4 "
     "friends. How many stickers did each friend get?", "(40 - 8) / 4", "8"),
)  # fmt: skip
# A small model rarely calls a tool from its description alone: worked turns placed before the
# question show it the call format (the chat template renders them as Hermes `<tool_call>`s).
DEMONSTRATIONS = [message for worked in WORKED for message in demonstration(*worked)]


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / ^ and parentheses, e.g. 37 * 43."""
    try:
        value = evaluate(expression)
    except ExpressionError as error:
        return f"error: {error}"
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.6g}"


def served_model(base_url: str) -> str:
    """The server's first model (`ttc serve` serves one)."""
    response = httpx.get(base_url.rstrip("/") + "/models", timeout=10.0)
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])


def chat_model(
    base_url: str, *, max_tokens: int = 96, temperature: float = 0.7, timeout: float = 120.0
) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=base_url,
        api_key="unused",  # a local server needs none
        model=served_model(base_url),
        max_tokens=max_tokens,
        temperature=temperature,
        timeout=timeout,
        max_retries=0,
    )


def build_agent(
    base_url: str,
    *,
    n: int = 4,
    react: bool = False,
    selection: str = "majority",
    system_prompt: str = SYSTEM_PROMPT,
    **model: Any,
) -> Any:
    """The calculator agent on the server at `base_url`, voting on n samples per step."""
    llm = chat_model(base_url, **model)
    if react:
        return create_react_agent(
            ChatTTC(llm, n=n, selection=selection), [calculator], prompt=system_prompt or None
        )
    middleware = [TTCMiddleware(n=n, selection=selection)] if n > 1 else []
    return create_agent(
        llm, [calculator], system_prompt=system_prompt or None, middleware=middleware
    )


async def ask(
    agent: Any,
    question: str,
    recursion_limit: int = 12,
    demonstrations: Sequence[BaseMessage] = DEMONSTRATIONS,
) -> dict[str, Any]:
    """Run the agent after the worked `demonstrations`; the final text, the new messages and
    the progress events it streamed."""
    events: list[dict[str, Any]] = []
    state: dict[str, Any] = {}
    config = {"recursion_limit": recursion_limit}
    start = {"messages": [*demonstrations, HumanMessage(question)]}
    async for mode, chunk in agent.astream(start, config, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            state = chunk
    messages: list[BaseMessage] = state.get("messages", [])[len(demonstrations) :]
    return {"answer": messages[-1].text if messages else "", "messages": messages, "events": events}


def describe(message: BaseMessage) -> str:
    """One line per message, with the vote of a model call."""
    if not isinstance(message, AIMessage):
        return f"{message.type}: {message.text[:200]}"
    record = message.response_metadata.get("ttc")
    vote = ""
    if record:
        sizes = [g["size"] for g in record["groups"]]
        tokens = record["tokens"]["total"]
        vote = f"  [groups {sizes}, malformed {record['malformed']}, {tokens} tokens]"
    calls = ", ".join(f"{c['name']}({c['args']})" for c in message.tool_calls)
    return f"ai: {calls or message.text[:200]}{vote}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default=DEFAULT_QUESTION)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--react", action="store_true", help="create_react_agent + ChatTTC")
    args = parser.parse_args()
    agent = build_agent(args.base_url, n=args.n, react=args.react)
    result = await ask(agent, args.question)
    for message in result["messages"]:
        print(describe(message))


if __name__ == "__main__":
    asyncio.run(main())
