"""Load-aware admission (eval.scheduler) with fakes whose sequences in flight the tests control."""

import asyncio
import json
import re

import pytest

from langgraph_ttc import cli
from langgraph_ttc.cli import eval as command
from langgraph_ttc.engine import EngineTokens
from langgraph_ttc.eval.budgets import plan_runs
from langgraph_ttc.eval.datasets import Problem
from langgraph_ttc.eval.report import describe_throughput
from langgraph_ttc.eval.results import ResultsLog
from langgraph_ttc.eval.runner import (
    EvalLoad,
    default_concurrency,
    describe_engine,
    pending_work,
    run_eval,
)
from langgraph_ttc.eval.scheduler import (
    Admission,
    LoadSampler,
    ThroughputMeter,
    measured_sequences,
    policy_target,
    run_admitted,
    union_seconds,
)
from langgraph_ttc.policies.base import count_sequences
from tests.fakes import KeywordPRM, ScriptedPolicy
from tests.unit.test_eval_runner import EngineGone, fail_as_scripted, graphs_for, solver


class Engine:
    """A fake engine: `capacity`, and `sequences_in_flight` moved by `generate`/`finish`."""

    def __init__(self, capacity=None):
        self.capacity = capacity
        self.sequences_in_flight = 0
        self.peak = 0
        self.at_start = []  # sequences in flight as each request starts (its own included)

    def generate(self, n):
        self.sequences_in_flight += n
        self.peak = max(self.peak, self.sequences_in_flight)
        self.at_start.append(self.sequences_in_flight)
        count_sequences(n)

    def finish(self, n):
        self.sequences_in_flight -= n
        count_sequences(-n)


async def settle(rounds=10):
    for _ in range(rounds):
        await asyncio.sleep(0.01)


def admission_for(engine, cap=100, target=None):
    return Admission(cap, policy_target(engine, target), measured_sequences(engine))


async def test_admission_fills_free_slots_and_resumes_when_the_load_drops():
    engine = Engine(capacity=10)
    release = {i: asyncio.Event() for i in range(5)}
    started = []

    async def item(i):
        started.append(i)
        engine.generate(4)
        await release[i].wait()
        engine.finish(4)

    admission = admission_for(engine)
    runner = asyncio.ensure_future(
        run_admitted(range(5), item, demand=lambda i: 4, admission=admission, poll_seconds=0.005)
    )
    await settle()
    # 8 < 10: a slot is free, item 2 starts (2 of its samples queue); at 12 item 3 waits
    assert started == [0, 1, 2] and engine.sequences_in_flight == 12
    release[0].set()
    await settle()
    assert started == [0, 1, 2, 3] and engine.sequences_in_flight == 12
    release[1].set()
    await settle()
    assert started == [0, 1, 2, 3, 4]
    for i in (2, 3, 4):
        release[i].set()
    await runner
    assert engine.peak == 12 and engine.sequences_in_flight == 0


async def test_the_samples_an_item_finishes_early_make_room_for_the_next():
    """A best-of-N item whose first samples finished holds only its straggler."""
    engine = Engine(capacity=8)
    straggler = asyncio.Event()
    started = []

    async def item(i):
        started.append(i)
        engine.generate(4)
        await asyncio.sleep(0.01)
        engine.finish(3)  # three samples stop early, one runs on
        await straggler.wait()
        engine.finish(1)

    runner = asyncio.ensure_future(
        run_admitted(range(4), item, demand=lambda i: 4, admission=admission_for(engine))
    )
    await settle()
    # nominal 4 x 4 = 16 <= 2 x 8, while the engine runs 4 stragglers
    assert started == [0, 1, 2, 3] and engine.sequences_in_flight == 4
    straggler.set()
    await runner


