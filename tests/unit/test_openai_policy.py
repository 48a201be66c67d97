"""OpenAIPolicy against a small OpenAI-compatible server on loopback (real HTTP)."""

import asyncio
import math
import time

import pytest

from langgraph_ttc.models import prepare_embedded_model
from langgraph_ttc.policies import (
    EngineSettings,
    OpenAIPolicy,
    PolicyError,
    VLLMPolicy,
    supports_prefix,
)
from langgraph_ttc.policies.openai import normalize_base_url
from langgraph_ttc.types import GenerationRequest
from langgraph_ttc.vllm_serve import free_port, serve_command
from tests.fake_openai_server import FakeOpenAIServer

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def tokenizer_dir() -> str:
    return str(prepare_embedded_model())


@pytest.fixture
def server():
    with FakeOpenAIServer().running() as running:
        yield running


class OneTokenPerCharacter:
    """A server-side tokenizer that gives every character its own token: ids that decode to
    the text, but not the ids the policy's tokenizer encodes it to."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def encode(self, text, add_special_tokens=False):
        return [i for char in text for i in self.tokenizer.encode(char, add_special_tokens=False)]


def make_policy(url: str, tokenizer_dir: str, **kwargs) -> OpenAIPolicy:
    return OpenAIPolicy(url, "fake-model", tokenizer=tokenizer_dir, **kwargs)


async def test_request_fields_and_parsed_completions(server, tokenizer_dir):
    policy = make_policy(server.url, tokenizer_dir)
    request = GenerationRequest(MESSAGES, prefix="Step 1:", n=3, stop=("\n\n",), seed=5)
    [samples] = await policy.generate([request])

    [body] = server.received
    expected_prompt = (
        policy.tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
        + "Step 1:"
    )
    assert body["prompt"] == expected_prompt
    assert body["prompt"].count("<|im_start|>assistant") == 1
    assert body["add_special_tokens"] is False
    assert body["include_stop_str_in_output"] is True
    assert body["return_token_ids"] is True  # vLLM's extension, for continued prefixes
    assert (body["n"], body["stop"], body["seed"], body["logprobs"]) == (3, ["\n\n"], 5, 0)
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("fake-model", 1024, 0.8)

    assert [s.text for s in samples] == [f"[{i}] 2 + 2 = 4\n\n" for i in range(3)]
    assert all(s.stop_reason == "\n\n" and s.finish_reason == "stop" for s in samples)
    # the server lists 6 logprob tokens; the policy counts the most of that and the text's tokens
    counted = [len(policy.tokenizer.encode(s.text, add_special_tokens=False)) for s in samples]
    assert [s.num_tokens for s in samples] == [max(6, c) for c in counted]
    assert all(math.isclose(s.logprob, -3.0) for s in samples)


async def test_token_confidences_from_the_top_logprobs(server, tokenizer_dir):
    policy = make_policy(server.url, tokenizer_dir)
    server.top_logprobs = {"a": -0.5, "b": -1.5, "c": -4.0}
    [samples] = await policy.generate([GenerationRequest(MESSAGES, n=2, top_logprobs=2)])
    assert server.received[0]["logprobs"] == 2
    for sample in samples:
        # the 2 best of each position: -(-0.5 - 1.5) / 2
        assert sample.token_confidences and set(sample.token_confidences) == {1.0}


async def test_a_continued_prefix_is_sent_as_the_token_ids_the_server_returned(tokenizer_dir):
    with FakeOpenAIServer(text="2 + 2 = 4").running() as server:
        policy = make_policy(server.url, tokenizer_dir)
        await policy.start()
        server.tokenizer = OneTokenPerCharacter(policy.tokenizer)
        [[step]] = await policy.generate([GenerationRequest(MESSAGES)])
        ids = step.token_ids
        await policy.generate([GenerationRequest(MESSAGES, prefix=step.text, prefix_token_ids=ids)])
        await policy.generate([GenerationRequest(MESSAGES, prefix=step.text)])

    first, continued, text_only = server.received
    assert ids == tuple(server.tokenizer.encode(step.text))  # as the server returned them
    chat = policy.tokenizer.encode(first["prompt"], add_special_tokens=False)
    assert continued["prompt"] == [*chat, *ids]  # the chat template's ids, then the step's
    assert text_only["prompt"] == first["prompt"] + step.text


async def test_eos_and_length(server, tokenizer_dir):
    policy = make_policy(server.url, tokenizer_dir)
    eos, length = await policy.generate(
        [GenerationRequest(MESSAGES), GenerationRequest(MESSAGES, max_tokens=2)]
    )
    assert eos[0].text == "[0] 2 + 2 = 4\n\nThe answer is 4."
    assert (eos[0].finish_reason, eos[0].stop_reason) == ("stop", None)
    assert (length[0].finish_reason, length[0].stop_reason, length[0].num_tokens) == (
        "length",
        None,
        2,
    )


async def test_model_defaults_to_the_only_served_one(server, tokenizer_dir):
    policy = OpenAIPolicy(f"http://127.0.0.1:{server.port}", tokenizer=tokenizer_dir)
    await policy.start()
    assert policy.model == "fake-model"
    assert policy.base_url == server.url


async def test_retries_a_503_then_succeeds(server, tokenizer_dir):
    server.fail_with = [503]
    policy = make_policy(server.url, tokenizer_dir, max_retries=2)
    [samples] = await policy.generate([GenerationRequest(MESSAGES)])
    assert server.completions_calls == 2
    assert samples[0].text.startswith("[0] 2 + 2")


async def test_gives_up_after_the_last_retry(server, tokenizer_dir):
    server.fail_with = [503, 503, 503]
    policy = make_policy(server.url, tokenizer_dir, max_retries=1)
    with pytest.raises(PolicyError, match=r"/v1/completions answered 503 after 2 tries"):
        await policy.generate([GenerationRequest(MESSAGES)])
    assert server.completions_calls == 2


async def test_server_down_names_the_url(tokenizer_dir):
    url = f"http://127.0.0.1:{free_port()}/v1"
    policy = make_policy(url, tokenizer_dir, max_retries=0)
    with pytest.raises(
        PolicyError, match=r"cannot reach the model server at .*127\.0\.0\.1"
    ) as info:
        await policy.generate([GenerationRequest(MESSAGES)])
    assert url in str(info.value)


async def test_wrong_model_name_lists_the_served_ones(server, tokenizer_dir):
    policy = OpenAIPolicy(server.url, "no-such-model", tokenizer=tokenizer_dir)
    with pytest.raises(PolicyError, match=r"does not serve model 'no-such-model'.*fake-model"):
        await policy.generate([GenerationRequest(MESSAGES)])
    assert server.completions_calls == 0


async def test_model_gone_after_start_is_a_policy_error(server, tokenizer_dir):
    policy = make_policy(server.url, tokenizer_dir)
    await policy.start()
    server.models = ["another-model"]
    with pytest.raises(PolicyError, match="answered 404 for model 'fake-model'"):
        await policy.generate([GenerationRequest(MESSAGES)])


async def test_cancelling_closes_the_http_request(server, tokenizer_dir):
    server.hold_until_disconnect = True
    policy = make_policy(server.url, tokenizer_dir)
    task = asyncio.create_task(policy.generate([GenerationRequest(MESSAGES)]))
    for _ in range(200):
        if server.in_flight:
            break
        await asyncio.sleep(0.05)
    assert server.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.disconnected.wait, 5.0)


async def test_max_concurrency_bounds_requests_in_flight(server, tokenizer_dir):
    server.delay = 0.2
    policy = make_policy(server.url, tokenizer_dir, max_concurrency=2)
    results = await policy.generate([GenerationRequest(MESSAGES, seed=i) for i in range(6)])
    assert len(results) == 6
    assert server.max_in_flight == 2


async def test_next_token_logprobs_asks_for_the_token_ids(server, tokenizer_dir):
    policy = make_policy(server.url, tokenizer_dir)
    await policy.start()
    yes = policy.tokenizer.encode("Yes", add_special_tokens=False)[0]
    no = policy.tokenizer.encode("No", add_special_tokens=False)[0]
    server.top_logprobs = {f"token_id:{yes}": -0.25, f"token_id:{no}": -9999.0}
    [logprobs] = await policy.next_token_logprobs([GenerationRequest(MESSAGES)], ["Yes", "No"])
    assert logprobs == {"Yes": -0.25, "No": -math.inf}
    [body] = server.received
    assert sorted(body["logprob_token_ids"]) == sorted([yes, no])
    assert body["return_tokens_as_token_ids"] is True
    assert (body["max_tokens"], body["temperature"], body["add_special_tokens"]) == (1, 0.0, False)


async def test_next_token_logprobs_without_server_support_is_a_policy_error(server, tokenizer_dir):
    policy = make_policy(server.url, tokenizer_dir)
    with pytest.raises(PolicyError, match="logprob_token_ids"):
        await policy.next_token_logprobs([GenerationRequest(MESSAGES)], ["Yes", "No"])


async def test_invalid_requests_are_refused_before_any_http(server, tokenizer_dir):
    policy = make_policy(server.url, tokenizer_dir)
    with pytest.raises(ValueError, match="temperature 0 with n > 1"):
        await policy.generate([GenerationRequest(MESSAGES, n=2, temperature=0.0)])
    assert server.received == []


def test_base_url_gets_the_v1_root():
    assert normalize_base_url("http://h:8000") == "http://h:8000/v1"
    assert normalize_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert normalize_base_url("https://lb.example/api/v1") == "https://lb.example/api/v1"


def test_engine_backed_policies_support_prefixes():
    assert OpenAIPolicy("http://127.0.0.1:1").supports_prefix
    assert supports_prefix(VLLMPolicy())


def test_serve_command_uses_the_cpu_engine_settings():
    argv, env = serve_command(
        "/models/m", EngineSettings(max_model_len=2048, kv_cache_gib=1), port=8123
    )
    joined = " ".join(argv)
    assert "--model /models/m" in joined and "--port 8123" in joined
    assert "--dtype float32" in joined and "--enforce-eager" in argv
    assert "--block-size 32" in joined and "--no-enable-chunked-prefill" in argv
    assert "--max-num-batched-tokens 8192" in joined and "--max-model-len 2048" in joined
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert "VLLM_CPU_OMP_THREADS_BIND" in env
    assert "--disable-log-stats" in argv  # statistics off unless asked for


def test_serve_command_keeps_statistics_on_when_asked():
    """/metrics has request and prefix-cache counters only with vLLM's statistics on."""
    argv, _ = serve_command("/models/m", EngineSettings(max_model_len=2048), stats=True)
    assert "--disable-log-stats" not in argv


