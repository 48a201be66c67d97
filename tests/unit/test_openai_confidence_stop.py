"""OpenAIPolicy applies a `ConfidenceStop` rule on streamed completions: each sample streams on
its own, is stopped at the token where the rule fires (`finish_reason="confidence"`) and its
stream closed; streamed chunks are validated like whole replies."""

import asyncio
import json
import random

import pytest

from langgraph_ttc.confidence import StopMonitor
from langgraph_ttc.models import prepare_embedded_model
from langgraph_ttc.policies import OpenAIPolicy, PolicyError
from langgraph_ttc.policies.streams import EventParser
from langgraph_ttc.types import ConfidenceStop, GenerationRequest
from tests.fake_openai_server import FakeOpenAIServer
from tests.unit.hostile_server import HostileServer, Reply

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]
TEXT = " ".join(f"w{i}" for i in range(20))  # 20 tokens, then "[0] " makes 21
RULE = ConfidenceStop(window=2, threshold=1.0)


@pytest.fixture(scope="module")
def tokenizer_dir() -> str:
    return str(prepare_embedded_model())


def confidences_by_seed(script: dict[int | None, list[float]]):
    """Top logprobs (k=1) giving token i of the stream seeded s the confidence script[s][i]
    (the last value repeats)."""

    def top(body, position):
        values = script[body.get("seed")]
        return {"a": -values[min(position, len(values) - 1)]}

    return top


def make_policy(url: str, tokenizer_dir: str, **kwargs) -> OpenAIPolicy:
    return OpenAIPolicy(url, "fake-model", tokenizer=tokenizer_dir, **kwargs)


