import pytest

from langgraph_ttc import create_self_refine
from langgraph_ttc.strategies.self_refine import verifier_feedback
from tests.fakes import KeywordPRM, ScriptedPolicy


def refining_script(request, i):
    """Drafts say 3 (wrong arithmetic), critiques flag it, revisions say 4."""
    system = request.messages[0]["content"]
    if system.startswith("You check"):
        return "Step 1 is wrong: 1 + 2 = 3, not 4."
    if "feedback" in system:
        return "1 + 3 = 4\n\n\\boxed{4}"
    return "1 + 3 = 5\n\n\\boxed{5}"


async def test_versions_are_kept_and_verifier_picks():
    policy = ScriptedPolicy(refining_script)
    prm = KeywordPRM({"= 4": 0.9, "= 5": 0.2, "boxed": 0.5})
    graph = create_self_refine(
        policy, prm, rounds=2, chains=2, seed=0, selection="naive", aggregation="min"
    )
    out = await graph.ainvoke({"problem": "What is 1 + 3?"})
    assert len(out["candidates"]) == 2 * 3  # chains x (draft + rounds)
    assert sorted({c["round"] for c in out["candidates"]}) == [0, 1, 2]
    assert out["answer"] == "4"
    # draft (n=chains) + per round: critique + revise, each one call over all chains
    assert [sum(r.n for r in call) for call in policy.calls] == [2, 2, 2, 2, 2]
    assert len(policy.calls) == 1 + 2 * 2


async def test_critic_sees_the_verifier_feedback():
    policy = ScriptedPolicy(refining_script)
    graph = create_self_refine(policy, KeywordPRM({"= 5": 0.1}), rounds=1)
    await graph.ainvoke({"problem": "What is 1 + 3?"})
    critic_prompt = policy.calls[1][0].messages[-1]["content"]
    assert "1 + 3 = 5" in critic_prompt and "doubts step 1" in critic_prompt


async def test_majority_without_verifier_and_streams():
    policy = ScriptedPolicy(refining_script)
    graph = create_self_refine(policy, None, rounds=2)
    events = [e async for e in graph.astream({"problem": "p"}, stream_mode="custom")]
    kinds = [e["type"] for e in events]
    assert kinds.count("candidate") == 3 and kinds.count("critique") == 2
    assert kinds[-1] == "selected" and events[-1]["answer"] == "4"  # 2 votes to 1


async def test_zero_rounds_is_best_of_drafts_and_override():
    policy = ScriptedPolicy(refining_script)
    graph = create_self_refine(policy, None, rounds=0, chains=3)
    out = await graph.ainvoke({"problem": "p"})
    assert len(out["candidates"]) == 3 and len(policy.calls) == 1
    out = await graph.ainvoke({"problem": "p"}, {"configurable": {"chains": 1, "rounds": 1}})
    assert len(out["candidates"]) == 2


def test_verifier_feedback_names_weakest_step():
    assert verifier_feedback([0.9, 0.2, 0.7]).endswith("doubts step 2 most.")
    assert verifier_feedback([]) == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rounds": -1}, "rounds"),
        ({"chains": 0}, "greater than or equal to 1"),
        ({"chains": 2, "temperature": 0.0}, "temperature"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_self_refine(ScriptedPolicy(refining_script), None, **kwargs)
