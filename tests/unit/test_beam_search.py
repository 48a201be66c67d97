import pytest

from langgraph_ttc import create_beam_search
from langgraph_ttc.strategies.beam_search import refill_counts
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, tree_policy
from tests.fakes import run_streamed as run

GOOD = {"good": 0.9, "bad": 0.1}
BAD = {"good": 0.1, "bad": 0.9}


def test_refill_counts_spread_copies():
    assert refill_counts(2, 8) == [4, 4]
    assert refill_counts(3, 8) == [3, 3, 2]
    assert refill_counts(1, 4) == [4]


@pytest.mark.parametrize(("weights", "word"), [(GOOD, "good"), (BAD, "bad")])
async def test_follows_the_prm(weights, word):
    policy = tree_policy(3, alternating)
    graph = create_beam_search(policy, KeywordPRM(weights), n=4, beam_width=2, seed=0)
    out, _ = await run(graph)
    assert out["solution"].count(word) == 3, out["solution"]
    assert out["answer"] == ("3" if word == "good" else "0")


async def test_one_policy_call_per_iteration_with_all_beams():
    policy = tree_policy(3, alternating)
    graph = create_beam_search(policy, KeywordPRM(GOOD), n=4, beam_width=2, seed=0)
    out, events = await run(graph)
    # iterations: 3 steps + the EOS step; each is one generate call holding every beam
    assert len(policy.calls) == 4
    assert [sum(r.n for r in call) for call in policy.calls] == [4, 4, 4, 4]
    assert [len(call) for call in policy.calls] == [1, 2, 2, 2]  # n=copies per survivor
    assert all(r.stop == ("\n\n",) for call in policy.calls for r in call)
    assert out["usage"]["policy_calls"] == 4
    assert out["usage"]["policy_tokens"] > 0
    prunes = [e for e in events if e["type"] == "prune"]
    assert all(len(e["kept"]) == 2 for e in prunes[:-1])


async def test_pruning_is_global_not_per_parent():
    # iteration 0 makes beams "A" and "B"; every child of A outscores every child of B.
    def label(request, i, k):
        if k == 0:
            return "A" if i % 2 == 0 else "B"
        return ("A" if "A" in request.prefix else "B") + str(i)

    prm = KeywordPRM({"A0": 0.9, "A1": 0.8, "A2": 0.85, "A3": 0.7, "B": 0.2, "A": 0.6})
    graph = create_beam_search(
        tree_policy(3, label), prm, n=4, beam_width=2, seed=0, filter_duplicates=False
    )
    _, events = await run(graph)
    second = next(e for e in events if e["type"] == "prune" and e["iteration"] == 1)
    texts = {e["id"]: e["text"] for e in events if e["type"] == "candidate"}
    assert all("A" in texts[i].split("\n\n")[0] for i in second["kept"])


async def test_completed_beams_leave_the_pool_and_best_n_are_returned():
    # sample 0 of every request ends at once with a low-scored answer; others go on.
    def script(request, i):
        if i == 0 and request.prefix == "":
            return "quick \\boxed{1}"
        depth = request.prefix.count("\n\n")
        return "careful step\n\n" if depth < 2 else "\\boxed{2}"

    prm = KeywordPRM({"quick": 0.05, "careful": 0.9, "boxed{2}": 0.95})
    policy = ScriptedPolicy(script)
    graph = create_beam_search(policy, prm, n=2, beam_width=2, seed=0, selection="naive")
    out, _ = await run(graph)
    # the finished "quick" beam is never expanded again
    assert all("quick" not in r.prefix for call in policy.calls[1:] for r in call)
    # the quick beam finished first but scores worst: the best n=2 are the careful ones
    assert [c["answer"] for c in out["candidates"]] == ["2", "2"]
    assert out["answer"] == "2"


async def test_duplicates_are_filtered():
    policy = ScriptedPolicy(lambda r, i: "same\n\n" if r.prefix.count("\n\n") < 2 else "\\boxed{5}")
    graph = create_beam_search(policy, KeywordPRM({}), n=4, beam_width=2, seed=0)
    _, events = await run(graph)
    first = next(e for e in events if e["type"] == "prune")
    assert len(first["kept"]) == 1 and len(first["dropped"]) == 3


async def test_final_iteration_runs_to_the_end():
    policy = tree_policy(10, alternating)
    graph = create_beam_search(
        policy,
        KeywordPRM(GOOD),
        n=2,
        beam_width=2,
        max_iterations=3,
        max_tokens=500,
        max_step_tokens=50,
        seed=0,
    )
    out, _ = await run(graph)
    last = policy.calls[-1]
    assert len(policy.calls) == 3
    # the rest of the solution gets what the whole-solution budget has left
    assert all(r.stop == () and 400 < r.max_tokens < 500 for r in last)
    assert all(r.max_tokens == 50 for call in policy.calls[:-1] for r in call)
    assert all(c["answer"] is not None and "\\boxed" in c["text"] for c in out["candidates"])


