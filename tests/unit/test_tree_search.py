"""The tree searches: the pure tree logic (UCT, backup, REBASE's allocation) and MCTS and
REBASE as graphs on scripted fakes."""

import math

import pytest
from pydantic import TypeAdapter

from langgraph_ttc import create_mcts, create_rebase
from langgraph_ttc.errors import SettingsError
from langgraph_ttc.events import ProgressEvent
from langgraph_ttc.strategies import tree as trees
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, tree_policy
from tests.fakes import run_streamed as run

GOOD = {"good": 0.9, "bad": 0.1}
validate = TypeAdapter(ProgressEvent).validate_python


def small_tree(values: list[tuple[int, float, int]]) -> list[trees.TreeNode]:
    """A root with one child per (parent, value, visits), values backed up by hand."""
    tree = [trees.root()]
    for parent, value, visits in values:
        node = trees.add_child(tree, parent, finished=False)
        node["value"], node["visits"] = value * visits, visits
    return tree


# -- pure tree logic ------------------------------------------------------------------------


def test_uct_explores_an_unvisited_child_first_then_trades_value_for_exploration():
    tree = small_tree([(0, 0.9, 5), (0, 0.0, 0), (0, 0.1, 1)])
    tree[0]["visits"] = 6
    assert trees.uct(tree[2], 6, 1.0) == math.inf
    assert trees.select_leaves(tree, 1, exploration=1.0, max_depth=10) == [2]
    # once visited, c = 0 is pure exploitation; a large c prefers the rarely visited child
    tree[2]["visits"], tree[2]["value"], tree[0]["visits"] = 5, 0.5, 11
    assert trees.select_leaves(tree, 1, exploration=0.0, max_depth=10) == [1]
    assert trees.select_leaves(tree, 1, exploration=10.0, max_depth=10) == [3]
    expected = 0.1 + 2.0 * math.sqrt(math.log(11) / 1)
    assert trees.uct(tree[3], 11, 2.0) == pytest.approx(expected)


def test_backup_adds_the_value_to_the_node_and_every_ancestor():
    tree = [trees.root()]
    a = trees.add_child(tree, 0, finished=False)
    b = trees.add_child(tree, a["id"], finished=False)
    c = trees.add_child(tree, a["id"], finished=False)
    assert trees.backup(tree, b["id"], 0.8) == [b["id"], a["id"], 0]
    trees.backup(tree, c["id"], 0.2)
    assert [n["visits"] for n in tree] == [2, 2, 1, 1]
    assert trees.mean_value(tree[a["id"]]) == pytest.approx(0.5)
    assert trees.mean_value(tree[0]) == pytest.approx(0.5)
    assert trees.mean_value(tree[b["id"]]) == pytest.approx(0.8)
    assert trees.path_to(tree, c["id"]) == [0, a["id"], c["id"]]


def test_virtual_loss_spreads_the_selected_leaves_and_finished_nodes_are_never_selected():
    tree = small_tree([(0, 0.9, 1), (0, 0.5, 1), (0, 0.4, 1)])
    tree[0]["visits"] = 3
    # without a virtual loss all three would pick the best child; with it they differ
    assert trees.select_leaves(tree, 3, exploration=0.0, max_depth=10) == [1, 2, 3]
    assert trees.select_leaves(tree, 5, exploration=0.0, max_depth=10) == [1, 2, 3]
    tree[1]["finished"] = True
    assert trees.select_leaves(tree, 1, exploration=0.0, max_depth=10) == [2]
    # depth limit: leaves at max_depth are not expandable
    assert trees.select_leaves(tree, 3, exploration=0.0, max_depth=1) == []


def test_an_exhausted_subtree_is_skipped_even_when_it_has_the_best_value():
    tree = small_tree([(0, 0.9, 2), (0, 0.2, 1), (1, 0.9, 1)])
    tree[3]["finished"] = True  # node 1's only child ended: nothing to expand below 1
    assert trees.open_nodes(tree, 10, set()) == {0, 2}
    assert trees.select_leaves(tree, 2, exploration=0.0, max_depth=10) == [2]


def test_allocation_follows_the_softmax_and_sums_to_the_budget():
    scores = [0.9, 0.5, 0.1]
    for budget in range(0, 40):
        for temperature in (0.05, 0.2, 1.0, 10.0):
            counts = trees.allocate(scores, budget, temperature)
            assert sum(counts) == budget
            weights = trees.softmax(scores, temperature)
            # largest remainder: every count is the floor or the ceiling of its quota
            for count, weight in zip(counts, weights, strict=True):
                assert math.floor(weight * budget) <= count <= math.ceil(weight * budget)
            assert counts == sorted(counts, reverse=True)  # better score, more children
    # a sharp temperature gives the whole budget to the best node; a flat one spreads it
    assert trees.allocate(scores, 8, 0.01) == [8, 0, 0]
    assert trees.allocate([0.5, 0.5, 0.5, 0.5], 6, 1.0) == [2, 2, 1, 1]
    assert trees.allocate([0.1, 0.9], 3, 1e9) == [1, 2]  # ties go to the better score
    assert trees.allocate([], 4, 1.0) == []


