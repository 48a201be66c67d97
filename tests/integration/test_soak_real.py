"""Soak: 50 concurrent runs on the one engine, a third of them cancelled at random moments.

Afterwards the engine holds no unfinished request, and every run that was not cancelled gave
the same answer and candidates as the same run alone (seeded sampling is batch-independent).
"""

import asyncio
import random

import pytest

from langgraph_ttc import create_beam_search, create_best_of_n
from langgraph_ttc.verifiers import ArithmeticVerifier

pytestmark = pytest.mark.integration
RUNS = 50


def problem(i: int) -> str:
    return f"Sam has {i + 3} marbles and finds {2 * i + 1} more. How many marbles does he have?"


async def test_fifty_concurrent_runs_with_random_cancellations(policy):
    rng = random.Random(0)
    verifier = ArithmeticVerifier()
    graphs = [
        create_best_of_n(policy, verifier, n=2, max_tokens=48, seed=0),
        create_beam_search(
            policy,
            verifier,
            n=2,
            beam_width=2,
            max_iterations=3,
            max_tokens=48,
            max_step_tokens=24,
            seed=0,
        ),
    ]
    runs = [(graphs[i % 2], {"problem": problem(i)}, {"seed": i}) for i in range(RUNS)]
    tasks = [asyncio.create_task(g.ainvoke(inp, context=ctx)) for g, inp, ctx in runs]
    doomed = sorted(rng.sample(range(RUNS), RUNS // 3))

    async def cancel_later(index: int) -> None:
        await asyncio.sleep(rng.uniform(0.0, 4.0))
        tasks[index].cancel()

    await asyncio.gather(*(cancel_later(i) for i in doomed))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    cancelled = [i for i, t in enumerate(tasks) if t.cancelled()]
    failed = [r for r in results if isinstance(r, Exception)]
    assert failed == []
    assert set(cancelled) <= set(doomed) and cancelled  # some cancels landed mid-run
    await asyncio.sleep(0.5)
    assert policy.num_unfinished_requests == 0
    assert policy.sequences_in_flight == 0

    finished = [i for i in range(RUNS) if i not in cancelled]
    for i in finished:  # serially, the engine otherwise idle
        graph, inp, ctx = runs[i]
        alone = await graph.ainvoke(inp, context=ctx)
        assert alone["answer"] == results[i]["answer"], i
        assert [c["text"] for c in alone["candidates"]] == [
            c["text"] for c in results[i]["candidates"]
        ], i
    print(f"soak: {RUNS} runs, {len(cancelled)} cancelled, {len(finished)} equal to a serial run")
