"""The agent entry points on the session's real `vllm serve` (tool calling on) through
ChatOpenAI: the tool-calling example both ways, streaming included, and the server's tool-call
parser feeding the vote. Small n and max_tokens: the embedded 135M model is slow under load."""

import json

import httpx
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage
from pydantic import TypeAdapter

from examples.tool_agent import ask, build_agent, calculator, chat_model
from langgraph_ttc import ChatTTC
from langgraph_ttc.agents.selector import to_action, tool_checks
from langgraph_ttc.events import ProgressEvent

pytestmark = pytest.mark.integration
VALIDATE = TypeAdapter(ProgressEvent).validate_python
QUESTION = "What is 37 * 43?"


def check_vote(message: AIMessage, n: int) -> dict:
    record = message.response_metadata["ttc"]
    assert record["strategy"] == "ttc_agent" and record["n"] == n
    assert sum(g["size"] for g in record["groups"]) + 0 <= n
    assert (
        record["tokens"]["output"] > 0 and record["tokens"]["total"] >= record["tokens"]["output"]
    )
    return record


async def test_a_forced_tool_call_follows_the_template_and_is_classified(server_url):
    """With tool_choice="required" the model writes a Hermes <tool_call> (the template showed
    it the format); the server parses it, or the vote sees it as malformed: never as text."""
    llm = chat_model(server_url, max_tokens=96, temperature=0.0, timeout=600).bind_tools(
        [calculator], tool_choice="required"
    )
    reply = await llm.ainvoke("Use the calculator for 37 * 43.")
    action = to_action(0, reply, tool_checks([calculator]))
    if reply.tool_calls:
        assert reply.tool_calls[0]["name"] == "calculator"
    else:
        assert "<tool_call>" in reply.text and not action.valid


async def test_tools_reach_the_prompt(server_url, served_model):
    """Without tool_choice forcing, the rendered prompt must still list the calculator."""
    body = {
        "model": served_model,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "calculator", "parameters": {}}}],
    }
    url = server_url.rstrip("/").removesuffix("/v1") + "/tokenize"
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(url, json={**body, "return_token_strs": True})
    response.raise_for_status()
    assert "calculator" in "".join(response.json().get("token_strs") or [])


async def test_middleware_agent_votes_on_each_model_call(server_url):
    agent = build_agent(server_url, n=3, max_tokens=48)
    result = await ask(agent, QUESTION, recursion_limit=6)
    ai = [m for m in result["messages"] if isinstance(m, AIMessage)]
    assert ai and all("ttc" in m.response_metadata for m in ai)
    for message in ai:
        check_vote(message, 3)
    for event in result["events"]:
        VALIDATE(event)
    types = [e["type"] for e in result["events"]]
    assert types.count("action_selected") == len(ai) and types.count("action") == 3 * len(ai)
    for message in result["messages"]:  # every tool call that ran was a valid one
        if isinstance(message, ToolMessage):
            assert not message.text.startswith("Error")


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
async def test_react_agent_with_chat_ttc_streams_messages(server_url):
    agent = build_agent(server_url, n=3, react=True, max_tokens=48)
    chunks, ai = [], []
    async for mode, item in agent.astream(
        {"messages": [("user", QUESTION)]},
        {"recursion_limit": 6},
        stream_mode=["messages", "values"],
    ):
        if mode == "messages":
            chunks.append(item[0])
        else:
            ai = [m for m in item["messages"] if isinstance(m, AIMessage)]
    assert any(isinstance(c, AIMessageChunk) for c in chunks)
    assert ai and all(check_vote(m, 3) for m in ai)


async def test_chat_ttc_astream_and_events_on_the_server(server_url):
    chat = ChatTTC(chat_model(server_url, max_tokens=24), n=2)
    pieces = [chunk async for chunk in chat.astream("Say hello.")]
    whole = pieces[0]
    for piece in pieces[1:]:
        whole += piece
    record = whole.response_metadata["ttc"]
    assert record["n"] == 2 and isinstance(whole.text, str)
    custom = [
        e["data"]
        async for e in chat.astream_events("Say hi.", version="v2")
        if e["event"] == "on_custom_event"
    ]
    assert [e["type"] for e in custom] == ["action", "action", "action_selected"]
    json.dumps(custom)  # plain data