# -- MCTS ---------------------------------------------------------------------------------


async def test_mcts_expands_in_one_policy_call_and_scores_in_one_verifier_call_per_iteration():
    policy, prm = tree_policy(3, alternating), KeywordPRM(GOOD)
    out, events = await run(create_mcts(policy, prm, n=4, expansions=2, seed=0))
    iterations = 1 + max(e["iteration"] for e in events if e["type"] == "tree")
    assert out["usage"]["policy_calls"] == len(policy.calls) == iterations
    assert out["usage"]["prm_calls"] == len(prm.calls) == iterations
    # the first iteration grows the root with all n steps; later ones grow
    # n / expansions = 2 distinct leaves, `expansions` children each
    assert [len(call) for call in policy.calls][:2] == [1, 2]
    assert [r.n for r in policy.calls[0]] == [4]
    expanded = [e for e in events if e["type"] == "tree" and e["action"] == "expand"]
    for iteration, call in enumerate(policy.calls[1:], start=1):
        assert sum(r.n for r in call) == 4
        parents = {e["parent"] for e in expanded if e["iteration"] == iteration}
        assert len(parents) == len(call)  # virtual loss: distinct leaves
    assert len(out["candidates"]) == 4
    assert all(c["finish_reason"] == "stop" for c in out["candidates"])
    assert out["answer"] == "3"  # the all-good path


async def test_mcts_backs_values_up_and_streams_a_drawable_tree():
    policy, prm = tree_policy(3, alternating), KeywordPRM(GOOD)
    _, events = await run(create_mcts(policy, prm, n=2, expansions=2, seed=0))
    for event in events:
        validate(event)
    tree = [e for e in events if e["type"] == "tree"]
    added = {e["id"]: e for e in tree if e["action"] == "expand"}
    assert all(e["parent"] == 0 or e["parent"] in added for e in added.values())
    scores = {e["id"]: e["value"] for e in tree if e["action"] == "score"}
    assert set(scores) == set(added)
    # the root's last backed-up value is the mean of every child's value
    root = [e for e in tree if e["action"] == "backup" and e["id"] == 0][-1]
    assert root["visits"] == len(added)
    assert root["value"] == pytest.approx(sum(scores.values()) / len(scores))
    # the first iteration: both children (0.9 and 0.1) backed up into the root
    first = [e for e in tree if e["action"] == "backup" and e["iteration"] == 0 and e["id"] == 0]
    assert first[0]["value"] == pytest.approx(0.5) and first[0]["visits"] == 2


async def test_mcts_never_expands_a_finished_node():
    policy, prm = tree_policy(2, alternating), KeywordPRM(GOOD)
    out, events = await run(create_mcts(policy, prm, n=6, expansions=2, seed=0))
    finished = {e["id"] for e in events if e["type"] == "tree" and e.get("finished")}
    texts = {c["id"]: c["text"] for c in out["candidates"]}
    expanded_prefixes = {r.prefix for call in policy.calls for r in call}
    assert finished and not {texts[i] for i in finished if i in texts} & expanded_prefixes
    parents = {e["parent"] for e in events if e["type"] == "tree" and e["action"] == "expand"}
    assert not finished & parents


async def test_mcts_stops_at_max_iterations_and_fills_up_with_cut_leaves():
    policy, prm = tree_policy(10, alternating), KeywordPRM(GOOD)
    out, _ = await run(create_mcts(policy, prm, n=4, expansions=2, max_iterations=3, seed=0))
    assert len(policy.calls) == 3
    assert len(out["candidates"]) == 4
    assert all(c["finish_reason"] == "length" for c in out["candidates"])


async def test_mcts_last_depth_samples_the_rest_of_the_solution():
    policy, prm = tree_policy(10, alternating), KeywordPRM(GOOD)
    out, _ = await run(create_mcts(policy, prm, n=1, expansions=1, max_depth=2, seed=0))
    assert [call[0].stop for call in policy.calls] == [("\n\n",), ()]
    assert out["candidates"][0]["finish_reason"] == "stop" and out["answer"] == "10"


async def test_mcts_budget_stops_the_search():
    policy, prm = tree_policy(10, alternating), KeywordPRM(GOOD)
    graph = create_mcts(policy, prm, n=4, expansions=2, max_step_tokens=5, budget_tokens=20)
    out, _ = await run(graph)
    assert out["usage"]["budget_spent"] <= 20
    assert len(policy.calls) < 10 and out["candidates"]