async def test_an_item_that_has_not_sent_a_request_counts_at_its_demand():
    engine = Engine(capacity=8)
    go = asyncio.Event()
    started = []

    async def item(i):
        started.append(i)
        await go.wait()  # still preparing: no request yet

    runner = asyncio.ensure_future(
        run_admitted(range(4), item, demand=lambda i: 4, admission=admission_for(engine))
    )
    await settle()
    assert started == [0, 1]  # reserved 4 + 4: the target is reached before anything runs
    go.set()
    await runner
    assert started == [0, 1, 2, 3]


async def test_a_step_search_scoring_its_beams_lets_another_item_generate():
    engine = Engine(capacity=8)
    events = []

    async def step_search(i):
        for step in range(2):
            engine.generate(8)
            events.append((i, "generate", step))
            await asyncio.sleep(0.02)
            engine.finish(8)
            events.append((i, "score", step))
            await asyncio.sleep(0.05)  # beams being scored: no sequences in flight

    await run_admitted(range(2), step_search, demand=lambda i: 8, admission=admission_for(engine))
    first_of_1 = events.index((1, "generate", 0))
    assert events[first_of_1 - 1] == (0, "score", 0)  # admitted while item 0 scored
    assert events.index((0, "score", 1)) > first_of_1  # ... long before item 0 finished
    assert engine.peak <= 16  # at most one engine-full queued when both resume


async def test_nominal_headroom_bounds_items_that_are_all_between_generations():
    engine = Engine(capacity=4)
    go = asyncio.Event()
    started = []

    async def idle_after_first_step(i):
        started.append(i)
        engine.generate(4)
        engine.finish(4)
        await go.wait()

    runner = asyncio.ensure_future(
        run_admitted(
            range(5), idle_after_first_step, demand=lambda i: 4, admission=admission_for(engine)
        )
    )
    await settle()
    assert started == [0, 1]  # load 0, but nominal 2 x 4 = 2 x target
    go.set()
    await runner


async def test_never_more_items_than_the_cap():
    engine = Engine(capacity=1000)
    in_flight = peak = 0

    async def item(i):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        engine.generate(1)
        await asyncio.sleep(0.01)
        engine.finish(1)
        in_flight -= 1

    admission = admission_for(engine, cap=3)
    await run_admitted(range(12), item, demand=lambda i: 1, admission=admission)
    assert peak == 3


async def test_an_item_larger_than_the_target_runs_alone():
    engine = Engine(capacity=4)
    running = []
    overlap = []

    async def item(i):
        overlap.append(len(running))
        running.append(i)
        engine.generate(16)
        await asyncio.sleep(0.01)
        engine.finish(16)
        running.remove(i)

    await run_admitted(range(3), item, demand=lambda i: 16, admission=admission_for(engine))
    assert overlap == [0, 0, 0] and engine.peak == 16


def test_targets_and_defaults():
    assert policy_target(Engine(capacity=128)) == 128
    assert policy_target(Engine(capacity=128), 16) == 16
    assert policy_target(ScriptedPolicy(solver)) is None  # no capacity: no target
    assert measured_sequences(ScriptedPolicy(solver)) is None
    assert default_concurrency(None) == 8 and default_concurrency(128) == 64
    with pytest.raises(ValueError, match=">= 1"):
        policy_target(None, 0)
    with pytest.raises(ValueError, match="concurrency"):
        Admission(0)


def test_without_a_measure_the_load_is_the_nominal_demand():
    admission = Admission(10, target=8)  # e.g. --target-sequences for an HTTP backend
    assert admission.admits(8)
    admission.running[0] = type("R", (), {"demand": 6})()
    assert admission.load == 6 and admission.admits(4)  # a slot is free
    admission.running[1] = type("R", (), {"demand": 2})()
    assert admission.load == 8 and not admission.admits(1)


