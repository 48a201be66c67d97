"""Every strategy composes the same way: as a node of a parent graph with its own keys, in a
MessagesState agent, streaming its events to the parent, with per-run overrides."""

import operator
from dataclasses import replace
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph

from langgraph_ttc import create_beam_search, create_best_of_n, create_dvts, create_self_refine
from langgraph_ttc.strategies import EmptyProblemError
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, seeded_arithmetic, tree_policy

BUILDERS = {
    "best_of_n": lambda p, r: create_best_of_n(p, r, n=4, seed=0),
    "beam_search": lambda p, r: create_beam_search(p, r, n=4, beam_width=2, seed=0),
    "dvts": lambda p, r: create_dvts(p, r, n=4, beam_width=2, seed=0),
    "self_refine": lambda p, r: create_self_refine(p, r, rounds=1, chains=2, seed=0),
}
EXPECTED_EVENTS = {
    "best_of_n": {"candidate", "score", "selected"},
    "beam_search": {"candidate", "score", "prune", "selected"},
    "dvts": {"candidate", "score", "prune", "selected"},
    "self_refine": {"candidate", "score", "critique", "selected"},
}


def build(name):
    return BUILDERS[name](tree_policy(2, alternating), KeywordPRM({"good": 0.9, "bad": 0.1}))


class ParentState(TypedDict, total=False):
    problem: str
    answer: str | None
    log: Annotated[list[str], operator.add]
    route: str


@pytest.mark.parametrize("name", BUILDERS)
async def test_parent_graph_with_own_keys_streams_subgraph_events(name):
    parent = StateGraph(ParentState)
    parent.add_node("solve", build(name))
    parent.add_node("after", lambda s: {"log": [f"answer={s['answer']}"]})
    parent.add_edge(START, "solve")
    parent.add_edge("solve", "after")
    app = parent.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": name}}
    custom = []
    async for ns, mode, chunk in app.astream(
        {"problem": "p", "log": ["start"], "route": "x"},
        config,
        stream_mode=["custom", "updates"],
        subgraphs=True,
    ):
        if mode == "custom":
            custom.append((ns, chunk))
    final = (await app.aget_state(config)).values
    assert set(final) == {"problem", "answer", "log", "route"}
    assert final["log"] == ["start", f"answer={final['answer']}"]
    assert final["answer"] is not None
    assert {chunk["type"] for _, chunk in custom} == EXPECTED_EVENTS[name]
    assert all(ns and ns[0].startswith("solve:") for ns, _ in custom)
    assert all(chunk["strategy"] == name for _, chunk in custom)
    assert all("iteration" in chunk for _, chunk in custom if chunk["type"] in {"prune"})


@pytest.mark.parametrize("name", BUILDERS)
async def test_messages_agent_gets_one_ai_message(name):
    parent = StateGraph(MessagesState)
    parent.add_node("reason", build(name))
    parent.add_edge(START, "reason")
    out = await parent.compile().ainvoke({"messages": [HumanMessage("What is 1 + 1?")]})
    assert [type(m) for m in out["messages"]] == [HumanMessage, AIMessage]
    assert out["messages"][-1].name == name and "\\boxed" in out["messages"][-1].content


@pytest.mark.parametrize("name", BUILDERS)
async def test_contract_output_and_empty_problem(name):
    graph = build(name)
    out = await graph.ainvoke({"problem": "p"})
    assert {"answer", "solution", "candidates", "usage"} <= set(out)
    for candidate in out["candidates"]:
        assert {"text", "answer", "score", "step_scores", "num_tokens"} <= set(candidate)
    assert out["usage"]["policy_tokens"] > 0 and out["usage"]["prm_calls"] >= 1
    with pytest.raises(EmptyProblemError):
        await graph.ainvoke({"problem": " "})


def sampling_settings(policy: ScriptedPolicy) -> set[tuple]:
    """Every request's settings apart from its text and seed."""
    return {
        (r.n, r.max_tokens, r.temperature, r.top_p, tuple(r.stop))
        for call in policy.calls
        for r in call
    }


@pytest.mark.parametrize("name", BUILDERS)
async def test_seed_override_changes_nothing_else(name):
    runs = {}
    for label, config in [
        ("default", {}),
        ("seed 3", {"configurable": {"seed": 3}}),
        ("seed 3 again", {"configurable": {"seed": 3}}),
        ("default again", {}),
    ]:
        policy = ScriptedPolicy(seeded_arithmetic)  # samples depend on the request seed
        graph = BUILDERS[name](policy, KeywordPRM({"good": 0.9, "bad": 0.1}))
        out = await graph.ainvoke({"problem": "What is 2 + 3?"}, config)
        runs[label] = ([c["text"] for c in out["candidates"]], policy)
    samples = {label: texts for label, (texts, _) in runs.items()}
    assert samples["seed 3"] != samples["default"]
    assert samples["seed 3"] == samples["seed 3 again"]
    assert samples["default again"] == samples["default"]  # the override did not stick
    default_policy, seeded_policy = runs["default"][1], runs["seed 3"][1]
    # the first requests (before any sample steers the search) differ only by the seed shift
    default_first, seeded_first = default_policy.calls[0], seeded_policy.calls[0]
    assert all(r.seed is not None for r in default_first)
    assert seeded_first == [replace(r, seed=r.seed + 3) for r in default_first]
    assert sampling_settings(seeded_policy) == sampling_settings(default_policy)
