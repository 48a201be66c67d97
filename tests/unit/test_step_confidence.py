"""selection="confidence" / "self_certainty" in the strategies that grow or revise solutions.

Every step (or revision) asks for token confidences; a grown candidate keeps its text's token
confidences (its steps' end to end) and its confidence figures over all of them, so the final
vote reads whole solutions. The verifier still steers the search. The fakes give each token
(a word) a scripted confidence: the model is sure of its "bad" steps, the verifier is not.
"""

from __future__ import annotations

import math

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from langgraph_ttc import candidates as cands
from langgraph_ttc import (
    create_beam_search,
    create_compute_optimal,
    create_dvts,
    create_mcts,
    create_particle_filtering,
    create_rebase,
    create_self_refine,
    create_speculative_rejection,
)
from langgraph_ttc.confidence import DEFAULT_TOP_LOGPROBS
from langgraph_ttc.errors import SettingsError
from langgraph_ttc.strategies.registry import create_strategy
from langgraph_ttc.strategies.settings import SearchSettings
from langgraph_ttc.strategies.state_check import StateError
from langgraph_ttc.types import Completion, GenerationRequest
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, tree_policy

PRM = KeywordPRM({"good": 0.9, "bad": 0.1})
CONFIDENT = ("confidence", "self_certainty")


def word_confidence(word: str) -> float:
    """The model is sure of its bad steps (9.0), less of the rest (4.0)."""
    return 9.0 if "bad" in word else 4.0


def by_seed(request: GenerationRequest, i: int, k: int) -> str:
    """Speculative rejection samples one continuation per request: its seed picks the label."""
    return "good" if (request.seed or 0) % 2 == 0 else "bad"


# each search over a two-step tree whose finished solutions hold two answer groups: the
# verifier's (every step good, answer 2) and the confident one (a bad step, answer 1 or 0);
# "mean" aggregation, so the verifier's figure reads every step
SEARCHES = {
    "beam_search": (alternating, lambda p, **o: create_beam_search(p, PRM, beam_width=2, **o)),
    "dvts": (alternating, lambda p, **o: create_dvts(p, PRM, beam_width=2, max_iterations=2, **o)),
    "particle_filtering": (alternating, lambda p, **o: create_particle_filtering(p, PRM, **o)),
    "mcts": (alternating, lambda p, **o: create_mcts(p, PRM, max_depth=2, **o)),
    "rebase": (alternating, lambda p, **o: create_rebase(p, PRM, **o)),
    "speculative_rejection": (
        by_seed,
        lambda p, **o: create_speculative_rejection(p, PRM, checkpoint_tokens=1, reject=0.25, **o),
    ),
}


async def search(name: str, selection: str, **settings):
    label, build = SEARCHES[name]
    policy = tree_policy(2, label, word_confidence)
    graph = build(policy, n=4, seed=0, aggregation="mean", selection=selection, **settings)
    return await graph.ainvoke({"problem": "p"}), policy


@pytest.mark.parametrize("name", list(SEARCHES))
async def test_the_most_confident_answer_group_wins_where_the_verifier_picks_another(name):
    weighted, policy = await search(name, "weighted")
    assert weighted["answer"] == "2"
    assert all(r.top_logprobs is None for call in policy.calls for r in call)
    assert all("token_confidences" not in c for c in weighted["candidates"])
    answers = {c["answer"] for c in weighted["candidates"]}
    assert "2" in answers and len(answers) > 1  # two groups to choose between
    for selection in CONFIDENT:
        out, policy = await search(name, selection)
        assert out["answer"] != "2", selection
        assert all(r.top_logprobs == DEFAULT_TOP_LOGPROBS for call in policy.calls for r in call)
        groups: dict[str, float] = {}
        for c in out["candidates"]:
            groups[c["answer"]] = groups.get(c["answer"], 0.0) + c[selection]
        assert out["answer"] == max(groups, key=groups.__getitem__)


