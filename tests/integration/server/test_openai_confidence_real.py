"""OpenAIPolicy's stop rule over a real `vllm serve`: a sample the rule stops ends with
finish_reason "confidence", its stream is closed and vLLM aborts it (its /metrics then show no
request running or waiting); DeepConf online runs end to end over the server."""

import asyncio
import math
import re

import httpx
import pytest

from langgraph_ttc import ConfidenceStop
from langgraph_ttc.types import GenerationRequest
from tests.integration.deepconf_check import check_online_deepconf

pytestmark = pytest.mark.integration
QUESTION = [{"role": "user", "content": "Tom has 3 apples and buys 5 more. How many now?"}]
PROBLEM = "Tom has 3 apples and buys 5 more. How many apples does he have now?"
GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")


async def metric(server_url: str, name: str) -> float:
    """The sum of a metric over its labels, from the server's Prometheus page."""
    async with httpx.AsyncClient(timeout=10) as client:
        page = (await client.get(server_url.removesuffix("/v1") + "/metrics")).text
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    values = [float(v) for v in pattern.findall(page)]
    assert values, f"{name} is not in the server's /metrics"
    return sum(values)


async def unfinished(server_url: str) -> float:
    """Requests running or waiting once aborts went through (a short poll)."""
    for _ in range(50):
        count = sum([await metric(server_url, name) for name in GAUGES])
        if count == 0:
            return 0
        await asyncio.sleep(0.1)
    return count


async def test_the_stop_rule_closes_the_stream_and_vllm_aborts_it(openai_policy, server_url):
    def request(rule):
        return GenerationRequest(
            QUESTION, n=3, max_tokens=64, seed=7, top_logprobs=5, confidence_stop=rule
        )

    # the gauges are live: they count the samples while they run
    task = asyncio.create_task(openai_policy.generate([request(None)]))
    running = 0.0
    while not task.done() and running == 0:
        running = await metric(server_url, "vllm:num_requests_running")
        await asyncio.sleep(0.05)
    (free,) = await task
    assert running >= 1
    before = await metric(server_url, "vllm:generation_tokens_total")
    # no window of 4 tokens is this confident: every sample stops after its 4th token
    (stopped,) = await openai_policy.generate([request(ConfidenceStop(window=4, threshold=100.0))])
    assert [s.finish_reason for s in stopped] == ["confidence"] * 3
    assert all(4 <= s.num_tokens <= 6 for s in stopped), [s.num_tokens for s in stopped]
    assert all(len(s.token_confidences) == s.num_tokens for s in stopped)
    # minus the mean of the top-5 log-probabilities is at least log 5 (Jensen)
    assert all(min(s.token_confidences) >= math.log(5) - 1e-3 for s in stopped)
    assert sum(s.num_tokens for s in stopped) < sum(s.num_tokens for s in free)
    assert await unfinished(server_url) == 0
    # the server stopped generating too: fewer tokens than the free samples took
    generated = await metric(server_url, "vllm:generation_tokens_total") - before
    assert generated < sum(s.num_tokens for s in free), generated
    # a rule that never fires changes nothing but the split into one stream per sample
    (kept,) = await openai_policy.generate([request(ConfidenceStop(window=4, threshold=0.0))])
    assert all(s.finish_reason in ("stop", "length") for s in kept)
    assert await unfinished(server_url) == 0


async def test_deepconf_online_over_the_server(openai_policy, server_url):
    await check_online_deepconf(openai_policy, PROBLEM)
    assert await unfinished(server_url) == 0
