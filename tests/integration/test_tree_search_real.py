"""The tree searches (MCTS, REBASE) end to end on the real engine with the arithmetic verifier
and the worked examples: the tree grows, each iteration is one policy call and one verifier
call, and the answer comes from the finished solutions."""

import pytest

from langgraph_ttc import create_mcts, create_rebase
from langgraph_ttc.verifiers import ArithmeticVerifier
from langgraph_ttc.worked_examples import select_examples

pytestmark = pytest.mark.integration
PROBLEM = "A baker has 15 cakes and sells 6. How many cakes are left?"
COMMON = dict(n=4, max_depth=4, max_step_tokens=48, max_tokens=160, seed=0)


async def collect(graph):
    events, out = [], {}
    async for mode, chunk in graph.astream({"problem": PROBLEM}, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            out = chunk
    return out, events


def tree_events(events, action):
    return [e for e in events if e["type"] == "tree" and e["action"] == action]


def check_tree(out, events):
    """Every expanded node hangs off the root or an expanded node; every one was scored."""
    added = {e["id"]: e for e in tree_events(events, "expand")}
    assert added and all(e["parent"] == 0 or e["parent"] in added for e in added.values())
    assert {e["id"] for e in tree_events(events, "score")} == set(added)
    assert out["candidates"] and out["solution"] in [c["text"] for c in out["candidates"]]
    assert all(c["finish_reason"] in {"stop", "length"} for c in out["candidates"])
    iterations = len({e["iteration"] for e in tree_events(events, "expand")})
    return added, iterations


async def test_mcts_real(policy):
    graph = create_mcts(
        policy, ArithmeticVerifier(), expansions=2, max_iterations=6,
        examples=select_examples(4), **COMMON,
    )  # fmt: skip
    out, events = await collect(graph)
    added, iterations = check_tree(out, events)
    assert out["usage"]["policy_calls"] == out["usage"]["prm_calls"] == iterations
    root = [e for e in tree_events(events, "backup") if e["id"] == 0][-1]
    assert root["visits"] == len(added)  # every node's value reached the root
    assert any(c["answer"] is not None for c in out["candidates"])


async def test_mcts_greedy_rollout_real(policy):
    graph = create_mcts(
        policy, ArithmeticVerifier(), expansions=2, max_iterations=2, rollout="greedy", **COMMON
    )
    out, events = await collect(graph)
    _, iterations = check_tree(out, events)
    # expansions and rollouts: up to two policy calls per iteration, one verifier call
    assert iterations < out["usage"]["policy_calls"] <= 2 * iterations
    assert out["usage"]["prm_calls"] == iterations


async def test_rebase_real(policy):
    graph = create_rebase(policy, ArithmeticVerifier(), examples=select_examples(4), **COMMON)
    out, events = await collect(graph)
    _, iterations = check_tree(out, events)
    assert out["usage"]["policy_calls"] == out["usage"]["prm_calls"] == iterations
    assert len(out["candidates"]) == 4
    # each depth's children never exceed the budget left (n minus the finished solutions)
    for depth in range(iterations):
        children = [e for e in tree_events(events, "expand") if e["iteration"] == depth]
        finished_before = [
            e for e in tree_events(events, "expand") if e["iteration"] < depth and e["finished"]
        ]
        assert len(children) == 4 - len(finished_before)
