"""budget_tokens: the accounting in the scaffold and every strategy's stop rule."""

import pytest

from langgraph_ttc import (
    create_beam_search,
    create_best_of_n,
    create_dvts,
    create_greedy,
    create_particle_filtering,
    create_self_refine,
)
from langgraph_ttc.errors import BudgetExhaustedError
from langgraph_ttc.strategies import SettingsError
from langgraph_ttc.strategies.budget import Budget, request_cost
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.settings import StrategySettings
from langgraph_ttc.types import GenerationRequest
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, cycling, tree_policy

SOLUTION = "one two three four five six seven eight nine \\\\boxed{9}"  # 10 tokens


def spent_within(out, budget):
    usage = out["usage"]
    assert usage["budget_tokens"] == budget
    assert usage["budget_spent"] == usage["policy_tokens"]
    assert usage["budget_spent"] <= budget
    return usage["budget_spent"]


def test_budget_setting_is_validated():
    assert StrategySettings().budget_tokens is None
    with pytest.raises(SettingsError, match="budget_tokens"):
        StrategySettings(budget_tokens=0)


def test_capped_requests_share_what_is_left():
    budget = Budget(total=100, spent=70)
    requests = [GenerationRequest([], n=2, max_tokens=50), GenerationRequest([], n=1)]
    assert request_cost(requests) == 2 * 50 + 1024
    capped = budget.capped(requests)
    assert [r.max_tokens for r in capped] == [10, 10]  # 30 left over 3 samples
    assert budget.affords(30) and not budget.affords(31)
    assert budget.samples(8, 10) == 3
    assert budget.samples(8, 50) == 1  # one sample, its length capped
    budget.charge(30)
    assert budget.samples(8, 10) == 0 and budget.left == 0
    with pytest.raises(BudgetExhaustedError):
        budget.capped(requests)


async def test_no_budget_reports_none_and_spends_freely():
    out = await create_best_of_n(cycling([SOLUTION]), n=4).ainvoke({"problem": "p"})
    assert out["usage"]["budget_tokens"] is None
    assert out["usage"]["budget_spent"] == out["usage"]["policy_tokens"] == 40


async def test_best_of_n_samples_only_what_the_budget_pays_for():
    policy = cycling([SOLUTION])
    graph = create_best_of_n(policy, n=8, max_tokens=20, budget_tokens=65)
    out = await graph.ainvoke({"problem": "p"})
    assert policy.calls[0][0].n == 3  # 65 // 20
    assert len(out["candidates"]) == 3
    assert spent_within(out, 65) == 30


async def test_budget_is_a_per_run_setting():
    policy = cycling([SOLUTION])
    graph = create_best_of_n(policy, n=8, max_tokens=20)
    out = await graph.ainvoke({"problem": "p"}, context={"budget_tokens": 45})
    assert len(out["candidates"]) == 2
    assert spent_within(out, 45) == 20


async def test_greedy_under_a_tiny_budget_is_cut_to_it():
    policy = cycling([SOLUTION])
    out = await create_greedy(policy, budget_tokens=4).ainvoke({"problem": "p"})
    assert policy.calls[0][0].max_tokens == 4
    assert out["candidates"][0]["finish_reason"] == "length"
    assert spent_within(out, 4) == 4


async def test_beam_search_stops_before_an_expansion_it_cannot_pay_for():
    policy = tree_policy(6, alternating)
    settings = {"n": 4, "beam_width": 2, "max_step_tokens": 5, "seed": 0}
    unlimited = await create_beam_search(policy, KeywordPRM({"good": 0.9})).ainvoke(
        {"problem": "p"}, context=settings
    )
    calls_unlimited = len(policy.calls)
    policy.calls.clear()
    graph = create_beam_search(policy, KeywordPRM({"good": 0.9}), budget_tokens=30, **settings)
    out = await graph.ainvoke({"problem": "p"})
    # an expansion may cost 4 beams x 5 tokens = 20 and spends 4 (one-token steps): after
    # three, 18 tokens are left, less than the next one's cost
    assert calls_unlimited == 7 and len(policy.calls) == 3
    assert spent_within(out, 30) == 12
    assert out["candidates"] and out["usage"]["policy_tokens"] < unlimited["usage"]["policy_tokens"]


async def test_dvts_stops_and_finishes_within_the_budget():
    policy = tree_policy(6, alternating)
    graph = create_dvts(
        policy,
        KeywordPRM({"good": 0.9}),
        n=4,
        beam_width=2,
        max_step_tokens=5,
        seed=0,
        budget_tokens=22,
    )
    out = await graph.ainvoke({"problem": "p"})
    # one expansion (may cost 20, spends 4), then the 2 open subtrees are finished with an
    # equal share of the 18 tokens left
    assert len(policy.calls) == 2
    assert [r.max_tokens for r in policy.calls[1]] == [9, 9]
    assert len(out["candidates"]) == 2
    assert spent_within(out, 22) <= 22


async def test_self_refine_skips_a_round_it_cannot_pay_for():
    policy = cycling([SOLUTION])
    graph = create_self_refine(
        policy, chains=2, rounds=3, max_tokens=20, critique_tokens=10, budget_tokens=100
    )
    out = await graph.ainvoke({"problem": "p"})
    # drafts: 2 x 10 tokens; a round may cost 2 x (10 + 20) = 60: one fits in 80, not two
    assert len(policy.calls) == 3
    assert {c["round"] for c in out["candidates"]} == {0, 1}
    assert spent_within(out, 100) <= 100


async def test_budget_exhausted_mid_run_raises_only_if_a_strategy_ignores_it():
    policy = ScriptedPolicy(lambda request, i: SOLUTION)
    run = Run("t", StrategySettings(budget_tokens=10), "p", policy, None, str, Budget(10))
    ((completion,),), usage = await run.generate([GenerationRequest([], n=1, max_tokens=50)])
    assert policy.calls[0][0].max_tokens == 10 == completion.num_tokens  # capped from 50
    assert usage["budget_spent"] == run.budget.spent == 10
    with pytest.raises(BudgetExhaustedError):
        await run.generate([GenerationRequest([], n=1)])


@pytest.mark.parametrize("create", [create_beam_search, create_dvts, create_particle_filtering])
async def test_a_budgeted_step_search_expands_while_each_step_gets_a_useful_share(create):
    """Steps capped at 100 tokens (most use 1 here) and 200 tokens for 4 beams: counting each
    step at its cap (400 per expansion) stopped the search before its first expansion; now
    every step gets an equal share of what is left (at most 50) while that reaches 32."""
    policy = tree_policy(6, alternating)
    options = {"n": 4, "max_step_tokens": 100, "seed": 0, "budget_tokens": 200}
    if create is not create_particle_filtering:
        options["beam_width"] = 2
    out = await create(policy, KeywordPRM({"good": 0.9}), **options).ainvoke({"problem": "p"})
    assert len(policy.calls) >= 3  # several expansions, not a stop before the first
    assert all(r.max_tokens <= 200 // 4 for call in policy.calls for r in call)
    assert spent_within(out, 200) <= 200
    assert any(c["answer"] is not None for c in out["candidates"])
