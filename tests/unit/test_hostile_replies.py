"""OpenAIPolicy against a hostile OpenAI-compatible server: every malformed, oversized or
endless reply ends in a clear `PolicyError` naming the URL (never the API key) within the
call's timeout; tokens are counted by the policy; a withheld sample is an isolated failure."""

import asyncio
import json
import re
import threading
import time

import pytest

from langgraph_ttc.errors import PolicyContractError
from langgraph_ttc.models import prepare_embedded_model
from langgraph_ttc.policies import OpenAIPolicy, PolicyError
from langgraph_ttc.policies.openai import _load_tokenizer
from langgraph_ttc.policies.replies import counted_tokens, estimate_tokens, max_text_chars
from langgraph_ttc.strategies import create_best_of_n
from langgraph_ttc.types import Completion, GenerationRequest
from tests.unit.hostile_server import HostileServer, Reply

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
SECRET = "sk-SECRET-123"
REQUEST = GenerationRequest(MESSAGES, n=2, max_tokens=20, stop=("\n\n",))

# mode -> what the PolicyError says (each of these crashed, hung or passed before)
MALFORMED = {
    "missing choices": "choices: Field required",
    "null choices": "choices: Input should be a valid list",
    "empty choices": "choices: List should have at least 1 item",
    "fewer choices": r"indices \[1\] for n=2",
    "index null": "choices.0.index: Input should be a valid integer",
    "duplicate indices": r"indices \[0, 0\] for n=2",
    "index out of range": r"indices \[7, 7\] for n=2",
    "html": r"not JSON \(text/html",
    "sse": "an event stream",
    "json list": "body: Input should be a valid dictionary",
    "json string": "body: Input should be a valid dictionary",
    "json null": "body: Input should be a valid dictionary",
    "invalid json": r"not JSON \(application/json, JSONDecodeError\)",
    "not utf-8": "not JSON",
    "deep json": "not JSON",
    "huge text": "a reply of more than",
    "long text": "a text of 100000 characters for max_tokens=20",
    "many logprobs": "a reply of more than",
    "more tokens than asked": "500 logprobs.tokens for max_tokens=20",
    "token_ids overflow": "token_ids.0: Input should be less than 2147483648",
    "token_ids strings": "token_ids.0: Input should be a valid integer",
    "string logprobs": "token_logprobs.0: Input should be a valid number",
    "nan logprobs": "token_logprobs.0: Input should be a finite number",
    "positive logprobs": "token_logprobs.0: Input should be less than or equal to 0",
    "text null": "text: Input should be a valid string",
    "text number": "text: Input should be a valid string",
    "unknown finish": "unknown finish_reason 'banana'",
    "finish null": "unknown finish_reason 'None'",
    "stop_reason not asked": "stop_reason names a stop string the request did not ask for",
    "500 html": "answered 500 after 2 tries",
}


@pytest.fixture(scope="module")
def tokenizer_dir() -> str:
    return str(prepare_embedded_model())


@pytest.fixture(scope="module")
def server():
    with HostileServer().running() as running:
        yield running


def make_policy(server: HostileServer, tokenizer_dir: str, **kwargs) -> OpenAIPolicy:
    options = {"timeout": 10.0, "max_retries": 1, "api_key": SECRET, **kwargs}
    return OpenAIPolicy(server.url, "fake-model", tokenizer=tokenizer_dir, **options)


async def fails(policy: OpenAIPolicy, request: GenerationRequest = REQUEST) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        await policy.generate([request])
    message = str(info.value)
    assert policy.base_url in message and SECRET not in message
    return info.value


@pytest.mark.parametrize("mode", sorted(MALFORMED))
async def test_a_malformed_reply_is_a_policy_error_naming_the_url(server, tokenizer_dir, mode):
    server.mode = mode
    error = await fails(make_policy(server, tokenizer_dir))
    assert re.search(MALFORMED[mode], str(error)), str(error)
    assert len(str(error)) < 1000  # the body is never echoed


async def test_a_dripping_server_ends_within_the_timeout(server, tokenizer_dir):
    policy = make_policy(server, tokenizer_dir)
    await policy.start()
    policy.timeout = 2.0
    server.mode = "drip"  # one byte every 0.5 s, never the end of the reply
    started = time.monotonic()
    error = await fails(policy)
    assert time.monotonic() - started < 5.0  # 2 s, and room for a loaded machine
    assert "/completions did not answer within timeout=2.0s (1 try made)" in str(error)


async def test_a_retry_after_past_the_deadline_is_not_waited_for(server, tokenizer_dir):
    server.mode = "retry-after huge"
    calls, started = server.completions_calls, time.monotonic()
    error = await fails(make_policy(server, tokenizer_dir, max_retries=3))
    assert time.monotonic() - started < 5.0  # no 100000 s wait
    assert "answered 503 after 1 try" in str(error)
    assert server.completions_calls == calls + 1


