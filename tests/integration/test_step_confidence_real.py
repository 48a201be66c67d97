"""selection="confidence" in a step search on the real engine (embedded SmolLM2-135M-Instruct):
every step asks vLLM for top-k log-probabilities, a finished beam carries one token confidence
per generated token, and the answer is the group with the largest summed confidence."""

import math

import pytest

from langgraph_ttc import candidates as cands
from langgraph_ttc import create_beam_search
from langgraph_ttc.confidence import DEFAULT_TOP_LOGPROBS
from langgraph_ttc.selection import group_by_answer
from langgraph_ttc.verifiers import ArithmeticVerifier
from langgraph_ttc.worked_examples import select_examples

pytestmark = pytest.mark.integration
PROBLEM = "A baker has 15 cakes and sells 6. How many cakes are left?"


async def test_beam_search_votes_with_token_confidences_real(policy):
    graph = create_beam_search(
        policy,
        ArithmeticVerifier(),
        selection="confidence",
        n=4,
        beam_width=2,
        max_iterations=4,
        max_step_tokens=48,
        max_tokens=128,
        seed=0,
        examples=select_examples(4),
    )
    out = await graph.ainvoke({"problem": PROBLEM})
    candidates = out["candidates"]
    assert len(candidates) == 4
    for c in candidates:
        # one figure per generated token, every step's end to end
        assert len(c["token_confidences"]) == c["num_tokens"] > 0
        # minus the mean of the top-20 log-probabilities: finite and at least log 20 (Jensen)
        assert math.isfinite(c["confidence"])
        assert c["confidence"] >= math.log(DEFAULT_TOP_LOGPROBS) - 1e-3
        assert c["self_certainty"] >= 0
        whole = cands.with_confidence(c, c["token_confidences"])
        assert c["confidence"] == whole["confidence"]
    groups = group_by_answer(candidates)
    assert groups, [c["text"] for c in candidates]  # the worked examples make it answer
    sums = [sum(c["confidence"] for c in g) for g in groups]
    (chosen,) = [i for i, g in enumerate(groups) if out["solution"] in [c["text"] for c in g]]
    assert sums[chosen] == max(sums)
    assert out["answer"] in [c["answer"] for c in groups[chosen]]