async def wait_for(condition, seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def test_a_stream_stops_at_the_token_where_the_rule_fires(tokenizer_dir):
    # windows of 2: (3, 3) ... (3, 0.1) = 1.55, then (0.1, 0.1) < 1.0 at token 5
    script = {None: [3.0, 3.0, 3.0, 3.0, 0.1]}
    with FakeOpenAIServer(text=TEXT, script_top_logprobs=confidences_by_seed(script)).running() as (
        server
    ):
        policy = make_policy(server.url, tokenizer_dir)
        request = GenerationRequest(MESSAGES, max_tokens=64, top_logprobs=1, confidence_stop=RULE)
        [[sample]] = await policy.generate([request])
        assert await wait_for(lambda: server.streams_closed == 1)
        [body] = server.received
    assert (body["stream"], body["n"], body["logprobs"]) == (True, 1, 1)
    assert body["return_tokens_as_token_ids"] is True
    assert sample.finish_reason == "confidence" and sample.stop_reason is None
    assert sample.text == "[0] w0 w1 w2 w3 w4 "  # the 6 tokens streamed up to the stop
    counted = len(policy.tokenizer.encode(sample.text, add_special_tokens=False))
    assert sample.num_tokens == max(6, counted)  # the streamed tokens, or the text's count
    assert sample.token_confidences == (3.0, 3.0, 3.0, 3.0, 0.1, 0.1)
    assert server.streams_completed == 0  # closed by the client, not read to its end


async def test_the_same_rule_as_the_engine_policy(tokenizer_dir):
    """The stop position is the one `StopMonitor` (VLLMPolicy's rule) gives."""
    values = [2.0, 0.5, 2.0, 1.2, 0.9, 0.7, 0.2, 3.0]
    rule = ConfidenceStop(window=3, threshold=1.0)
    monitor = StopMonitor(rule)
    expected = next(i for i, c in enumerate(values) if monitor.push(c)) + 1
    with FakeOpenAIServer(
        text=TEXT, script_top_logprobs=confidences_by_seed({3: values})
    ).running() as server:
        policy = make_policy(server.url, tokenizer_dir)
        request = GenerationRequest(MESSAGES, top_logprobs=1, confidence_stop=rule, seed=3)
        [[sample]] = await policy.generate([request])
    assert sample.finish_reason == "confidence"
    assert sample.token_confidences == tuple(values[:expected])


async def test_a_rule_that_never_fires_runs_to_the_end(tokenizer_dir):
    with FakeOpenAIServer(
        text="2 + 2 = 4\n\nThe answer is 4.", top_logprobs={"a": -2.0, "b": -4.0}
    ).running() as server:
        policy = make_policy(server.url, tokenizer_dir)
        stopped = GenerationRequest(
            MESSAGES, top_logprobs=2, confidence_stop=RULE, stop=("\n\n",), seed=1
        )
        ended = GenerationRequest(MESSAGES, top_logprobs=2, confidence_stop=RULE, max_tokens=3)
        [[by_stop], [by_length]] = await policy.generate([stopped, ended])
        assert server.streams_completed == 2 and server.streams_closed == 0
    assert (by_stop.text, by_stop.finish_reason, by_stop.stop_reason) == (
        "[0] 2 + 2 = 4\n\n",
        "stop",
        "\n\n",
    )
    assert by_stop.token_confidences == (3.0,) * 6 and by_stop.num_tokens >= 6
    assert math_isclose(by_stop.logprob, -3.0)
    assert (by_length.finish_reason, by_length.stop_reason, by_length.num_tokens) == (
        "length",
        None,
        3,
    )


def math_isclose(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) < 1e-9


async def test_samples_stop_independently(tokenizer_dir):
    script = {7: [3.0, 3.0, 0.1], 8: [3.0], 9: [3.0, 3.0, 3.0, 3.0, 0.2, 0.2]}
    with FakeOpenAIServer(text=TEXT, script_top_logprobs=confidences_by_seed(script)).running() as (
        server
    ):
        policy = make_policy(server.url, tokenizer_dir)
        request = GenerationRequest(
            MESSAGES, n=3, seed=7, max_tokens=64, top_logprobs=1, confidence_stop=RULE
        )
        plain = GenerationRequest(MESSAGES, n=2, top_logprobs=1)  # no rule: one plain request
        [samples, unruled] = await policy.generate([request, plain])
        assert await wait_for(lambda: server.streams_closed == 2)
        streamed = [b for b in server.received if b.get("stream")]
    assert sorted((b["seed"], b["n"]) for b in streamed) == [(7, 1), (8, 1), (9, 1)]
    assert [s.finish_reason for s in samples] == ["confidence", "stop", "confidence"]
    assert [len(s.token_confidences) for s in samples] == [4, 21, 6]
    assert samples[1].text == f"[0] {TEXT}"
    assert samples[0].num_tokens < samples[2].num_tokens < samples[1].num_tokens
    assert [s.finish_reason for s in unruled] == ["stop", "stop"]
    assert server.streams_completed == 1


async def test_concurrency_bounds_the_streams(tokenizer_dir):
    with FakeOpenAIServer(text=TEXT, top_logprobs={"a": -3.0}, chunk_delay=0.02).running() as (
        server
    ):
        policy = make_policy(server.url, tokenizer_dir, max_concurrency=2)
        request = GenerationRequest(MESSAGES, n=5, seed=0, top_logprobs=1, confidence_stop=RULE)
        [samples] = await policy.generate([request])
        streams = server.streams_completed
    assert streams == 5 and len(samples) == 5
    assert 1 <= server.max_open_streams <= 2


async def test_a_continued_prefix_streams_its_token_ids(tokenizer_dir):
    with FakeOpenAIServer(text="2 + 2 = 4", top_logprobs={"a": -3.0}).running() as server:
        policy = make_policy(server.url, tokenizer_dir)
        await policy.start()
        server.tokenizer = policy.tokenizer
        first = GenerationRequest(MESSAGES, top_logprobs=1, confidence_stop=RULE)
        [[step]] = await policy.generate([first])
        continued = GenerationRequest(
            MESSAGES,
            prefix=step.text,
            prefix_token_ids=step.token_ids,
            top_logprobs=1,
            confidence_stop=RULE,
        )
        [[after]] = await policy.generate([continued])
        first_body, continued_body = server.received
    assert step.token_ids and policy.tokenizer.decode(step.token_ids) == step.text
    chat = policy.tokenizer.encode(first_body["prompt"], add_special_tokens=False)
    assert continued_body["prompt"] == [*chat, *step.token_ids]
    assert continued_body["stream"] is True and after.finish_reason == "stop"


def sse(*events: object) -> Reply:
    """A streamed reply of these events (dicts as JSON, bytes as they are)."""
    raw = b"".join(
        b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )
    return Reply(content_type="text/event-stream", raw=raw)


def chunk(text: str = "4", finish: str | None = None, top: object = None, **fields) -> dict:
    """One streamed token (confidence 3.0 unless `top` says: the rule does not fire)."""
    choice = {
        "index": 0,
        "text": text,
        "finish_reason": finish,
        "logprobs": {
            "tokens": [text],
            "token_logprobs": [-0.1],
            "top_logprobs": [top or {"a": -3.0}],
        },
        **fields,
    }
    return {"id": "c", "object": "text_completion", "choices": [choice]}


GOOD = chunk()
# what the server streams -> what the PolicyError says
MALFORMED_STREAMS = {
    "not json": (sse(GOOD, b"{oops"), r"streamed a chunk that is not JSON \(JSONDecodeError\)"),
    "choices not a list": (sse({"choices": {"0": 1}}), "streamed a malformed chunk: choices"),
    "missing choices": (sse({"id": "c"}), "streamed a malformed chunk: choices: Field required"),
    "text null": (sse(chunk(text=None)), "malformed chunk: choices.0.text"),
    "positive logprob": (
        sse(chunk(top={"a": 0.5})),
        "malformed chunk: choices.0.logprobs.top_logprobs",
    ),
    "nan logprob": (
        Reply(
            content_type="text/event-stream",
            raw=b'data: {"choices": [{"index": 0, '
            b'"text": "x", "finish_reason": null, "logprobs": {"token_logprobs": [NaN]}}]}\n\n',
        ),
        "malformed chunk: choices.0.logprobs.token_logprobs",
    ),
    "two choices": (
        sse({"choices": [chunk()["choices"][0], chunk()["choices"][0]]}),
        "malformed chunk: choices: List should have at most 1 item",
    ),
    "no top logprobs": (
        sse(chunk(logprobs={"tokens": ["4"], "token_logprobs": [-0.1]})),
        "streamed tokens without the top log-probabilities",
    ),
    "another sample": (sse(chunk(index=3)), "streamed choice 3 for one sample"),
    "unknown finish": (sse(GOOD, chunk(finish="banana")), "unknown finish_reason 'banana'"),
    "error event": (
        sse(GOOD, {"error": {"message": "engine overloaded", "code": 500}}),
        "reported an error mid-stream: engine overloaded",
    ),
    "ends early": (sse(GOOD, GOOD, b"[DONE]"), "ended the stream before the sample finished"),
    "no done, no finish": (sse(GOOD), "ended the stream before the sample finished"),
    "json, not events": (
        Reply(raw=json.dumps({"choices": []}).encode()),
        "answered a streamed request with application/json, not events",
    ),
    "too many tokens": (
        sse(*[GOOD] * 9, chunk(finish="length")),
        "10 logprobs.tokens for max_tokens=8",
    ),
    "huge text": (sse(chunk(text="x" * 1000, finish="stop")), "a text of 1000 characters"),
}


@pytest.mark.parametrize("mode", MALFORMED_STREAMS)
async def test_malformed_streams_are_clear_policy_errors(mode, tokenizer_dir):
    scripted, message = MALFORMED_STREAMS[mode]
    server = HostileServer(script=lambda body: scripted)
    with server.running():
        policy = make_policy(server.url, tokenizer_dir, timeout=5, max_retries=0)
        request = GenerationRequest(MESSAGES, max_tokens=8, top_logprobs=1, confidence_stop=RULE)
        with pytest.raises(PolicyError, match=message) as info:
            await policy.generate([request])
    assert server.url in str(info.value)


async def test_an_oversized_stream_is_cut_off(tokenizer_dir, monkeypatch):
    monkeypatch.setattr("langgraph_ttc.policies.openai.max_stream_bytes", lambda tokens: 2000)
    server = HostileServer(script=lambda body: sse(*[GOOD] * 30))
    with server.running():
        policy = make_policy(server.url, tokenizer_dir, timeout=5, max_retries=0)
        request = GenerationRequest(MESSAGES, max_tokens=64, top_logprobs=1, confidence_stop=RULE)
        with pytest.raises(PolicyError, match="streamed more than 2000 bytes"):
            await policy.generate([request])


async def test_an_endless_stream_ends_within_the_timeout(tokenizer_dir):
    server = HostileServer(
        script=lambda body: Reply(content_type="text/event-stream", drip=True), drip_seconds=0.1
    )
    with server.running():
        policy = make_policy(server.url, tokenizer_dir, timeout=1.0, max_retries=0)
        request = GenerationRequest(MESSAGES, top_logprobs=1, confidence_stop=RULE)
        started = asyncio.get_running_loop().time()
        with pytest.raises(PolicyError, match=r"did not answer within timeout=1\.0s"):
            await policy.generate([request])
    # ends near its timeout (a loaded machine may add seconds), not with the endless stream
    assert asyncio.get_running_loop().time() - started < 10


async def test_a_503_before_the_stream_is_retried(tokenizer_dir):
    with FakeOpenAIServer(text="4", top_logprobs={"a": -3.0}, fail_with=[503]).running() as (
        server
    ):
        policy = make_policy(server.url, tokenizer_dir, max_retries=1)
        request = GenerationRequest(MESSAGES, top_logprobs=1, confidence_stop=RULE)
        [[sample]] = await policy.generate([request])
    assert server.completions_calls == 2 and sample.finish_reason == "stop"


def test_event_parser_joins_data_lines_across_chunks():
    parser = EventParser()
    assert parser.feed(b'data: {"a"') == []
    assert parser.feed(b": 1}\r\n\r\n: a comment\n\nevent: x\ndata: 1\ndata: 2\n") == [b'{"a": 1}']
    assert parser.feed(b"\n") == [b"1\n2"]


def broken_stream(rng: random.Random) -> Reply:
    """A valid stream of a few tokens, then one random fault (or none)."""
    events: list[object] = [chunk(f"t{i} ") for i in range(rng.randrange(1, 6))]
    events.append(chunk("end", finish="stop"))
    raw = (
        b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    )
    fault = rng.choice(["none", "truncate", "flip", "insert", "drop newlines"])
    if fault == "truncate":
        raw = raw[: rng.randrange(len(raw))]
    elif fault == "flip":
        at = rng.randrange(len(raw))
        raw = raw[:at] + bytes([rng.randrange(256)]) + raw[at + 1 :]
    elif fault == "insert":
        at = rng.randrange(len(raw))
        raw = raw[:at] + rng.choice([b"\n\n", b"data: ", b"{", b"\xff", b"null"]) + raw[at:]
    elif fault == "drop newlines":
        raw = raw.replace(b"\n\n", b"\n", rng.randrange(1, 4))
    return Reply(content_type="text/event-stream", raw=raw)


async def test_randomly_broken_streams_give_a_sample_or_a_policy_error(tokenizer_dir):
    rng = random.Random(23)
    replies: list[Reply] = []
    server = HostileServer(script=lambda body: replies[-1])
    outcomes = {"sample": 0, "error": 0}
    with server.running():
        policy = make_policy(server.url, tokenizer_dir, timeout=5, max_retries=0)
        request = GenerationRequest(MESSAGES, max_tokens=16, top_logprobs=1, confidence_stop=RULE)
        for _ in range(60):
            replies.append(broken_stream(rng))
            try:
                [[sample]] = await policy.generate([request])
            except PolicyError as error:
                assert server.url in str(error)
                outcomes["error"] += 1
            else:
                assert sample.finish_reason in ("stop", "confidence", "length")
                assert 0 < sample.num_tokens <= 16
                outcomes["sample"] += 1
    assert outcomes["sample"] and outcomes["error"]