async def test_a_withheld_sample_is_an_isolated_failure(server, tokenizer_dir):
    server.mode = "content_filter"
    [samples] = await make_policy(server, tokenizer_dir).generate([REQUEST])
    assert [s.text for s in samples] == ["", ""]
    assert all("withheld sample" in s.error for s in samples)
    graph = create_best_of_n(make_policy(server, tokenizer_dir), None, n=2, max_tokens=20)
    out = await graph.ainvoke({"problem": "What is 2 + 2?"})
    assert out["answer"] is None
    assert len(out["usage"]["errors"]) == 2 and "content_filter" in out["usage"]["errors"][0]
    assert all(c["error"] for c in out["candidates"])


async def test_listed_tokens_cannot_overspend_a_budget(server, tokenizer_dir):
    server.mode = "many logprobs"  # 10**6 logprob tokens for max_tokens=20
    graph = create_best_of_n(
        make_policy(server, tokenizer_dir), None, n=4, max_tokens=20, budget_tokens=100
    )
    with pytest.raises(PolicyError, match="a reply of more than"):
        await graph.ainvoke({"problem": "What is 2 + 2?"})


async def test_tokens_are_counted_from_the_text_not_the_servers_usage(server, tokenizer_dir):
    server.mode = "negative usage"  # usage completion_tokens=-500 and no logprobs
    policy = make_policy(server, tokenizer_dir)
    [samples] = await policy.generate([REQUEST])
    counted = len(policy.tokenizer.encode(samples[0].text, add_special_tokens=False))
    assert [s.num_tokens for s in samples] == [counted, counted] and counted > 0


def test_token_counts_are_clipped_to_max_tokens():
    assert counted_tokens([5, None], text_tokens=40, max_tokens=20) == 20
    assert counted_tokens([None, None], text_tokens=3, max_tokens=20) == 3
    assert counted_tokens([7, 2], text_tokens=3, max_tokens=20) == 7
    assert estimate_tokens("") == 0 and estimate_tokens("abcde") == 2
    assert max_text_chars(20) == 20 * 64 + 256


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("empty choices", "List should have at least 1 item"),
        ("logprob keys bad", "returned no logprob for token ids"),
        ("logprob values strings", "Input should be a valid number"),
        ("logprob values positive", "less than or equal to 0"),
        ("html", "not JSON"),
    ],
)
async def test_next_token_logprobs_replies_are_validated(server, tokenizer_dir, mode, message):
    server.mode = mode
    policy = make_policy(server, tokenizer_dir)
    with pytest.raises(PolicyError, match=message):
        await policy.next_token_logprobs([GenerationRequest(MESSAGES)], ["Yes", "No"])


@pytest.mark.parametrize("ids", [[-1], [10**12], ["1"], [True], "12"])
async def test_bad_prefix_token_ids_are_refused_before_any_http(server, tokenizer_dir, ids):
    server.mode = "ok"
    calls = server.completions_calls
    request = GenerationRequest(MESSAGES, prefix="Step 1:", prefix_token_ids=ids)
    with pytest.raises(ValueError, match="prefix_token_ids"):
        await make_policy(server, tokenizer_dir).generate([request])
    assert server.completions_calls == calls


async def test_a_start_cancelled_mid_load_does_not_break_the_next(server, tokenizer_dir):
    server.mode = "ok"
    policy = make_policy(server, tokenizer_dir)
    task = asyncio.create_task(policy.start())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    [samples] = await policy.generate([REQUEST])
    assert len(samples) == 2


def test_tokenizers_load_from_many_threads_at_once(tokenizer_dir):
    loaded, errors = [], []

    def load() -> None:
        try:
            loaded.append(_load_tokenizer(tokenizer_dir))
        except Exception as error:  # collected: the assertion below names it
            errors.append(error)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(loaded) == 4


async def test_an_error_message_never_echoes_the_api_key(server, tokenizer_dir):
    def echo(body):
        message = json.dumps({"error": {"message": f"bad key {SECRET}"}}).encode()
        return Reply(status=400, raw=message)

    server.script = echo
    try:
        with pytest.raises(ValueError, match=r"rejected the request: bad key \*\*\*") as info:
            await make_policy(server, tokenizer_dir).generate([REQUEST])
    finally:
        server.script = None
    assert SECRET not in str(info.value)


class CountingPolicy:
    """Reports `num_tokens` for every sample, whatever it generated."""

    def __init__(self, num_tokens: int) -> None:
        self.num_tokens = num_tokens

    async def generate(self, requests):
        return [
            [Completion("The answer is 4.", "stop", None, self.num_tokens) for _ in range(r.n)]
            for r in requests
        ]


async def test_a_run_charges_at_most_max_tokens_per_sample_and_refuses_negative_counts():
    graph = create_best_of_n(CountingPolicy(10**6), None, n=4, max_tokens=20, budget_tokens=100)
    out = await graph.ainvoke({"problem": "What is 2 + 2?"})
    assert out["usage"]["budget_spent"] == out["usage"]["policy_tokens"] == 80
    graph = create_best_of_n(CountingPolicy(-500), None, n=4, max_tokens=20)
    with pytest.raises(PolicyContractError, match="counted -500 tokens"):
        await graph.ainvoke({"problem": "What is 2 + 2?"})
