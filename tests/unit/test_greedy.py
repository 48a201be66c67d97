import pytest

from langgraph_ttc import create_greedy
from langgraph_ttc.verifiers import ArithmeticVerifier
from tests.fakes import KeywordPRM, ScriptedPolicy, cycling, seeded_arithmetic


async def test_one_sample_at_temperature_zero_with_the_output_contract():
    policy = cycling(["Add them: 12 + 7 = 19 good\n\n\\boxed{19}", "never sampled"])
    graph = create_greedy(policy, KeywordPRM({"good": 0.9}), max_tokens=64)
    out = await graph.ainvoke({"problem": "What is 12 + 7?"})
    (request,) = policy.calls[0]
    assert (request.n, request.temperature, request.max_tokens) == (1, 0.0, 64)
    assert out["answer"] == "19"
    (candidate,) = out["candidates"]
    assert candidate["step_scores"] == [0.9, 0.5] and candidate["score"] == 0.5  # last step
    assert out["solution"] == candidate["text"]
    assert out["usage"]["policy_tokens"] == candidate["num_tokens"] > 0


async def test_without_a_verifier_and_with_sampling_overrides_rejected():
    policy = cycling(["\\boxed{3}"])
    graph = create_greedy(policy)
    out = await graph.ainvoke({"problem": "1 + 2?"})
    assert out["answer"] == "3" and out["candidates"][0]["step_scores"] == []
    with pytest.raises(ValueError, match="greedy fixes n=1"):
        await graph.ainvoke({"problem": "1 + 2?"}, {"configurable": {"n": 4}})


async def test_a_run_cannot_turn_greedy_into_sampling():
    policy = ScriptedPolicy(seeded_arithmetic)
    graph = create_greedy(policy, ArithmeticVerifier())
    with pytest.raises(ValueError, match=r"greedy fixes temperature=0\.0"):
        await graph.ainvoke({"problem": "1 + 2?"}, context={"temperature": 0.9})
    assert policy.calls == []
