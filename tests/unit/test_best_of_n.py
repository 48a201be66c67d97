import operator
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph

from langgraph_ttc import create_best_of_n
from langgraph_ttc.strategies import EmptyProblemError
from tests.fakes import KeywordPRM, ScriptedPolicy, cycling, seeded_arithmetic

SOLUTIONS = [
    "Step A good\n\n\\boxed{1}",  # high single score
    "Step B ok\n\n\\boxed{2}",
    "Step C ok\n\n\\boxed{2}",
    "Step D ok\n\n\\boxed{2}",
]
PRM_WEIGHTS = {"good": 0.9, "ok": 0.5}


def build(**kwargs):
    policy = cycling(SOLUTIONS)
    prm = KeywordPRM(PRM_WEIGHTS, default=0.6)
    return create_best_of_n(policy, prm, n=4, **kwargs), policy, prm


@pytest.mark.parametrize(
    ("selection", "answer"), [("naive", "1"), ("weighted", "2"), ("majority", "2")]
)
async def test_selection_modes(selection, answer):
    graph, _, _ = build(selection=selection, aggregation="min")
    out = await graph.ainvoke({"problem": "What?"})
    assert out["answer"] == answer
    assert out["solution"] in SOLUTIONS


async def test_output_contract_and_usage():
    graph, policy, prm = build(aggregation="min")
    out = await graph.ainvoke({"problem": "  What is 1?  "})
    assert {"answer", "solution", "candidates", "usage"} <= set(out)
    assert out.get("messages", []) == []  # no chat history in, none out
    assert len(policy.calls) == 1 and policy.calls[0][0].n == 4  # one request, n samples
    assert policy.calls[0][0].messages[-1]["content"] == "What is 1?"
    assert len(prm.calls) == 1 and len(prm.calls[0]) == 4  # one batched PRM call
    first = out["candidates"][0]
    assert {"text", "answer", "score", "step_scores", "num_tokens"} <= set(first)
    assert first["step_scores"] == [0.9, 0.6] and first["score"] == 0.6
    assert out["usage"]["policy_tokens"] == sum(c["num_tokens"] for c in out["candidates"]) > 0
    assert out["usage"]["prm_calls"] == 1


@pytest.mark.parametrize(
    ("aggregation", "score"), [("last", 0.6), ("min", 0.6), ("mean", 0.75), ("prod", 0.54)]
)
async def test_aggregation(aggregation, score):
    graph, _, _ = build(aggregation=aggregation)
    out = await graph.ainvoke({"problem": "p"})
    assert out["candidates"][0]["score"] == pytest.approx(score)


async def test_majority_without_prm():
    graph = create_best_of_n(cycling(SOLUTIONS), None, n=4, selection="majority")
    out = await graph.ainvoke({"problem": "p"})
    assert out["answer"] == "2" and out["usage"].get("prm_calls", 0) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n: Input should be greater than or equal to 1"),
        ({"n": 4, "temperature": 0.0}, "temperature 0"),
        ({"selection": "best"}, "selection: Input should be"),
        ({"aggregation": "max"}, "aggregation: Input should be"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"top_p": 0}, "top_p"),
    ],
)
def test_bad_settings_fail_at_build_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_best_of_n(cycling(SOLUTIONS), KeywordPRM({}), **kwargs)


def test_weighted_selection_needs_a_prm():
    with pytest.raises(ValueError, match="needs a prm"):
        create_best_of_n(cycling(SOLUTIONS), None, selection="weighted")


@pytest.mark.parametrize("inp", [{"problem": ""}, {"problem": "   "}, {}, {"messages": []}])
async def test_empty_problem_fails_clearly_before_generating(inp):
    graph, policy, _ = build()
    with pytest.raises(EmptyProblemError, match="empty problem"):
        await graph.ainvoke(inp)
    assert policy.calls == []


async def test_configurable_overrides_per_run():
    graph, policy, _ = build()
    out = await graph.ainvoke(
        {"problem": "p"}, {"configurable": {"n": 2, "seed": 7, "selection": "naive"}}
    )
    assert len(out["candidates"]) == 2
    assert policy.calls[0][0].seed == 7 and policy.calls[0][0].n == 2
    with pytest.raises(ValueError, match="n: Input should be greater than or equal to 1"):
        await graph.ainvoke({"problem": "p"}, {"configurable": {"n": -1}})


async def test_prm_failure_is_isolated_to_its_candidate():
    policy = cycling(["fine\n\n\\boxed{3}", "BAD step\n\n\\boxed{4}"])
    prm = KeywordPRM({"fine": 0.8}, fail_on="BAD")
    graph = create_best_of_n(policy, prm, n=2, selection="naive")
    out = await graph.ainvoke({"problem": "p"})
    good, bad = out["candidates"]
    assert good["step_scores"] == [0.8, 0.5] and "error" not in good
    assert bad["step_scores"] == [] and "BAD" in bad["error"]
    assert out["answer"] == "3"
    assert out["usage"]["prm_calls"] == 3 and len(out["usage"]["errors"]) == 1


