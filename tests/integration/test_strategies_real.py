"""Each search strategy end to end on the real engine with the arithmetic verifier."""

import pytest

from langgraph_ttc import create_beam_search, create_dvts, create_self_refine
from langgraph_ttc.verifiers import ArithmeticVerifier

pytestmark = pytest.mark.integration
PROBLEM = "A baker has 15 cakes and sells 6. How many cakes are left?"
SEARCH = dict(n=4, beam_width=2, max_iterations=4, max_step_tokens=48, max_tokens=160, seed=0)


async def collect(graph):
    events, out = [], {}
    async for mode, chunk in graph.astream({"problem": PROBLEM}, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            out = chunk
    return out, events


async def test_beam_search_real(policy):
    out, events = await collect(create_beam_search(policy, ArithmeticVerifier(), **SEARCH))
    assert len(out["candidates"]) == 4
    assert all(c["finish_reason"] in {"stop", "length"} for c in out["candidates"])
    assert out["solution"] in [c["text"] for c in out["candidates"]]
    prunes = [e for e in events if e["type"] == "prune"]
    assert prunes and all(len(e["kept"]) <= 2 for e in prunes)
    # one policy call per iteration (no lookahead)
    assert out["usage"]["policy_calls"] == len(prunes)
    assert out["usage"]["policy_tokens"] > 0


async def test_beam_search_lookahead_real(policy):
    graph = create_beam_search(
        policy, ArithmeticVerifier(), lookahead=1, **{**SEARCH, "max_iterations": 2}
    )
    out, events = await collect(graph)
    iterations = len([e for e in events if e["type"] == "prune"])
    assert out["usage"]["policy_calls"] > iterations  # rollouts were generated and scored
    assert len(out["candidates"]) == 4


async def test_dvts_real(policy):
    out, events = await collect(create_dvts(policy, ArithmeticVerifier(), **SEARCH))
    assert len(out["candidates"]) == 4
    assert {e["group"] for e in events if e["type"] == "prune"} == {0, 1}
    assert all(c["finish_reason"] in {"stop", "length"} for c in out["candidates"])


async def test_self_refine_real(policy):
    graph = create_self_refine(
        policy, ArithmeticVerifier(), rounds=1, chains=2, max_tokens=120, critique_tokens=64, seed=0
    )
    out, events = await collect(graph)
    assert len(out["candidates"]) == 4
    assert [e["type"] for e in events].count("critique") == 2
    assert out["usage"]["policy_calls"] == 3