async def test_mcts_greedy_rollout_values_children_by_the_rolled_out_solution():
    # sample 0 writes a good step now but the rest is bad: only the rollout reveals it
    def label(request, i, k):
        if request.temperature == 0:
            return "bad"
        return "good" if i == 0 else "meh"

    policy, prm = tree_policy(4, label), KeywordPRM({**GOOD, "meh": 0.5})
    out, events = await run(
        create_mcts(
            policy, prm, n=2, expansions=2, rollout="greedy", max_iterations=1, aggregation="min"
        )
    )
    assert [r.temperature for r in policy.calls[1]] == [0.0, 0.0]
    assert [r.stop for r in policy.calls[1]] == [(), ()]  # rolled out to the end
    scored = [e for e in events if e["type"] == "tree" and e["action"] == "score"]
    # min over the rolled-out steps; the children's own steps alone score 0.9 and 0.5
    assert [e["value"] for e in scored] == [pytest.approx(0.1), pytest.approx(0.1)]
    assert [e["score"] for e in scored] == [pytest.approx(0.9), pytest.approx(0.5)]
    assert out["usage"]["policy_calls"] == 2 and out["usage"]["prm_calls"] == 1


def test_mcts_settings_have_limits():
    policy, prm = tree_policy(2, alternating), KeywordPRM(GOOD)
    for bad in ({"expansions": 0}, {"exploration": -1.0}, {"rollout": "deep"}, {"max_depth": 0}):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            create_mcts(policy, prm, **bad)


# -- REBASE -------------------------------------------------------------------------------


async def test_rebase_splits_each_depth_by_the_softmax_of_the_scores():
    policy, prm = tree_policy(3, alternating), KeywordPRM(GOOD)
    out, events = await run(create_rebase(policy, prm, n=8, weight_temperature=0.2, seed=0))
    assert [r.n for r in policy.calls[0]] == [8]  # the root gets the whole budget
    # depth 1: 4 good (0.9) and 4 bad (0.1) children; softmax(s / 0.2) gives each good one
    # e^4 / (4 e^4 + 4) = 0.245 of 8 children: 2 each (largest remainder), the bad ones none
    second = policy.calls[1]
    assert [r.n for r in second] == [2, 2, 2, 2]
    assert all(r.prefix.startswith("s0:good") for r in second)
    prune = next(e for e in events if e["type"] == "prune" and e["iteration"] == 1)
    assert len(prune["kept"]) == 4 and len(prune["dropped"]) == 4
    assert out["usage"]["policy_calls"] == len(policy.calls) == out["usage"]["prm_calls"]
    assert len(out["candidates"]) == 8 and out["answer"] == "3"
    for event in events:
        validate(event)


async def test_rebase_budget_shrinks_by_the_finished_solutions():
    # sample 0 of every request ends its solution at once (EOS), the others write a step
    def script(request, i):
        return "\\boxed{1}" if i == 0 else "s:good\n\n"

    policy, prm = ScriptedPolicy(script), KeywordPRM(GOOD)
    out, events = await run(create_rebase(policy, prm, n=4, max_depth=3, seed=0))
    # depth 0: 4 children, one finishes; depth 1: the 3 others share 3 children and all end
    assert [[r.n for r in call] for call in policy.calls] == [[4], [1, 1, 1]]
    finished = {e["id"] for e in events if e["type"] == "tree" and e.get("finished")}
    parents = {e["parent"] for e in events if e["type"] == "tree" and e["action"] == "expand"}
    assert finished and not finished & parents
    assert len(out["candidates"]) == 4


async def test_rebase_stops_at_max_depth_and_on_the_budget():
    policy, prm = tree_policy(10, alternating), KeywordPRM(GOOD)
    out, _ = await run(create_rebase(policy, prm, n=4, max_depth=3, seed=0))
    assert len(policy.calls) == 3 and policy.calls[-1][0].stop == ()
    assert all(c["finish_reason"] == "stop" for c in out["candidates"])
    policy = tree_policy(10, alternating)
    graph = create_rebase(policy, prm, n=4, max_step_tokens=5, budget_tokens=24)
    out, _ = await run(graph)
    assert out["usage"]["budget_spent"] <= 24 and len(policy.calls) < 10
    assert len(out["candidates"]) == 4


@pytest.mark.parametrize("name", ["mcts", "rebase"])
async def test_the_registry_builds_both_with_the_settings_that_apply(name):
    from langgraph_ttc.strategies import STRATEGIES, create_strategy
    from langgraph_ttc.strategies.catalog import ROUTABLE

    assert name in ROUTABLE and STRATEGIES[name].needs_prm and STRATEGIES[name].steps
    shared = {"n": 2, "beam_width": 2, "max_iterations": 5, "max_depth": 5, "seed": 0}
    graph = create_strategy(name, tree_policy(2, alternating), KeywordPRM(GOOD), shared)
    out, _ = await run(graph)
    assert out["answer"] == "2" and len(out["candidates"]) == 2
    with pytest.raises(ValueError, match="needs a prm"):
        create_strategy(name, tree_policy(2, alternating), None)