async def test_prm_out_of_range_scores_are_rejected():
    class NaNPRM:
        async def score(self, problem, solutions):
            return [[float("nan")] * len(s) for s in solutions]

    graph = create_best_of_n(cycling(SOLUTIONS), NaNPRM(), n=2)
    out = await graph.ainvoke({"problem": "p"})
    assert all("not in [0, 1]" in c["error"] for c in out["candidates"])


async def test_seeded_fake_is_deterministic_per_seed():
    graph = create_best_of_n(ScriptedPolicy(seeded_arithmetic), KeywordPRM({}), n=4, seed=3)
    a = await graph.ainvoke({"problem": "p"})
    b = await graph.ainvoke({"problem": "p"})
    c = await graph.ainvoke({"problem": "p"}, {"configurable": {"seed": 4}})
    texts = lambda out: [cand["text"] for cand in out["candidates"]]  # noqa: E731
    assert texts(a) == texts(b) != texts(c)


async def test_streams_progress_events():
    graph, _, _ = build()
    events = [chunk async for chunk in graph.astream({"problem": "p"}, stream_mode="custom")]
    types = [e["type"] for e in events]
    assert types == ["candidate"] * 4 + ["score"] * 4 + ["selected"]
    assert all(e["strategy"] == "best_of_n" for e in events)
    assert events[-1]["answer"] == "2"


async def test_messages_input_appends_ai_message():
    graph, policy, _ = build()
    out = await graph.ainvoke({"messages": [HumanMessage("What is 2?")]})
    assert policy.calls[0][0].messages[-1]["content"] == "What is 2?"
    assert isinstance(out["messages"][-1], AIMessage)
    assert out["messages"][-1].content == out["solution"]
    assert len(out["messages"]) == 2


async def test_as_node_of_messages_state_agent():
    graph, _, _ = build()
    parent = StateGraph(MessagesState)
    parent.add_node("reason", graph)
    parent.add_edge(START, "reason")
    app = parent.compile()
    out = await app.ainvoke({"messages": [HumanMessage("What is 2?")]})
    assert [type(m) for m in out["messages"]] == [HumanMessage, AIMessage]  # not duplicated
    assert "\\boxed{2}" in out["messages"][-1].content


class ParentState(TypedDict, total=False):
    problem: str
    answer: str | None
    log: Annotated[list[str], operator.add]
    route: str


async def test_as_node_of_parent_graph_with_own_keys_and_streaming():
    graph, _, _ = build()
    parent = StateGraph(ParentState)
    parent.add_node("solve", graph)
    parent.add_node("after", lambda s: {"log": [f"answer={s['answer']}"]})
    parent.add_edge(START, "solve")
    parent.add_edge("solve", "after")
    app = parent.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    custom, updates = [], []
    async for ns, mode, chunk in app.astream(
        {"problem": "p", "log": ["start"], "route": "x"},
        config,
        stream_mode=["custom", "updates"],
        subgraphs=True,
    ):
        (custom if mode == "custom" else updates).append((ns, chunk))
    final = (await app.aget_state(config)).values
    assert final["answer"] == "2"
    assert final["log"] == ["start", "answer=2"]  # parent reducer untouched by the subgraph
    assert final["route"] == "x"
    assert set(final) == {"problem", "answer", "log", "route"}  # no internal keys leaked
    assert any(ns and ns[0].startswith("solve") for ns, _ in custom)
    assert {chunk["type"] for _, chunk in custom} == {"candidate", "score", "selected"}


async def test_state_round_trips_through_a_checkpointer(monkeypatch):
    monkeypatch.setenv("LANGGRAPH_STRICT_MSGPACK", "true")
    graph, _policy, _prm = build()
    graph = graph.builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    out = await graph.ainvoke({"problem": "p"}, config)
    again = await graph.ainvoke({"problem": "p"}, config)
    assert out["answer"] == again["answer"] == "2"
    assert again["usage"]["policy_calls"] == 1  # usage resets per run, not per thread


async def test_hung_prm_times_out_without_losing_candidates():
    import asyncio

    class HungPRM:
        async def score(self, problem, solutions):
            await asyncio.sleep(60)

    graph = create_best_of_n(cycling(SOLUTIONS), HungPRM(), n=2)
    out = await graph.ainvoke({"problem": "p"}, {"configurable": {"prm_timeout": 0.05}})
    assert len(out["candidates"]) == 2
    assert all("timed out" in c["error"] for c in out["candidates"])
    assert out["answer"] is not None
