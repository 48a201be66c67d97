import pytest

from langgraph_ttc import create_dvts
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, tree_policy
from tests.fakes import run_streamed as run

GOOD = {"good": 0.9, "bad": 0.1}


async def test_subtrees_are_greedy_on_the_prm_and_batched():
    policy = tree_policy(3, alternating)
    graph = create_dvts(policy, KeywordPRM(GOOD), n=4, beam_width=2, seed=0)
    out, events = await run(graph)
    assert len(out["candidates"]) == 4  # n/M subtrees x M candidates
    # one policy call per iteration: every open subtree expands beam_width children at once
    expansion_calls = [c for c in policy.calls if all(r.stop for r in c)]
    assert all([r.n for r in call] == [2, 2] for call in expansion_calls)
    best = max(out["candidates"], key=lambda c: c["score"])
    assert best["text"].count("good") == 3
    assert {e["group"] for e in events if e["type"] == "prune"} == {0, 1}
    assert [c["group"] for c in out["candidates"]] == [0, 0, 1, 1]  # whole subtrees, in order


async def test_subtrees_never_compete():
    # subtree 0 only ever sees "bad" steps, subtree 1 only "good" ones: beam search would drop
    # subtree 0 entirely; DVTS must still return its candidates.
    def label(request, i, k):
        return "bad" if request.seed is not None and request.seed % 4 == 0 else "good"

    policy = tree_policy(2, label)
    graph = create_dvts(policy, KeywordPRM(GOOD), n=4, beam_width=2, seed=0)
    out, _ = await run(graph)
    groups = {}
    for candidate in out["candidates"]:
        groups.setdefault("bad" in candidate["text"], []).append(candidate)
    assert len(groups.get(True, [])) == 2 and len(groups.get(False, [])) == 2


async def test_unfinished_siblings_are_finished_before_selection():
    # the best child writes a boxed answer at once (closing its subtree) while its sibling is
    # mid-solution: the sibling must be run to the end so it has an answer too.
    def script(request, i):
        if request.prefix == "" and i == 0:
            return "done \\boxed{4}"
        return "thinking\n\nmore\n\n\\boxed{5}"

    policy = ScriptedPolicy(script)
    graph = create_dvts(
        policy, KeywordPRM({"done": 0.9, "thinking": 0.2}), n=2, beam_width=2, seed=0
    )
    out, _ = await run(graph)
    assert sorted(c["answer"] for c in out["candidates"]) == ["4", "5"]
    assert policy.calls[-1][0].stop == ()  # the finishing call runs to the end
    assert all(c["finish_reason"] == "stop" for c in out["candidates"])


async def test_step_with_answer_closes_subtree():
    policy = ScriptedPolicy(lambda r, i: "so \\boxed{7}\n\n" if r.prefix == "" else "x\n\n")
    graph = create_dvts(policy, KeywordPRM({}), n=2, beam_width=2, seed=0)
    out, _ = await run(graph)
    assert len(policy.calls) == 1 and out["answer"] == "7"


async def test_lookahead_is_scored():
    policy = tree_policy(3, alternating)
    prm = KeywordPRM(GOOD)
    graph = create_dvts(policy, prm, n=2, beam_width=2, lookahead=1, seed=0)
    out, _ = await run(graph)
    assert any(r.temperature == 0.0 for c in policy.calls for r in c)
    assert all(len(steps) == 2 for steps in prm.calls[0])
    assert out["usage"]["policy_calls"] == len(policy.calls)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n": 3, "beam_width": 2}, "multiple"), ({"max_iterations": 0}, "max_iterations")],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_dvts(tree_policy(2, alternating), KeywordPRM({}), **kwargs)