class CountingPolicy(ScriptedPolicy):
    """A scripted policy with an engine's counters: each request holds its n samples for
    `delay` seconds; failures as in test_eval_runner's SlowPolicy."""

    def __init__(self, capacity, delay=0.02, fail_on=None, fatal_on=None):
        super().__init__(solver)
        self.engine = Engine(capacity)
        self.delay, self.fail_on, self.fatal_on = delay, fail_on, fatal_on

    @property
    def capacity(self):
        return self.engine.capacity

    @property
    def sequences_in_flight(self):
        return self.engine.sequences_in_flight

    async def generate(self, requests):
        n = sum(r.n for r in requests)
        self.engine.generate(n)
        content = requests[0].messages[-1]["content"]
        try:
            await (self.delay(content) if callable(self.delay) else asyncio.sleep(self.delay))
            fail_as_scripted(requests, self.fail_on, self.fatal_on)
            return await super().generate(requests)
        finally:
            self.engine.finish(n)


PROBLEMS = [Problem(str(i), f"What is {i} + {i}?", str(2 * i)) for i in range(1, 13)]


async def test_run_eval_fills_the_engine_to_the_target_through_the_graphs(tmp_path):
    policy = CountingPolicy(capacity=8)
    specs = plan_runs(["best_of_n"], [4], beam_width=2)
    log = ResultsLog(tmp_path / "results.jsonl")
    measured = EvalLoad()
    written = await run_eval(
        pending_work(PROBLEMS, specs, set()),
        graphs_for(specs, policy),
        log,
        progress=False,
        policy=policy,
        measured=measured,
        sample_interval=0.005,
    )
    assert written == 12 and policy.engine.peak == 8
    throughput = measured.summary(peak_tok_s=100.0)
    rows, _ = log.read()
    assert throughput["policy_tokens"] == sum(r["tokens"] for r in rows) > 0
    assert throughput["per_strategy"]["best_of_n"]["policy_tokens"] == throughput["policy_tokens"]
    assert throughput["utilisation"] == pytest.approx(throughput["tok_s"] / 100.0, abs=1e-3)
    load = throughput["load"]
    assert load["target_sequences"] == 8 and load["cap"] == 64
    assert load["steady_samples"] > 0 and load["mean_sequences_in_flight"] <= 8


async def test_a_graph_runs_requests_reach_its_tally_so_a_finished_place_is_refilled(tmp_path):
    """Problem 1 finishes while problem 2 still generates: problem 3 takes problem 1's place at
    once. Without the graph's requests reaching the run's tally (through LangGraph's tasks),
    the generating problem 2 would count twice (measured + not started) and 3 would wait."""
    gates = {number: asyncio.Event() for number in range(1, 4)}

    def gate(text):
        return gates[int(re.search(r"What is (\d+) \+", text).group(1))].wait()

    policy = CountingPolicy(capacity=8, delay=gate)
    specs = plan_runs(["best_of_n"], [4], beam_width=2)
    log = ResultsLog(tmp_path / "results.jsonl")
    runner = asyncio.ensure_future(
        run_eval(
            pending_work(PROBLEMS[:3], specs, set()),
            graphs_for(specs, policy),
            log,
            progress=False,
            policy=policy,
        )
    )
    await settle()
    assert policy.engine.at_start == [4, 8]  # problems 1 and 2 fill the target
    gates[1].set()
    for _ in range(100):  # problem 1's rows are graded in a thread
        await asyncio.sleep(0.02)
        if len(policy.engine.at_start) == 3:
            break
    assert policy.engine.at_start == [4, 8, 8]  # problem 3 started beside problem 2
    gates[2].set(), gates[3].set()
    assert await runner == 3


async def test_under_admission_a_failure_is_a_row_and_a_fatal_error_stops(tmp_path):
    specs = plan_runs(["best_of_n"], [2], beam_width=2)
    policy = CountingPolicy(capacity=4, fail_on="What is 2 +")
    log = ResultsLog(tmp_path / "results.jsonl")
    work = pending_work(PROBLEMS[:5], specs, set())
    await run_eval(work, graphs_for(specs, policy), log, progress=False, policy=policy)
    rows, _ = log.read()
    assert len(rows) == 5 and [r["id"] for r in rows if r["error"]] == ["2"]

    policy = CountingPolicy(capacity=4, fatal_on="What is 3 +")
    log = ResultsLog(tmp_path / "fatal.jsonl")
    with pytest.raises(EngineGone):
        await run_eval(
            work, graphs_for(specs, policy), log, progress=False, policy=policy, fatal=(EngineGone,)
        )
    rows, _ = log.read()
    assert "3" not in {r["id"] for r in rows} and len(rows) < 5
    assert policy.engine.sequences_in_flight == 0  # the others were cancelled, not leaked