def test_stopping_a_server_kills_its_whole_process_group():
    import os
    import subprocess

    from langgraph_ttc.vllm_serve import stop_process_group

    # a parent that ignores SIGTERM, with a child: both must be gone afterwards
    process = subprocess.Popen(
        ["bash", "-c", "trap '' TERM; sleep 60 & wait"], start_new_session=True
    )
    stop_process_group(process, grace=0.5)
    assert process.returncode is not None
    # the killed child is reaped by init, not by us: give it a moment on a busy machine
    deadline = time.monotonic() + 10
    with pytest.raises(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(process.pid, 0)
            time.sleep(0.05)


async def test_a_rejected_request_fails_that_request_only(server, tokenizer_dir):
    server.fail_with = [400]
    policy = make_policy(server.url, tokenizer_dir)
    with pytest.raises(ValueError, match="rejected the request: fake 400") as info:
        await policy.generate([GenerationRequest(MESSAGES)])
    assert not isinstance(info.value, PolicyError)
    assert server.completions_calls == 1  # not retried


async def test_generation_progress_reaches_the_custom_stream(server, tokenizer_dir):
    from langgraph_ttc.strategies import create_best_of_n
    from langgraph_ttc.verifiers import ArithmeticVerifier

    policy = make_policy(server.url, tokenizer_dir)
    graph = create_best_of_n(policy, ArithmeticVerifier(), n=2)
    events = [
        chunk
        async for chunk in graph.astream({"problem": "What is 2 + 2?"}, stream_mode="custom")
        if chunk["type"] == "generation"
    ]
    assert events[-1]["sequences"] == events[-1]["finished"] == 2
    # each fake sample lists 9 logprob tokens; the policy counts its text's tokens if more
    texts = [f"[{i}] {server.text}" for i in range(2)]
    counted = [len(policy.tokenizer.encode(t, add_special_tokens=False)) for t in texts]
    assert events[-1]["tokens"] == sum(max(9, c) for c in counted)
