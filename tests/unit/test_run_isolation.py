"""Faulty backends get clear errors or isolated failures; cancelling a run always cancels it."""

import asyncio
import time

import pytest

from langgraph_ttc import create_best_of_n, create_self_refine
from langgraph_ttc.strategies import PolicyContractError, PolicyTimeoutError
from langgraph_ttc.types import Completion
from tests.fakes import KeywordPRM, ScriptedPolicy, seeded_arithmetic


class WrongCountPolicy:
    def __init__(self, extra):
        self.extra = extra

    async def generate(self, requests):
        done = Completion("x \\boxed{1}", "stop", None, 3)
        return [[done] * (r.n + self.extra) for r in requests]


@pytest.mark.parametrize("extra", [-1, 1])
async def test_wrong_number_of_completions_is_a_contract_error(extra):
    graph = create_best_of_n(WrongCountPolicy(extra), None, n=4)
    with pytest.raises(
        PolicyContractError, match=rf"returned {4 + extra} completions for request 0 \(n=4\)"
    ):
        await graph.ainvoke({"problem": "p"})


async def test_none_from_the_policy_is_a_contract_error():
    class NonePolicy:
        async def generate(self, requests):
            return None

    with pytest.raises(PolicyContractError, match="returned NoneType results for 1 requests"):
        await create_best_of_n(NonePolicy(), None, n=2).ainvoke({"problem": "p"})


async def test_a_policy_that_never_answers_times_out():
    class HungPolicy:
        async def generate(self, requests):
            await asyncio.sleep(3600)

    graph = create_best_of_n(HungPolicy(), None, n=2, policy_timeout=0.1)
    started = time.perf_counter()
    with pytest.raises(PolicyTimeoutError, match=r"policy_timeout=0\.1s"):
        await graph.ainvoke({"problem": "p"})
    assert time.perf_counter() - started < 2


class HungPRM:
    def __init__(self):
        self.calls = 0

    async def score(self, problem, solutions):
        self.calls += 1
        await asyncio.sleep(3600)


async def test_a_hung_verifier_costs_one_timeout_per_round_not_one_per_candidate():
    prm = HungPRM()
    graph = create_best_of_n(ScriptedPolicy(seeded_arithmetic), prm, n=8, prm_timeout=0.2)
    out = await graph.ainvoke({"problem": "p"})
    assert prm.calls == 1 and out["usage"]["prm_calls"] == 1  # no retry candidate by candidate
    assert len(out["usage"]["errors"]) == 8 and all(
        "timed out" in e for e in out["usage"]["errors"]
    )
    assert out["answer"] is not None  # the run still selects, from unscored candidates


class NoisyPRM:
    def __init__(self, value):
        self.value = value

    async def score(self, problem, solutions):
        return [[self.value] * len(steps) for steps in solutions]


async def test_float_noise_above_one_is_clipped_not_rejected():
    graph = create_best_of_n(ScriptedPolicy(seeded_arithmetic), NoisyPRM(1 + 1e-12), n=3)
    out = await graph.ainvoke({"problem": "p"})
    assert out["usage"]["errors"] == []
    assert all(c["score"] == 1.0 for c in out["candidates"])


async def test_a_real_out_of_range_score_is_an_isolated_error():
    graph = create_best_of_n(ScriptedPolicy(seeded_arithmetic), NoisyPRM(1.5), n=2)
    out = await graph.ainvoke({"problem": "p"})
    assert len(out["usage"]["errors"]) == 2 and "not in [0, 1]" in out["usage"]["errors"][0]


class SignallingPRM:
    """Answers at once and tells the test it has just answered."""

    def __init__(self):
        self.answered = asyncio.Event()

    async def score(self, problem, solutions):
        await asyncio.sleep(0)
        self.answered.set()
        return [[0.5] * len(steps) for steps in solutions]


async def test_cancelling_right_as_the_verifier_answers_always_cancels():
    cancelled = 0
    for attempt in range(40):
        prm, policy = SignallingPRM(), ScriptedPolicy(seeded_arithmetic)
        graph = create_self_refine(policy, prm, rounds=3, chains=2, seed=attempt)
        task = asyncio.create_task(graph.ainvoke({"problem": "p"}))
        await prm.answered.wait()
        calls_at_cancel = len(policy.calls)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        cancelled += task.cancelled()
        await asyncio.sleep(0.01)
        assert len(policy.calls) == calls_at_cancel  # the run did not go on
    assert cancelled == 40


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prm": object()}, "has no score"),
        ({"policy": object()}, "has no generate"),
        ({"answer_extractor": 3}, "answer_extractor must be callable"),
        ({"step_delimiter": 7}, "step_delimiter"),
        ({"n": 10**9}, "less than or equal to 4096"),
        ({"temperature": float("inf")}, "finite"),
        ({"seed": "x"}, "seed"),
        ({"max_tokens": None}, "max_tokens"),
    ],
)
def test_bad_objects_and_values_fail_at_build_time(kwargs, message):
    args = {"policy": ScriptedPolicy(seeded_arithmetic), "prm": KeywordPRM({}), **kwargs}
    with pytest.raises(ValueError, match=message):
        create_best_of_n(args.pop("policy"), args.pop("prm"), **args)


async def test_a_beam_whose_scoring_failed_loses_its_parents_ranking_score():
    from langgraph_ttc import candidates as cands
    from langgraph_ttc.types import Completion

    parent = {**cands.new_candidate(0), "lookahead_score": 0.9}
    child = cands.grow(parent, 1, Completion("step\n\n", "stop", "\n\n", 2), None)
    assert child["lookahead_score"] == 0.9  # inherited until scored
    failed = cands.with_scores(child, [], "last", error="PRM failed on candidate 1: boom")
    assert "lookahead_score" not in failed and failed["score"] == 0.0


async def test_verifier_errors_name_the_candidate_id_not_its_batch_position():
    graph = create_best_of_n(ScriptedPolicy(seeded_arithmetic), NoisyPRM(1.5), n=2)
    out = await graph.ainvoke({"problem": "p"})
    ids = [c["id"] for c in out["candidates"]]
    assert [e.split(":")[0] for e in out["usage"]["errors"]] == [
        f"PRM failed on candidate {i}" for i in ids
    ]


async def test_slow_answer_comparison_does_not_block_other_runs(monkeypatch):
    import langgraph_ttc.strategies.scaffold as scaffold

    real_select = scaffold.select

    def slow_select(candidates, mode):  # math-verify on a pathological answer, say
        time.sleep(0.6)
        return real_select(candidates, mode)

    monkeypatch.setattr(scaffold, "select", slow_select)
    graph = create_best_of_n(ScriptedPolicy(seeded_arithmetic), None, n=4)
    gaps, running = [], True

    async def heartbeat():
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.gather(*(graph.ainvoke({"problem": f"p{i}"}) for i in range(3)))
    running = False
    await beat
    assert max(gaps) < 0.5  # selection ran off the event loop


@pytest.mark.parametrize(
    ("table", "message"), [(0, "a routing table"), ("no/such.json", "cannot read")]
)
def test_a_bad_routing_table_is_a_clear_error(table, message):
    from langgraph_ttc import create_compute_optimal

    with pytest.raises(ValueError, match=message):
        create_compute_optimal(ScriptedPolicy(seeded_arithmetic), KeywordPRM({}), table=table)