@pytest.mark.parametrize("name", list(SEARCHES))
async def test_a_solution_carries_its_steps_confidences_end_to_end(name):
    out, _ = await search(name, "confidence")
    for c in out["candidates"]:
        # every step's tokens (words) in order: the concatenation of the steps' figures
        assert c["token_confidences"] == [word_confidence(w) for w in c["text"].split()]
        assert len(c["token_confidences"]) == c["num_tokens"]
        whole = cands.with_confidence(c, c["token_confidences"])
        assert (c["confidence"], c["self_certainty"]) == (
            whole["confidence"],
            whole["self_certainty"],
        )
        assert c["self_certainty"] == pytest.approx(
            sum(c["token_confidences"]) / c["num_tokens"] - math.log(DEFAULT_TOP_LOGPROBS),
            abs=1e-6,
        )


def test_grow_concatenates_confidences_and_drops_them_when_a_step_has_none():
    root = cands.new_candidate(0, parent=None)
    first = cands.grow(
        root, 1, Completion("a b\n\n", "stop", "\n\n", 2, None, None, (1.5, 2.0)), None
    )
    second = cands.grow(first, 2, Completion("c", "stop", None, 1, None, None, (4.0,)), "stop")
    assert second["token_confidences"] == [1.5, 2.0, 4.0]
    assert second["confidence"] == pytest.approx((1.5 + 2.0 + 4.0) / 3)
    assert first["token_confidences"] == [1.5, 2.0]  # the parent is not changed
    unknown = cands.grow(first, 3, Completion("c", "stop", None, 1), "stop")
    assert not {"token_confidences", "confidence", "self_certainty"} & set(unknown)
    # once unknown, later steps cannot restore a figure for the whole text
    later = cands.grow(unknown, 4, Completion("d", "stop", None, 1, None, None, (4.0,)), "stop")
    assert "token_confidences" not in later and "confidence" not in later
    rounded = cands.grow(root, 5, Completion("x", "stop", None, 1, None, None, (1 / 3,)), None)
    assert rounded["token_confidences"] == [0.333333]


async def test_lookahead_rollouts_ask_for_no_confidences():
    policy = tree_policy(3, alternating, word_confidence)
    graph = create_beam_search(policy, PRM, n=4, beam_width=2, lookahead=1, selection="confidence")
    out = await graph.ainvoke({"problem": "p"})
    rollouts = [r for call in policy.calls for r in call if r.temperature == 0.0]
    steps = [r for call in policy.calls for r in call if r.temperature != 0.0]
    assert rollouts and all(r.top_logprobs is None for r in rollouts)
    assert all(r.top_logprobs == DEFAULT_TOP_LOGPROBS for r in steps)
    assert all(c["token_confidences"] for c in out["candidates"])


# -- self-refinement: a revision's own tokens -------------------------------------------------


def refine_script(request: GenerationRequest, i: int) -> str:
    """Drafts are good (answer 2); critiques are text; revisions go bad (answer 1)."""
    system = request.messages[0]["content"]
    if system.startswith("You check"):
        return "looks wrong"
    if "feedback" in system:
        return "s0:bad\n\n\\boxed{1}"
    return "s0:good\n\n\\boxed{2}"


async def test_self_refine_votes_with_each_versions_own_confidence():
    weighted = await create_self_refine(
        ScriptedPolicy(refine_script, word_confidence), PRM, n=2, rounds=1, aggregation="mean"
    ).ainvoke({"problem": "p"})
    assert weighted["answer"] == "2"
    for selection in CONFIDENT:
        policy = ScriptedPolicy(refine_script, word_confidence)
        graph = create_self_refine(policy, n=2, rounds=1, selection=selection)
        out = await graph.ainvoke({"problem": "p"})
        assert out["answer"] == "1", selection
        draft, critique, revise = policy.calls
        assert draft[0].top_logprobs == DEFAULT_TOP_LOGPROBS
        assert all(r.top_logprobs is None for r in critique)  # a critique is not a version
        assert all(r.top_logprobs == DEFAULT_TOP_LOGPROBS for r in revise)
        revised = [v for v in out["candidates"] if v["round"] == 1]
        # over the revision's tokens only (9.0, 4.0), not its draft's
        assert [v["confidence"] for v in revised] == [6.5, 6.5]


# -- the router passes the selection on ----------------------------------------------------

