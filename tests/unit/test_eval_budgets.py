"""Budget planning and subsampling: which runs a curve needs and what smaller N reads."""

import pytest

from langgraph_ttc.eval.budgets import (
    RunSpec,
    budget_tokens,
    parse_budgets,
    plan_runs,
    subsample,
    width_for,
)


def cands(n, group_size=None):
    out = []
    for i in range(n):
        c = {
            "id": i,
            "text": f"t{i}",
            "answer": str(i),
            "score": 0.5,
            "step_scores": [],
            "num_tokens": 10 + i,
            "finish_reason": "stop",
        }
        if group_size:
            c["group"] = i // group_size
        out.append(c)
    return out


def test_parse_budgets():
    assert parse_budgets("8,1, 2,4,4") == [1, 2, 4, 8]
    for bad in ("", "0,2", "a,b", "-1"):
        with pytest.raises(ValueError, match="positive integers"):
            parse_budgets(bad)


def test_plan_best_of_n_runs_once_at_max_and_beam_search_per_budget():
    specs = plan_runs(["greedy", "best_of_n", "beam_search"], [1, 2, 4, 8], beam_width=2)
    assert specs == [
        RunSpec("greedy", 1, 1, (1,)),
        RunSpec("best_of_n", 8, 1, (1, 2, 4, 8)),
        RunSpec("beam_search", 1, 1, (1,)),  # N=1 cannot keep N/2 beams: width 1
        RunSpec("beam_search", 2, 2, (2,)),
        RunSpec("beam_search", 4, 2, (4,)),
        RunSpec("beam_search", 8, 2, (8,)),
    ]


def test_plan_dvts_and_self_refine():
    specs = plan_runs(["dvts", "self_refine"], [1, 2, 4, 8], beam_width=4)
    assert specs == [
        RunSpec("dvts", 8, 4, (4, 8)),  # whole subtrees of one run
        RunSpec("dvts", 1, 1, (1,)),
        RunSpec("dvts", 2, 2, (2,)),
        RunSpec("self_refine", 1, 1, (1,)),
        RunSpec("self_refine", 2, 1, (2,)),
        RunSpec("self_refine", 4, 1, (4,)),
        RunSpec("self_refine", 8, 1, (8,)),
    ]
    with pytest.raises(ValueError, match="unknown strategy"):
        plan_runs(["no_such_strategy"], [1], 2)


def test_width_for():
    assert [width_for(k, 4) for k in (1, 2, 3, 4, 6, 8)] == [1, 2, 3, 4, 3, 4]


def test_best_of_n_budget_k_is_the_first_k_samples():
    spec = RunSpec("best_of_n", 8, 1, (1, 2, 4, 8))
    candidates = cands(8)
    assert [c["id"] for c in subsample(candidates, spec, 1)] == [0]
    assert [c["id"] for c in subsample(candidates, spec, 4)] == [0, 1, 2, 3]
    assert subsample(candidates, spec, 8) == candidates
    assert budget_tokens(spec, 2, subsample(candidates, spec, 2), 999) == (21, True)
    assert budget_tokens(spec, 8, candidates, 108) == (108, True)


def test_dvts_budget_takes_whole_subtrees_by_group():
    spec = RunSpec("dvts", 8, 2, (2, 4, 8))
    candidates = cands(8, group_size=2)
    # a subtree that hit max_iterations returns a single candidate: groups, not positions
    uneven = [candidates[0], candidates[2], candidates[3], *candidates[4:]]
    assert [c["id"] for c in subsample(uneven, spec, 4)] == [0, 2, 3]
    assert [c["id"] for c in subsample(candidates, spec, 2)] == [0, 1]
    # outputs without "group" fall back to blocks of beam_width
    plain = cands(8)
    assert [c["id"] for c in subsample(plain, spec, 4)] == [0, 1, 2, 3]
    assert budget_tokens(spec, 4, [], 200) == (100, False)  # shared prefixes: estimated


def test_separate_run_strategies_and_bad_budgets_refuse_subsampling():
    with pytest.raises(ValueError, match="separate runs"):
        subsample(cands(4), RunSpec("beam_search", 4, 2, (2, 4)), 2)
    with pytest.raises(ValueError, match="cannot be read"):
        subsample(cands(4), RunSpec("best_of_n", 4, 1, (1, 2, 4)), 3)