async def test_a_policy_without_capacity_keeps_the_fixed_number_of_problems(tmp_path):
    in_flight = peak = 0

    class Counted(ScriptedPolicy):
        async def generate(self, requests):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return await super().generate(requests)

    policy = Counted(solver)
    specs = plan_runs(["best_of_n"], [4], beam_width=2)
    work = pending_work(PROBLEMS, specs, set())
    log = ResultsLog(tmp_path / "results.jsonl")
    await run_eval(work, graphs_for(specs, policy), log, progress=False, policy=policy)
    assert peak == 8  # default_concurrency(None): 8 problems, whatever their n


def test_union_of_intervals_and_per_strategy_rates():
    assert union_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == 4
    meter = ThroughputMeter(started=0.0, ended=10.0)
    meter.record("greedy", 0.0, 2.0, 100)
    meter.record("best_of_n", 1.0, 6.0, 400)
    meter.record("best_of_n", 4.0, 9.0, 400)
    summary = meter.summary(peak_tok_s=200.0)
    assert summary["tok_s"] == 90.0 and summary["utilisation"] == 0.45
    assert summary["per_strategy"]["best_of_n"] == {
        "policy_tokens": 800,
        "active_s": 8.0,
        "tok_s": 100.0,
    }
    assert meter.summary()["utilisation"] is None


async def test_the_sampler_summarises_the_steady_state_only():
    engine = Engine(capacity=10)
    admission = admission_for(engine)
    sampler = LoadSampler(admission, engine)
    admission.queued = 3
    engine.sequences_in_flight = 2
    sampler.samples.append(sampler.sample(0.0))
    engine.sequences_in_flight = 8
    sampler.samples.append(sampler.sample(0.0))
    admission.queued = 0  # the tail: not counted
    engine.sequences_in_flight = 0
    sampler.samples.append(sampler.sample(0.0))
    summary = sampler.summary()
    assert summary["steady_samples"] == 2 and summary["mean_sequences_in_flight"] == 5.0
    assert summary["share_below_half_target"] == 0.5  # 2 < 5, 8 >= 5
    assert summary["mean_engine_running"] is None  # the fake has no engine counters


def test_ttc_eval_records_throughput_in_summary_and_table(tmp_path, monkeypatch, capsys):
    dataset = tmp_path / "d.jsonl"
    dataset.write_text(
        "".join(json.dumps({"problem": p.problem, "answer": p.answer}) + "\n" for p in PROBLEMS[:2])
    )
    policy = CountingPolicy(capacity=16, delay=0)
    monkeypatch.setattr(command, "make_backends", lambda args: (policy, KeywordPRM({})))
    out = tmp_path / "out"
    argv = ["eval", "--dataset", str(dataset), "--n", "2", "--out", str(out), "--peak-tok-s", "50"]
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    throughput = summary["throughput"]
    assert summary["invocations"][-1]["throughput"] == throughput
    assert throughput["peak_tok_s"] == 50 and throughput["policy_tokens"] > 0
    assert summary["results"][0]["errors"] == 0
    assert set(throughput["per_strategy"]) == {"greedy", "best_of_n"}
    assert throughput["load"]["target_sequences"] == 16 and throughput["load"]["cap"] == 64
    table = (out / "table.txt").read_text()
    assert f"= {throughput['tok_s']:.1f} tok/s" in table and "of the engine's peak 50" in table
    err = capsys.readouterr().err
    assert "admission: up to 64 problems in flight" in err
    assert (out / "load.png").read_bytes()[:4] == b"\x89PNG" and "engine load plot" in err


