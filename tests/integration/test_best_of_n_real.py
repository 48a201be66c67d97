"""Best-of-N end to end on the real engine with the arithmetic verifier."""

import json
import os
import subprocess
import sys

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph

from langgraph_ttc import create_best_of_n
from langgraph_ttc.verifiers import ArithmeticVerifier

pytestmark = pytest.mark.integration
PROBLEM = "Tom has 12 apples and buys 7 more. How many apples does he have now?"


async def test_best_of_n_end_to_end(policy):
    graph = create_best_of_n(policy, ArithmeticVerifier(), n=6, max_tokens=160, seed=0)
    events = []
    out = {}
    async for mode, chunk in graph.astream({"problem": PROBLEM}, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            out = chunk
    candidates = out["candidates"]
    assert len(candidates) == 6
    assert out["usage"]["policy_tokens"] == sum(c["num_tokens"] for c in candidates) > 0
    assert out["usage"]["prm_calls"] >= 1
    for c in candidates:
        assert 0.0 <= c["score"] <= 1.0 and len(c["step_scores"]) >= 1
    assert out["solution"] in [c["text"] for c in candidates]
    chosen = next(c for c in candidates if c["text"] == out["solution"])
    assert out["answer"] == chosen["answer"]
    kinds = [e["type"] for e in events]
    assert kinds.count("candidate") == 6 and kinds.count("score") == 6
    assert kinds[-1] == "selected" and "generation" in kinds


async def test_seeded_runs_reproduce(policy):
    graph = create_best_of_n(policy, ArithmeticVerifier(), n=3, max_tokens=64, seed=5)
    first = await graph.ainvoke({"problem": PROBLEM})
    second = await graph.ainvoke({"problem": PROBLEM})
    assert [c["text"] for c in first["candidates"]] == [c["text"] for c in second["candidates"]]


async def test_concurrent_runs_share_one_engine(policy, monkeypatch):
    import asyncio

    from vllm.v1.engine.async_llm import AsyncLLM

    engine_starts = []
    original_start = AsyncLLM.from_engine_args
    monkeypatch.setattr(
        AsyncLLM,
        "from_engine_args",
        lambda *a, **k: engine_starts.append(a) or original_start(*a, **k),
    )
    engine = policy.engine
    graph = create_best_of_n(policy, None, n=2, selection="majority", max_tokens=32)

    async def peak_engine_load(runs):
        """Most requests the engine held at once while `runs` ran (sampled every 10 ms)."""
        peak = 0
        task = asyncio.ensure_future(asyncio.gather(*runs))
        while not task.done():
            peak = max(peak, policy.num_unfinished_requests)
            await asyncio.sleep(0.01)
        return peak, await task

    def run(i):
        return graph.ainvoke({"problem": f"What is {i} + {i}?"}, {"configurable": {"seed": i}})

    # vLLM counts each parallel sample as a request: one run alone sets the baseline
    alone, _ = await peak_engine_load([run(0)])
    together, outs = await peak_engine_load([run(i) for i in range(4)])
    assert alone >= 1
    assert together > alone, f"runs did not overlap on the engine: peak {together} vs {alone}"
    assert all(len(o["candidates"]) == 2 and o["usage"]["policy_tokens"] > 0 for o in outs)
    assert policy.engine is engine and engine_starts == []


async def test_as_node_in_messages_agent(policy):
    parent = StateGraph(MessagesState)
    parent.add_node("reason", create_best_of_n(policy, ArithmeticVerifier(), n=2, max_tokens=64))
    parent.add_edge(START, "reason")
    out = await parent.compile().ainvoke({"messages": [HumanMessage(PROBLEM)]})
    assert [type(m) for m in out["messages"]] == [HumanMessage, AIMessage]
    assert out["messages"][-1].content


def test_cli_solve_json():
    """The `ttc solve` command users run, as a subprocess with its own engine."""
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "langgraph_ttc.cli",
            "solve",
            "What is 12 + 7?",
            "--n",
            "2",
            "--max-tokens",
            "48",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    output = json.loads(result.stdout)
    assert set(output) == {"answer", "solution", "candidates", "usage"}
    assert len(output["candidates"]) == 2
    assert "engine ready" in result.stderr and "tok/s" in result.stderr
