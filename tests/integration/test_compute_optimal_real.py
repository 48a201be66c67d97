"""Particle filtering, adaptive majority and the compute-optimal router on the real engine
(small: n=4, at most 96 tokens per solution, one problem)."""

import pytest
from pydantic import TypeAdapter

from langgraph_ttc import (
    create_adaptive_majority,
    create_compute_optimal,
    create_particle_filtering,
)
from langgraph_ttc.events import ProgressEvent
from langgraph_ttc.verifiers import ArithmeticVerifier

pytestmark = pytest.mark.integration
PROBLEM = "A baker has 15 cakes and sells 6. How many cakes are left?"


async def collect(graph, **context):
    events, out = [], {}
    async for namespace, mode, chunk in graph.astream(
        {"problem": PROBLEM}, context=context, stream_mode=["custom", "values"], subgraphs=True
    ):
        if mode == "custom":
            TypeAdapter(ProgressEvent).validate_python(chunk)
            events.append(chunk)
        elif not namespace:
            out = chunk
    return out, events


async def test_particle_filtering_real(policy):
    graph = create_particle_filtering(
        policy, ArithmeticVerifier(), n=4, max_iterations=3, max_step_tokens=40, max_tokens=96
    )
    out, events = await collect(graph, seed=0)
    assert out["candidates"] and all(c["finish_reason"] for c in out["candidates"])
    prunes = [e for e in events if e["type"] == "prune"]
    assert prunes and out["usage"]["policy_calls"] == len(prunes)  # one call per step
    assert out["solution"] in [c["text"] for c in out["candidates"]]


async def test_adaptive_majority_real(policy):
    graph = create_adaptive_majority(policy, n=4, batch_size=2, max_tokens=96, seed=0)
    out, _ = await collect(graph)
    assert out["usage"]["samples"] in (2, 4)
    assert out["usage"]["samples"] == len(out["candidates"])
    assert out["usage"]["policy_calls"] == out["usage"]["samples"] // 2


async def test_router_real_stays_within_its_budget(policy):
    table = {
        "bins": [0.75],
        "routes": {
            "4": [
                {"strategy": "particle_filtering", "settings": {"n": 4, "max_iterations": 2}},
                {"strategy": "adaptive_majority", "settings": {"n": 4, "batch_size": 2}},
            ]
        },
    }
    graph = create_compute_optimal(
        policy, ArithmeticVerifier(), table=table, probe_n=2, max_tokens=96, seed=0
    )
    out, events = await collect(graph, budget_tokens=4 * 96)
    (route,) = [e for e in events if e["type"] == "route"]
    assert route["route"] in ("particle_filtering", "adaptive_majority")
    assert any(e["strategy"] == route["route"] for e in events if e["type"] == "candidate")
    usage = out["usage"]
    assert usage["budget_tokens"] == 384 and usage["budget_spent"] <= 384
    assert usage["budget_spent"] == usage["policy_tokens"] > 0
    assert len(out["candidates"]) > 2  # the probe's and the routed strategy's
