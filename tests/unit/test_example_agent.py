"""examples/agent.py with fakes: routing, the subgraph's events, the reply."""

from langchain_core.messages import AIMessage
from pydantic import TypeAdapter

from examples.agent import ask, build_agent, is_math
from langgraph_ttc.events import ProgressEvent
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, tree_policy

SEARCH = dict(n=4, beam_width=2, max_iterations=6, seed=0)
VALIDATE = TypeAdapter(ProgressEvent).validate_python


def chat_or_search(request, i):
    """Chat requests (no step stop string) get a greeting; search requests a step tree."""
    if "\n\n" not in request.stop:
        return "Bonjour!"
    return tree_policy(3, alternating).script(request, i)


def test_routing_rule():
    assert is_math("Tom has 12 apples and buys 7 more. How many?")
    assert is_math("what is x * y")
    assert not is_math("Say hello in French.")
    assert not is_math("Is a well-known and/or popular name fine?")


async def test_math_goes_to_the_beam_search_subgraph():
    policy = ScriptedPolicy(chat_or_search)
    agent = build_agent(policy, KeywordPRM({"good": 0.9, "bad": 0.1}), **SEARCH)
    lines: list[str] = []
    run = await ask(agent, "A baker has 15 cakes and sells 6. How many are left?", lines.append)
    assert run.route == "solve_math"
    custom = [(ns, chunk) for ns, mode, chunk in run.items if mode == "custom"]
    assert custom, "the subgraph's progress events did not reach the parent stream"
    assert all(ns and ns[0].startswith("solve_math:") for ns, _ in custom)
    for _, event in custom:
        VALIDATE(event)
    kinds = [event["type"] for _, event in custom]
    assert {"candidate", "score", "prune", "selected"} <= set(kinds)
    assert kinds[-1] == "selected"
    # the subgraph's own node updates arrive under its namespace too
    assert any(ns and mode == "updates" and "prune" in chunk for ns, mode, chunk in run.items)
    assert isinstance(run.reply, AIMessage) and run.reply.name == "beam_search"
    assert run.reply.text.count("good") == 3 and "\\boxed{3}" in run.reply.text
    assert all("\n\n" in r.stop for call in policy.calls for r in call)  # no chat call
    assert any("selected beam" in line and "'3'" in line for line in lines)


async def test_other_questions_get_one_plain_sample():
    policy = ScriptedPolicy(chat_or_search)
    agent = build_agent(policy, KeywordPRM({}), **SEARCH)
    run = await ask(agent, "Say hello in French.", lambda line: None)
    assert run.route == "chat"
    assert [mode for _, mode, _ in run.items] == ["updates"]
    assert run.reply is not None and run.reply.text == "Bonjour!" and run.reply.name == "chat"
    [[request]] = policy.calls
    assert request.n == 1 and request.prefix == ""
    assert request.messages[-1] == {"role": "user", "content": "Say hello in French."}
