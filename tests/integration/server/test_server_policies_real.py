"""Strategies and the judge over a real `vllm serve`: OpenAIPolicy, and ChatModelPolicy over
ChatOpenAI and ChatHuggingFace(HuggingFaceEndpoint) pointed at it."""

import math

import pytest

from langgraph_ttc.policies import ChatModelPolicy
from langgraph_ttc.strategies import create_beam_search, create_best_of_n
from langgraph_ttc.types import GenerationRequest
from langgraph_ttc.verifiers import ArithmeticVerifier, LLMJudgePRM
from langgraph_ttc.verifiers.judge import NO_TOKENS, YES_TOKENS, judge_messages, yes_probability

pytestmark = pytest.mark.integration

PROBLEM = "Tom has 12 apples and buys 7 more. How many apples does he have now?"
MESSAGES = [{"role": "user", "content": PROBLEM}]


@pytest.fixture(scope="session")
def chat_openai_policy(server_url, served_model):
    from langchain_openai import ChatOpenAI

    return ChatModelPolicy(ChatOpenAI(base_url=server_url, model=served_model, api_key="none"))


@pytest.fixture(scope="session")
def chat_hf_policy(server_url, served_model):
    from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

    endpoint = HuggingFaceEndpoint(endpoint_url=server_url.removesuffix("/v1"))
    chat = ChatHuggingFace(llm=endpoint)
    # An endpoint URL is sent as model "dummy"; vLLM wants the served model's name.
    chat.model_id = served_model
    return ChatModelPolicy(chat, continuation="vllm")


@pytest.fixture(params=["openai", "chat_openai", "chat_hf"])
def any_policy(request, openai_policy, chat_openai_policy, chat_hf_policy):
    return {
        "openai": openai_policy,
        "chat_openai": chat_openai_policy,
        "chat_hf": chat_hf_policy,
    }[request.param]


async def test_backends_sample_the_same_continuations(
    openai_policy, chat_openai_policy, chat_hf_policy
):
    """Same server, same seeds: the prompt the chat backends have vLLM render (with the prefix
    continued) is the one OpenAIPolicy renders, so the samples are identical."""
    requests = [
        GenerationRequest(MESSAGES, n=2, max_tokens=32, stop=("\n\n",), seed=3),
        GenerationRequest(
            MESSAGES, prefix="Step 1: 12 + 7", n=2, max_tokens=32, stop=("\n\n",), seed=4
        ),
    ]
    reference = await openai_policy.generate(requests)
    for policy in (chat_openai_policy, chat_hf_policy):
        got = await policy.generate(requests)
        assert [[c.text for c in s] for s in got] == [[c.text for c in s] for s in reference]
        assert [[c.stop_reason for c in s] for s in got] == [
            [c.stop_reason for c in s] for s in reference
        ]
        assert [[c.num_tokens for c in s] for s in got] == [
            [c.num_tokens for c in s] for s in reference
        ]
    for completion in [c for s in reference for c in s]:
        assert completion.num_tokens > 0 and completion.logprob < 0
        if completion.stop_reason is not None:
            assert completion.text.endswith("\n\n") and completion.finish_reason == "stop"


async def test_best_of_n_end_to_end(any_policy):
    graph = create_best_of_n(any_policy, ArithmeticVerifier(), n=4, max_tokens=64, seed=0)
    out = await graph.ainvoke({"problem": PROBLEM})
    assert len(out["candidates"]) == 4
    assert all(c["num_tokens"] > 0 for c in out["candidates"])
    assert out["usage"]["policy_tokens"] == sum(c["num_tokens"] for c in out["candidates"])
    assert out["solution"] in [c["text"] for c in out["candidates"]]


async def test_beam_search_end_to_end(any_policy):
    graph = create_beam_search(
        any_policy,
        ArithmeticVerifier(),
        n=4,
        beam_width=2,
        max_iterations=3,
        max_tokens=64,
        max_step_tokens=32,
        seed=0,
    )
    out = await graph.ainvoke({"problem": PROBLEM})
    candidates = out["candidates"]
    assert candidates and all(c["step_scores"] for c in candidates)
    assert out["usage"]["policy_calls"] >= 2  # at least two step iterations went to the server
    assert out["solution"] in [c["text"] for c in candidates]


async def test_llm_judge_scores_from_server_logprobs(openai_policy):
    judge = LLMJudgePRM(openai_policy)
    assert judge.use_logprobs
    [[right, wrong]] = await judge.score(PROBLEM, [["12 + 7 = 19", "12 + 7 = 5"]])
    assert 0.0 < right < 1.0 and 0.0 < wrong < 1.0
    assert not math.isclose(right, wrong)
    # the score is P(yes) from the server's next-token logprobs of the first question
    question = GenerationRequest(judge_messages(PROBLEM, ["12 + 7 = 19"], 0), max_tokens=1)
    [logprobs] = await openai_policy.next_token_logprobs([question], [*YES_TOKENS, *NO_TOKENS])
    assert all(v <= 0 for v in logprobs.values())
    assert math.isclose(yes_probability(logprobs), right, rel_tol=1e-6)


async def test_openai_policy_continues_a_step_with_the_token_ids_the_server_returned(
    openai_policy, step
):
    [[first]] = await openai_policy.generate([step("")])
    assert first.stop_reason == "\n\n", first  # a step, not the whole solution
    assert first.token_ids  # vLLM's return_token_ids
    continued = step(first.text, first.token_ids)
    prompt = openai_policy.completion_body(continued)["prompt"]
    assert prompt[-len(first.token_ids) :] == list(first.token_ids)  # sent as token ids
    assert openai_policy.tokenizer.decode(prompt) == openai_policy.render_prompt(continued)
    [[second]] = await openai_policy.generate([continued])
    assert second.num_tokens > 0 and second.text.strip()
