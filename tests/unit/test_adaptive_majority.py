import itertools

import pytest
from pydantic import TypeAdapter

from langgraph_ttc import create_adaptive_majority
from langgraph_ttc.events import ProgressEvent
from langgraph_ttc.strategies.adaptive_majority import is_decisive, leader_probability
from tests.fakes import KeywordPRM, ScriptedPolicy, cycling


def answer(value, word="ok"):
    return f"Step {word}\n\n\\boxed{{{value}}}"


def test_leader_probability_is_the_beta_tail():
    # Beta(a + 1, b + 1) at integer votes: P(p > 1/2) = P(Binomial(a + b + 1, 1/2) <= a)
    assert leader_probability(4, 0) == pytest.approx(1 - 0.5**5)
    assert leader_probability(5, 1) == pytest.approx(1 - 8 / 128)
    assert leader_probability(2, 2) == pytest.approx(0.5)
    assert leader_probability(2.5, 0.5) > leader_probability(2, 1)


def test_stopping_rule_thresholds():
    assert not is_decisive([3.0], 0.95)  # 0.9375
    assert is_decisive([4.0], 0.95)  # 0.969
    assert not is_decisive([5.0, 1.0], 0.95)
    assert is_decisive([6.0, 1.0], 0.95)
    assert not is_decisive([], 0.95)


async def test_unanimous_samples_stop_after_the_first_round():
    policy = cycling([answer(7)])
    graph = create_adaptive_majority(policy, n=16, batch_size=4, seed=3)
    out = await graph.ainvoke({"problem": "p"})
    assert out["answer"] == "7"
    assert len(policy.calls) == 1 and policy.calls[0][0].n == 4
    assert out["usage"]["samples"] == 4 == len(out["candidates"])


async def test_split_votes_sample_up_to_n():
    policy = cycling([answer(1), answer(2)])
    graph = create_adaptive_majority(policy, n=10, batch_size=4, seed=3)
    events = []
    out = {}
    async for mode, chunk in graph.astream({"problem": "p"}, stream_mode=["custom", "values"]):
        (events.append(chunk) if mode == "custom" else None)
        out = chunk if mode == "values" else out
    assert [call[0].n for call in policy.calls] == [4, 4, 2]  # capped at n
    assert [call[0].seed for call in policy.calls] == [3, 7, 11]  # seed + samples drawn
    assert out["usage"]["samples"] == 10
    for event in events:
        TypeAdapter(ProgressEvent).validate_python(event)
    assert sum(e["type"] == "candidate" for e in events) == 10


async def test_verifier_weighted_votes_stop_sooner_on_a_trusted_answer():
    # 2 of 3 samples say 5 with high scores: counts (2 vs 1) are not decisive, weights are
    texts = [answer(5, "sure"), answer(5, "sure"), answer(6, "weak")]
    prm = KeywordPRM({"sure": 1.0, "weak": 0.01, "boxed": 1.0})
    counted = create_adaptive_majority(cycling(texts), prm, n=6, batch_size=3, selection="majority")
    weighted = create_adaptive_majority(
        cycling(texts), prm, n=6, batch_size=3, confidence=0.8, aggregation="min"
    )
    assert (await counted.ainvoke({"problem": "p"}))["usage"]["samples"] == 6
    out = await weighted.ainvoke({"problem": "p"})
    assert out["usage"]["samples"] == 3 and out["answer"] == "5"


async def test_budget_stops_the_rounds():
    policy = cycling([answer(1), answer(2)])
    graph = create_adaptive_majority(policy, n=16, batch_size=2, max_tokens=10, budget_tokens=45)
    out = await graph.ainvoke({"problem": "p"})
    assert out["usage"]["budget_spent"] <= 45
    assert out["usage"]["samples"] < 16
    assert out["usage"]["budget_tokens"] == 45


@pytest.mark.parametrize("batch_size", [16, 4])
async def test_a_budget_paying_one_sample_a_round_ends_normally(batch_size):
    # disagreeing short samples: the budget (199 at max_tokens 100) pays one sample a round,
    # and 16 one-sample rounds overran the recursion limit (GraphRecursionError)
    drawn = itertools.count()
    policy = ScriptedPolicy(lambda request, i: answer(next(drawn)))  # every sample differs
    graph = create_adaptive_majority(
        policy, n=16, batch_size=batch_size, max_tokens=100, budget_tokens=199
    )
    out = await graph.ainvoke({"problem": "p"})
    assert out["usage"]["budget_spent"] <= 199 and 1 <= out["usage"]["samples"] < 16
    # a per-run budget too: no recursion limit to raise
    unbudgeted = create_adaptive_majority(policy, n=16, batch_size=batch_size, max_tokens=100)
    out = await unbudgeted.ainvoke({"problem": "p"}, context={"budget_tokens": 199})
    assert out["usage"]["budget_spent"] <= 199
