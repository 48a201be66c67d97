"""A resumed thread's state is new input: after `aupdate_state` edits, scores must be finite
and in [0, 1], settings validate again, candidates hold their keys; otherwise a StateError
names the thread and the field before anything runs on it."""

import math

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from langgraph_ttc import create_adaptive_majority, create_beam_search, create_best_of_n
from langgraph_ttc.strategies.state_check import StateError
from tests.fakes import KeywordPRM, cycling, tree_policy

PRM = KeywordPRM({"good": 0.9, "bad": 0.2})


def texts():
    return ["Step good\n\n\\boxed{1}", "Step bad\n\n\\boxed{2}"]


async def paused(build, node="score"):
    """A best-of-N-like graph on a thread, paused before `select` (after `node`)."""
    graph = build(checkpointer=InMemorySaver(), interrupt_before=["select"])
    config = {"configurable": {"thread_id": "t-7"}}
    await graph.ainvoke({"problem": "1+1?"}, config)
    return graph, config, (await graph.aget_state(config)).values


@pytest.mark.parametrize("value", [math.nan, math.inf, 99.0, -1.0, "0.5", None])
async def test_a_tampered_score_is_rejected(value):
    graph, config, state = await paused(
        lambda **o: create_best_of_n(cycling(texts()), PRM, n=2, **o)
    )
    pool = [dict(c) for c in state["pool"]]
    pool[1]["score"] = value
    await graph.aupdate_state(config, {"pool": pool}, as_node="score")
    with pytest.raises(StateError, match=r"thread 't-7'.*pool\.1\.score"):
        await graph.ainvoke(None, config)


@pytest.mark.parametrize("key", ["answer", "score", "text"])
async def test_a_candidate_missing_a_key_is_rejected(key):
    graph, config, state = await paused(
        lambda **o: create_best_of_n(cycling(texts()), PRM, n=2, **o)
    )
    pool = [dict(c) for c in state["pool"]]
    del pool[0][key]
    await graph.aupdate_state(config, {"pool": pool}, as_node="score")
    with pytest.raises(StateError, match=rf"pool\.0\.{key}: Field required"):
        await graph.ainvoke(None, config)


async def test_tampered_settings_are_validated_again():
    graph, config, _ = await paused(lambda **o: create_best_of_n(cycling(texts()), PRM, n=2, **o))
    settings = {"n": "abc", "aggregation": "bogus"}
    await graph.aupdate_state(config, {"settings": settings}, as_node="score")
    with pytest.raises(StateError, match=r"thread 't-7'.*settings.*n: Input should be"):
        await graph.ainvoke(None, config)


async def test_a_branch_reads_checked_state_too():
    # adaptive majority's branch runs as the update is applied: the error comes at once
    build = lambda **o: create_adaptive_majority(cycling(texts()), PRM, n=8, batch_size=2, **o)  # noqa: E731
    graph = build(checkpointer=InMemorySaver(), interrupt_after=["sample"])
    config = {"configurable": {"thread_id": "t-8"}}
    await graph.ainvoke({"problem": "1+1?"}, config)
    state = (await graph.aget_state(config)).values
    pool = [{**c, "score": math.inf} for c in state["pool"]]
    with pytest.raises(StateError, match=r"thread 't-8'.*pool\.0\.score"):
        await graph.aupdate_state(config, {"pool": pool}, as_node="decide")
        await graph.ainvoke(None, config)


async def test_a_resumed_beam_search_with_a_bad_score_stops():
    graph = create_beam_search(
        tree_policy(2, lambda request, i, k: ["good", "bad"][i % 2]),
        PRM,
        n=2,
        beam_width=2,
        max_iterations=3,
        checkpointer=InMemorySaver(),
        interrupt_after=["score"],
    )
    config = {"configurable": {"thread_id": "beam"}}
    await graph.ainvoke({"problem": "1+1?"}, config)
    state = (await graph.aget_state(config)).values
    active = [{**c, "step_scores": [*c["step_scores"][:-1], 7.0]} for c in state["active"]]
    with pytest.raises(StateError, match=r"thread 'beam'.*active\.0\.step_scores"):
        await graph.aupdate_state(config, {"active": active}, as_node="score")
        await graph.ainvoke(None, config)


async def test_an_untouched_resume_still_works():
    graph, config, _ = await paused(lambda **o: create_best_of_n(cycling(texts()), PRM, n=2, **o))
    out = await graph.ainvoke(None, config)
    assert out["answer"] == "1"


@pytest.mark.parametrize(
    "route", [{"strategy": 5}, {"settings": {}}, {"strategy": "greedy", "x": 1}]
)
async def test_a_router_resumed_with_an_edited_route_stops(route):
    from langgraph_ttc import create_compute_optimal

    graph = create_compute_optimal(
        cycling(texts()), None, n=4, max_tokens=8, checkpointer=InMemorySaver(),
        interrupt_before=["solve"],
    )  # fmt: skip
    config = {"configurable": {"thread_id": "router"}}
    await graph.ainvoke({"problem": "1+1?"}, config)
    await graph.aupdate_state(config, {"route": route}, as_node="route")
    with pytest.raises(StateError, match="route"):
        await graph.ainvoke(None, config)