async def test_verifier_collection_is_admitted_by_the_same_rule(tmp_path):
    from langgraph_ttc.strategies.settings import StrategySettings
    from langgraph_ttc.training.collect import CollectSettings, collect_log, run_collect

    gates = {number: asyncio.Event() for number in range(1, 4)}

    def gate(text):
        return gates[int(re.search(r"What is (\d+) \+", text).group(1))].wait()

    policy = CountingPolicy(capacity=8, delay=gate)
    log = collect_log(tmp_path / "candidates.jsonl")
    runner = asyncio.ensure_future(
        run_collect(
            PROBLEMS[:3],
            policy,
            StrategySettings(n=4, max_tokens=64),
            CollectSettings(n=4),
            log,
            progress=False,
        )
    )
    await settle()
    assert policy.engine.at_start == [4, 8]  # n=4 each: the third waits for room
    gates[1].set()
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(policy.engine.at_start) == 3:
            break
    assert policy.engine.at_start == [4, 8, 8]
    gates[2].set(), gates[3].set()
    assert await runner == 3 and len(log.read()[0]) == 3 * 4


def test_the_throughput_lines_name_the_steady_state_or_its_absence():
    base = {"policy_tokens": 900, "run_s": 3.0, "tok_s": 300.0, "peak_tok_s": 600.0}
    load = {
        "steady_samples": 10,
        "target_sequences": 128,
        "mean_engine_running": 100.0,
        "share_below_half_target": 0.1,
        "mean_items": 20.0,
    }
    text = describe_throughput({**base, "utilisation": 0.5, "load": load})
    assert "= 300.0 tok/s, 50% of the engine's peak 600 tok/s" in text
    assert "100.0 sequences running on average (target 128), below half the target in 10%" in text
    burst = {**load, "steady_samples": 0, "mean_engine_running_whole_run": 40.0}
    text = describe_throughput({**base, "utilisation": None, "load": burst})
    assert "pass --peak-tok-s" in text and "admitted at once" in text and "40.0" in text
    assert "prefilled" not in text  # no engine counters: no engine-work line
    engine = describe_engine(EngineTokens(prompt_computed=300, prompt_cached=900, generated=900))
    text = describe_throughput({**base, "utilisation": None, "engine": engine})
    assert "300 prompt tokens prefilled (25% of its tokens), 900 read from the prefix" in text


def test_a_dead_verifier_engine_stops_ttc_eval_and_keeps_finished_rows(
    tmp_path, monkeypatch, capsys
):
    from langgraph_ttc.verifiers import VerifierEngineDiedError

    class DyingVerifier:
        """Scores until problem 3, where its engine "dies"."""

        async def score(self, problem, steps_per_candidate):
            if problem.startswith("What is 3 +"):
                raise VerifierEngineDiedError("the verifier's vLLM engine died: killed")
            return [[0.5] * len(steps) for steps in steps_per_candidate]

    dataset = tmp_path / "d.jsonl"
    dataset.write_text(
        "".join(json.dumps({"problem": p.problem, "answer": p.answer}) + "\n" for p in PROBLEMS[:5])
    )
    policy = CountingPolicy(capacity=16, delay=0)
    monkeypatch.setattr(command, "make_backends", lambda args: (policy, DyingVerifier()))
    out = tmp_path / "out"
    argv = ["eval", "--dataset", str(dataset), "--strategy", "best_of_n", "--n", "2"]
    assert cli.main([*argv, "--out", str(out), "--concurrency", "1"]) != 0
    assert "the verifier's vLLM engine died" in capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    scored = [r for r in rows if r["strategy"] == "best_of_n"]
    assert [r["id"] for r in scored] == ["0", "1"]  # finished before the death, kept
    assert all(r["error"] is None for r in rows)  # no row records the dead engine as its own
