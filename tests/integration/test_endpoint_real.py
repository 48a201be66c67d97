"""The strategies endpoint on the real engine, over real HTTP: a streamed beam search reasons
before it answers and answers what `graph.ainvoke` answers for the same seed; a client that
leaves mid-search leaves no request in the engine."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from langgraph_ttc.server import create_app
from langgraph_ttc.strategies import create_beam_search
from langgraph_ttc.verifiers import ArithmeticVerifier
from tests.endpoint import serving_here

pytestmark = pytest.mark.integration

PROBLEM = "Tom has 12 apples and buys 7 more. How many apples does he have now?"
MESSAGES = [{"role": "user", "content": PROBLEM}]
BEAM = {"n": 4, "beam_width": 2, "max_iterations": 3, "max_step_tokens": 48, "max_tokens": 128}


async def test_a_streamed_beam_search_reasons_then_answers_as_ainvoke(policy):
    prm = ArithmeticVerifier()
    async with serving_here(create_app(policy, prm)) as url:
        client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
        stream = await client.chat.completions.create(
            model="beam_search",
            messages=MESSAGES,
            seed=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ttc": BEAM},
        )
        order, content, usage = [], "", None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if (delta.model_extra or {}).get("reasoning_content"):
                order.append("reasoning")
                assert chunk.model_extra["ttc_event"]["strategy"] == "beam_search"
            if delta.content:
                order.append("content")
                content += delta.content
        await client.close()
    expected = await create_beam_search(policy, prm, seed=0, **BEAM).ainvoke({"problem": PROBLEM})
    assert "content" in order and order.index("content") >= 4  # candidates, scores, prune...
    assert all(kind == "reasoning" for kind in order[: order.index("content")])
    assert content == expected["solution"] and content
    assert usage.completion_tokens == expected["usage"]["policy_tokens"]


async def test_a_client_that_leaves_leaves_no_engine_request(policy):
    prm = ArithmeticVerifier()
    app = create_app(policy, prm)
    body = {
        "model": "beam_search",
        "messages": MESSAGES,
        "stream": True,
        "ttc": {**BEAM, "max_iterations": 20, "max_step_tokens": 256, "max_tokens": 1024},
    }
    async with serving_here(app) as url, httpx.AsyncClient(timeout=600) as client:
        async with client.stream("POST", f"{url}/chat/completions", json=body) as reply:
            lines = reply.aiter_lines()
            seen = 0
            async for line in lines:  # leave once the engine is generating
                seen += line.startswith("data: ")
                if seen >= 3 and policy.num_unfinished_requests > 0:
                    break
            assert policy.num_unfinished_requests > 0
        deadline = time.monotonic() + 10
        while policy.num_unfinished_requests or app.state.endpoint.admission.running:
            assert time.monotonic() < deadline, "the search's requests outlived its client"
            await asyncio.sleep(0.05)
    assert policy.sequences_in_flight == 0