async def test_step_cut_by_max_step_tokens_is_not_finished():
    # "long" steps exceed max_step_tokens (words here): the beam continues, not completes
    def script(request, i):
        if request.prefix == "":
            return "w " * 20 + "\n\n"
        return "\\boxed{3}"

    policy = ScriptedPolicy(script)
    graph = create_beam_search(policy, KeywordPRM({}), n=2, beam_width=2, max_step_tokens=5, seed=0)
    out, _ = await run(graph)
    assert len(policy.calls) >= 2
    assert all(c["answer"] == "3" for c in out["candidates"])
    assert all(c["finish_reason"] == "stop" for c in out["candidates"])


async def test_lookahead_rollouts_are_scored_but_not_kept():
    policy = tree_policy(3, alternating)
    prm = KeywordPRM(GOOD)
    graph = create_beam_search(policy, prm, n=2, beam_width=2, lookahead=1, seed=0)
    out, _ = await run(graph)
    rollout_calls = [c for c in policy.calls if all(r.temperature == 0.0 for r in c)]
    assert rollout_calls, "lookahead made no greedy rollout calls"
    first_scored = prm.calls[0]  # iteration 0: one sampled step plus one rolled-out step
    assert all(len(steps) == 2 for steps in first_scored)
    assert out["usage"]["policy_calls"] == len(policy.calls)
    assert out["solution"].count("s0:") == 1  # rollout text did not leak into the beam


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 6, "beam_width": 4}, "multiple of beam_width"),
        ({"beam_width": 0}, "beam_width"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"temperature": 0.0}, "temperature 0"),
        ({"aggregation": "x"}, "aggregation"),
        ({"lookahead": -1}, "lookahead"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_beam_search(tree_policy(2, alternating), KeywordPRM({}), **kwargs)


def test_needs_a_prm():
    with pytest.raises(ValueError, match="needs a prm"):
        create_beam_search(tree_policy(2, alternating), None)  # type: ignore[arg-type]


async def test_iteration_override_beyond_recursion_limit_fails_clearly():
    policy = tree_policy(100, alternating)
    graph = create_beam_search(policy, KeywordPRM(GOOD), n=2, beam_width=2, max_iterations=5)
    with pytest.raises(ValueError, match="needs recursion_limit >= 160"):
        await graph.ainvoke({"problem": "p"}, {"configurable": {"max_iterations": 50}})
    assert policy.calls == []
    out = await graph.ainvoke(
        {"problem": "p"}, {"recursion_limit": 160, "configurable": {"max_iterations": 50}}
    )
    assert len(policy.calls) == 50 and out["answer"] is not None


async def test_graph_carries_an_explicit_recursion_limit():
    graph = create_beam_search(tree_policy(2, alternating), KeywordPRM({}), max_iterations=7)
    assert graph.config["recursion_limit"] == 31


async def test_truncated_solutions_rank_below_finished_ones():
    # sample 0 rambles past the whole-solution budget (high PRM score); sample 1 finishes
    def script(request, i):
        if request.prefix == "":
            return ("ramble " * 30 + "\n\n") if i == 0 else "short\n\n"
        return "ramble more\n\n" if "ramble" in request.prefix else "\\boxed{1}"

    prm = KeywordPRM({"ramble": 0.99, "short": 0.5, "boxed": 0.5})
    graph = create_beam_search(
        ScriptedPolicy(script),
        prm,
        n=2,
        beam_width=1,
        max_tokens=20,
        filter_duplicates=False,
        seed=0,
        selection="naive",
    )
    out, _ = await run(graph)
    assert out["candidates"][0]["finish_reason"] == "stop"
    assert out["answer"] == "1"


async def test_max_tokens_bounds_the_whole_solution():
    # every step is 8 words (tokens for the fake): with 20 tokens for the whole solution, the
    # third step may use only the 4 left (duplicates leave one request per iteration)
    policy = ScriptedPolicy(lambda request, i: "a b c d e f g h\n\n")
    graph = create_beam_search(
        policy, KeywordPRM({}), n=2, beam_width=2, max_tokens=20, max_step_tokens=16, seed=0
    )
    out, _ = await run(graph)
    assert [r.max_tokens for call in policy.calls for r in call][:3] == [16, 12, 4]
    assert all(c["num_tokens"] <= 20 for c in out["candidates"])
    assert all(c["finish_reason"] == "length" for c in out["candidates"])
