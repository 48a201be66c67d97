"""Token confidences, the in-engine stop rule, DeepConf and speculative rejection on the real
engine (embedded SmolLM2-135M-Instruct)."""

import asyncio
import math

import pytest

from langgraph_ttc import ConfidenceStop, create_speculative_rejection
from langgraph_ttc.types import GenerationRequest
from langgraph_ttc.verifiers import ArithmeticVerifier
from tests.fakes import run_streamed
from tests.integration.deepconf_check import check_online_deepconf

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": "Tom has 3 apples and buys 5 more. How many now?"}]
PROBLEM = "Tom has 3 apples and buys 5 more. How many apples does he have now?"


async def settled(policy) -> int:
    """Unfinished requests once aborts went through (they are processed asynchronously)."""
    for _ in range(40):
        if policy.num_unfinished_requests == 0:
            return 0
        await asyncio.sleep(0.05)
    return policy.num_unfinished_requests


async def test_token_confidences_come_with_every_token(policy):
    (samples,) = await policy.generate(
        [GenerationRequest(QUESTION, n=2, max_tokens=16, seed=5, top_logprobs=5)]
    )
    for sample in samples:
        assert sample.token_confidences is not None
        assert len(sample.token_confidences) == sample.num_tokens
        # minus the mean of the top-5 log-probabilities is at least log 5 (Jensen)
        assert min(sample.token_confidences) >= math.log(5) - 1e-3


async def test_the_stop_rule_aborts_the_sample_in_the_engine(policy):
    def request(rule):
        return GenerationRequest(
            QUESTION, n=3, max_tokens=64, seed=7, top_logprobs=5, confidence_stop=rule
        )

    (free,) = await policy.generate([request(None)])
    # no window of 4 tokens is this confident: every sample stops after its 4th token
    (stopped,) = await policy.generate([request(ConfidenceStop(window=4, threshold=100.0))])
    assert [s.finish_reason for s in stopped] == ["confidence"] * 3
    assert all(4 <= s.num_tokens <= 6 for s in stopped), [s.num_tokens for s in stopped]
    assert sum(s.num_tokens for s in stopped) < sum(s.num_tokens for s in free)
    assert await settled(policy) == 0
    # a rule that never fires changes nothing but the split into one request per sample
    (kept,) = await policy.generate([request(ConfidenceStop(window=4, threshold=0.0))])
    assert all(s.finish_reason in ("stop", "length") for s in kept)
    assert await settled(policy) == 0


async def test_deepconf_online_end_to_end(policy):
    await check_online_deepconf(policy, PROBLEM)
    assert await settled(policy) == 0


async def test_speculative_rejection_end_to_end(policy):
    graph = create_speculative_rejection(
        policy, ArithmeticVerifier(), n=4, checkpoint_tokens=16, reject=0.5, max_tokens=48, seed=3
    )
    out, events = await run_streamed(graph, {"problem": PROBLEM})
    prunes = [e for e in events if e["type"] == "prune"]
    first = prunes[0]  # half of the samples still growing after 16 tokens, rounded down
    assert len(first["dropped"]) == (len(first["kept"]) + len(first["dropped"])) // 2 >= 1
    assert 1 <= len(out["candidates"]) <= 2
    assert out["usage"]["policy_tokens"] < 4 * 48
    assert await settled(policy) == 0
