"""Load-aware admission on the real engine: the sequences vLLM runs follow the target."""

import asyncio

import pytest

from langgraph_ttc.eval.budgets import plan_runs
from langgraph_ttc.eval.datasets import Problem
from langgraph_ttc.eval.graphs import build_graph
from langgraph_ttc.eval.results import ResultsLog
from langgraph_ttc.eval.runner import EvalLoad, pending_work, run_eval

pytestmark = pytest.mark.integration

TARGET, N = 16, 4


async def test_the_engine_runs_about_the_target_and_never_much_more(policy, tmp_path):
    problems = [Problem(str(i), f"What is {i} + {2 * i}? Explain.", str(3 * i)) for i in range(12)]
    specs = plan_runs(["best_of_n"], [N], beam_width=1)
    settings = {"max_tokens": 64, "seed": 0, "selection": "majority"}
    graphs = {s.key: build_graph(s, policy, None, settings) for s in specs}
    log = ResultsLog(tmp_path / "results.jsonl")
    measured = EvalLoad()
    in_flight, running = [], []

    async def watch():
        while True:
            in_flight.append(policy.sequences_in_flight)
            counts = policy.engine_counts()
            if counts is not None:
                running.append(counts.running)
            await asyncio.sleep(0.01)

    watcher = asyncio.ensure_future(watch())
    try:
        written = await run_eval(
            pending_work(problems, specs, set()),
            graphs,
            log,
            progress=False,
            policy=policy,
            target_sequences=TARGET,
            measured=measured,
            sample_interval=0.05,
        )
    finally:
        watcher.cancel()
    rows, _ = log.read()
    assert written == 12 and all(r["error"] is None for r in rows)
    assert running, "vLLM reported no scheduler counts (the stat logger is not installed)"
    # admission keeps what the engine is asked to run within the target (+ one item's n)...
    assert max(in_flight) <= TARGET + N and max(running) <= TARGET + N
    # ... and fills it: at some point the engine itself runs close to the target
    assert max(running) >= TARGET - N
    throughput = measured.summary()
    assert throughput["policy_tokens"] == sum(r["tokens"] for r in rows) > 0
    assert throughput["tok_s"] > 0
    assert throughput["load"]["target_sequences"] == TARGET
    assert 0 < throughput["load"]["max_engine_running"] <= TARGET + N  # the sampler's view
    assert policy.sequences_in_flight == 0
