"""The agent example on the real engine: a math question through the beam-search subgraph,
small talk through one plain sample."""

import pytest
from langchain_core.messages import AIMessage

from examples.agent import ask, build_agent
from langgraph_ttc.verifiers import ArithmeticVerifier

pytestmark = pytest.mark.integration
SEARCH = dict(n=2, beam_width=2, max_iterations=3, max_step_tokens=48, max_tokens=128, seed=0)


async def test_agent_real(policy):
    agent = build_agent(policy, ArithmeticVerifier(), chat_tokens=32, **SEARCH)
    lines: list[str] = []
    math = await ask(agent, "A baker has 15 cakes and sells 6. How many are left?", lines.append)
    assert math.route == "solve_math"
    custom = [(ns, event) for ns, mode, event in math.items if mode == "custom"]
    assert custom and all(ns[0].startswith("solve_math:") for ns, _ in custom)
    assert [e["type"] for _, e in custom if e["type"] != "generation"][-1] == "selected"
    assert isinstance(math.reply, AIMessage) and math.reply.name == "beam_search"
    assert math.reply.text.strip()
    assert any(line.startswith("[solve_math] selected beam") for line in lines)

    chat = await ask(agent, "Say hello in French.", lines.append)
    assert chat.route == "chat"
    assert isinstance(chat.reply, AIMessage) and chat.reply.name == "chat"
    assert chat.reply.text.strip()
