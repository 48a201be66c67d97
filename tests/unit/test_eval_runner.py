"""The runner with protocol-level fakes: rows per problem and budget, concurrency, failures."""

import asyncio
import json
import re

import pytest

from langgraph_ttc.eval.budgets import plan_runs
from langgraph_ttc.eval.datasets import Problem
from langgraph_ttc.eval.graphs import build_graph
from langgraph_ttc.eval.results import ResultsLog
from langgraph_ttc.eval.runner import done_keys, pending_work, run_eval
from tests.fakes import KeywordPRM, ScriptedPolicy

PROBLEMS = [Problem(str(i), f"What is {i} + {i}?", str(2 * i)) for i in range(1, 6)]


def solver(request, i):
    """Greedy and sample 0 get it right; other samples write a wrong answer, scored low."""
    a = int(re.search(r"What is (\d+) \+", request.messages[-1]["content"]).group(1))
    if request.temperature == 0 or i % 2 == 0:
        return f"{a} + {a} = {2 * a} right\n\n\\boxed{{{2 * a}}}"
    return f"{a} + {a} = {2 * a + 1} wrong\n\n\\boxed{{{2 * a + 1}}}"


class SlowPolicy(ScriptedPolicy):
    """Sleeps in generate and records how many calls were in flight at once."""

    def __init__(self, script, delay=0.02, fail_on=None, fatal_on=None):
        super().__init__(script)
        self.delay, self.fail_on, self.fatal_on = delay, fail_on, fatal_on
        self.in_flight = self.peak = 0

    async def generate(self, requests):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            fail_as_scripted(requests, self.fail_on, self.fatal_on)
            return await super().generate(requests)
        finally:
            self.in_flight -= 1


def fail_as_scripted(requests, fail_on: str | None, fatal_on: str | None) -> None:
    """A policy call on a prompt containing `fail_on` fails (isolated); `fatal_on`: the engine
    "dies" (EngineGone)."""
    content = requests[0].messages[-1]["content"]
    if fail_on and fail_on in content:
        raise RuntimeError("policy failed on this prompt")
    if fatal_on and fatal_on in content:
        raise EngineGone("engine died")


class EngineGone(RuntimeError):
    pass


def graphs_for(specs, policy, prm=None):
    prm = prm or KeywordPRM({"right": 0.9, "wrong": 0.2})
    settings = {"max_tokens": 64, "seed": 0}
    return {s.key: build_graph(s, policy, prm, settings) for s in specs}


async def test_rows_for_every_problem_and_budget_with_bounded_concurrency(tmp_path):
    specs = plan_runs(["greedy", "best_of_n"], [1, 2, 4], beam_width=2)
    policy = SlowPolicy(solver)
    log = ResultsLog(tmp_path / "results.jsonl")
    work = pending_work(PROBLEMS, specs, set())
    written = await run_eval(work, graphs_for(specs, policy), log, concurrency=3, progress=False)
    rows, _ = log.read()
    assert written == len(rows) == 5 * (1 + 3)
    assert {(r["strategy"], r["budget"]) for r in rows} == {
        ("greedy", 1),
        ("best_of_n", 1),
        ("best_of_n", 2),
        ("best_of_n", 4),
    }
    assert policy.peak == 3  # at most --concurrency problems in flight, and batched
    assert sum(len(call) for call in policy.calls) == 5 * 2  # best-of-N ran once, at N=4
    bon4 = next(r for r in rows if r["strategy"] == "best_of_n" and r["budget"] == 4)
    assert len(bon4["candidates"]) == 4 and bon4["run_n"] == 4
    assert [c["correct"] for c in bon4["candidates"]] == [True, False, True, False]
    assert bon4["correct"] == {"naive": True, "weighted": True, "majority": True}
    assert (
        bon4["tokens"]
        == bon4["usage"]["policy_tokens"]
        == sum(c["num_tokens"] for c in bon4["candidates"])
    )
    bon2 = next(
        r for r in rows if r["strategy"] == "best_of_n" and r["budget"] == 2 and r["id"] == "3"
    )
    assert [c["answer"] for c in bon2["candidates"]] == ["6", "7"] and bon2["reference"] == "6"
    assert bon2["predictions"]["naive"] == "6" and bon2["wall_time_s"] > 0
    assert all(r["error"] is None for r in rows)


async def test_a_failing_problem_is_an_error_row_and_the_rest_run(tmp_path):
    specs = plan_runs(["best_of_n"], [2], beam_width=2)
    policy = SlowPolicy(solver, fail_on="What is 2 +")
    log = ResultsLog(tmp_path / "results.jsonl")
    await run_eval(
        pending_work(PROBLEMS, specs, set()),
        graphs_for(specs, policy),
        log,
        concurrency=2,
        progress=False,
    )
    rows, _ = log.read()
    assert len(rows) == 5
    failed = [r for r in rows if r["error"]]
    assert [r["id"] for r in failed] == ["2"] and "policy failed" in failed[0]["error"]
    assert failed[0]["correct"] == {"naive": False, "weighted": False, "majority": False}


async def test_a_fatal_error_stops_the_run_and_keeps_finished_rows(tmp_path):
    specs = plan_runs(["best_of_n"], [1], beam_width=2)
    policy = SlowPolicy(solver, fatal_on="What is 3 +")
    log = ResultsLog(tmp_path / "results.jsonl")
    with pytest.raises(EngineGone):
        await run_eval(
            pending_work(PROBLEMS, specs, set()),
            graphs_for(specs, policy),
            log,
            concurrency=1,
            fatal=(EngineGone,),
            progress=False,
        )
    rows, _ = log.read()
    assert [r["id"] for r in rows] == ["1", "2"]
    # resuming runs only what is missing
    remaining = pending_work(PROBLEMS, specs, done_keys(rows))
    assert [w.problem.id for w in remaining] == ["3", "4", "5"]


async def test_pending_work_asks_only_for_missing_budgets():
    specs = plan_runs(["best_of_n"], [1, 2, 4], beam_width=2)
    done = {("best_of_n", 1, "1"), ("best_of_n", 2, "1"), ("best_of_n", 4, "2")}
    work = pending_work(PROBLEMS[:2], specs, done)
    assert [(w.problem.id, w.budgets) for w in work] == [("1", (4,)), ("2", (1, 2))]


async def test_search_and_refinement_strategies_run_through_the_harness(tmp_path):
    specs = plan_runs(["beam_search", "dvts", "self_refine"], [1, 2], beam_width=2)
    policy = SlowPolicy(solver, delay=0)
    log = ResultsLog(tmp_path / "results.jsonl")
    await run_eval(
        pending_work(PROBLEMS[:2], specs, set()),
        graphs_for(specs, policy),
        log,
        concurrency=4,
        progress=False,
    )
    rows, _ = log.read()
    assert sorted((r["strategy"], r["budget"], r["id"]) for r in rows) == [
        (s, k, p)
        for s in ("beam_search", "dvts", "self_refine")
        for k in (1, 2)
        for p in ("1", "2")
    ]
    refined = [r for r in rows if r["strategy"] == "self_refine"]
    # every version of every chain is a candidate: chains x (1 draft + 2 revisions)
    assert sorted(len(r["candidates"]) for r in refined) == [3, 3, 6, 6]
    assert all(r["error"] is None and r["candidates"] for r in rows), json.dumps(rows)[:500]
