"""Online DeepConf end to end on a real backend: what both policies' real tests check."""

from __future__ import annotations

import math

from langgraph_ttc import create_deepconf
from langgraph_ttc.types import Policy
from tests.fakes import run_streamed


async def check_online_deepconf(policy: Policy, problem: str) -> None:
    """n=4 with a warm-up of 2 and 48 tokens: a threshold from the warm-up, every candidate
    with a confidence, at most the other two samples stopped early, the budget kept."""
    graph = create_deepconf(
        policy,
        n=4,
        mode="online",
        warmup=2,
        batch_size=2,
        window=8,
        keep=0.9,
        max_tokens=48,
        seed=3,
    )
    out, events = await run_streamed(graph, {"problem": problem})
    (threshold,) = [e for e in events if e["type"] == "threshold"]
    assert threshold["warmup"] == 2 and threshold["threshold"] > math.log(20)
    assert out["candidates"] and all("confidence" in c for c in out["candidates"])
    stops = [e for e in events if e["type"] == "early_stop"]
    assert out["usage"]["policy_tokens"] <= 4 * 48 and len(stops) <= 2