TABLE = {"bins": [], "routes": {"4": [{"strategy": "beam_search", "settings": {"n": 4}}]}}


async def test_the_router_passes_a_confidence_selection_to_a_step_search():
    policy = tree_policy(2, alternating, lambda word: 20.0 if "bad" in word else 4.0)
    graph = create_compute_optimal(
        policy, PRM, table=TABLE, n=16, probe_n=1, seed=0, selection="confidence", max_tokens=32
    )
    out = await graph.ainvoke({"problem": "p"})
    assert all(r.top_logprobs == DEFAULT_TOP_LOGPROBS for call in policy.calls for r in call)
    probe, *routed = out["candidates"]
    assert len(routed) == 4 and all("token_confidences" in c for c in routed)
    assert "confidence" in probe
    # the probe and two routed solutions say 2 (3 x 4.0), two routed ones 1 (2 x 28 / 3)
    assert [c["answer"] for c in out["candidates"]].count("1") == 2
    assert out["answer"] == "1"


# -- what a search without a verifier is told ------------------------------------------------


def test_a_search_without_a_verifier_says_the_prm_is_needed_whatever_the_selection():
    policy = tree_policy(2, alternating)
    needed = r"needs a prm to guide the search .*selection='confidence' only picks the answer"
    with pytest.raises(ValueError, match=needed):
        create_beam_search(policy, None, selection="confidence")
    with pytest.raises(ValueError, match=needed + r".*choose a verifier \(--prm\)"):
        create_strategy("mcts", policy, None, {"selection": "confidence"})
    with pytest.raises(ValueError, match=needed):
        SearchSettings(selection="confidence").check_prm(False)
    with pytest.raises(ValueError) as plain:
        create_rebase(policy, None)
    assert "selection" not in str(plain.value)  # a weighted search: the prm is just needed
    SearchSettings(selection="confidence").check_prm(True)


def test_a_confidence_selection_is_no_longer_refused():
    for selection in CONFIDENT:
        assert SearchSettings(selection=selection).needs_confidences()
    create_particle_filtering(tree_policy(2, alternating), PRM, selection="self_certainty")


# -- checkpoints: the figures are state, checked on resume ----------------------------------


async def paused_beam_search():
    graph = create_beam_search(
        tree_policy(3, alternating, word_confidence),
        PRM,
        n=4,
        beam_width=2,
        selection="confidence",
        checkpointer=InMemorySaver(),
        interrupt_before=["prune"],
    )
    config = {"configurable": {"thread_id": "t-9"}}
    await graph.ainvoke({"problem": "p"}, config)
    return graph, config, (await graph.aget_state(config)).values


async def test_an_untouched_resume_keeps_the_confidences():
    graph, config, state = await paused_beam_search()
    assert all(b["token_confidences"] for b in state["active"])
    out = await graph.ainvoke(None, config)
    while (await graph.aget_state(config)).next:
        out = await graph.ainvoke(None, config)
    reference = await create_beam_search(
        tree_policy(3, alternating, word_confidence),
        PRM,
        n=4,
        beam_width=2,
        selection="confidence",
    ).ainvoke({"problem": "p"})
    assert out["answer"] == reference["answer"]
    assert [c["token_confidences"] for c in out["candidates"]] == [
        c["token_confidences"] for c in reference["candidates"]
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token_confidences", [math.nan]),
        ("token_confidences", [-1.0]),
        ("token_confidences", "4.0"),
        ("token_confidences", [4.0] * ((1 << 17) + 1)),
        ("confidence", math.inf),
        ("self_certainty", -0.5),
        ("confidence", "high"),
    ],
)
async def test_a_tampered_confidence_is_rejected(field, value):
    graph, config, state = await paused_beam_search()
    active = [dict(b) for b in state["active"]]
    active[0][field] = value
    await graph.aupdate_state(config, {"active": active}, as_node="score")
    with pytest.raises(StateError, match=rf"thread 't-9'.*active\.0\.{field}"):
        await graph.ainvoke(None, config)


def test_settings_errors_still_name_the_setting():
    with pytest.raises(SettingsError, match="selection"):
        SearchSettings(selection="confident")
