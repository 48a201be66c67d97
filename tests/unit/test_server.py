"""The strategies endpoint over real HTTP (uvicorn on a loopback port) with fakes: the OpenAI
SDK and ChatOpenAI as clients, streamed and not, its errors and limits, and a client that
leaves cancelling its search."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from pydantic import TypeAdapter

from langgraph_ttc.events import ProgressEvent
from langgraph_ttc.server import Limits, create_app
from langgraph_ttc.strategies import STRATEGIES, create_beam_search, create_best_of_n
from tests.endpoint import DeadPolicy, HangingPolicy, serving
from tests.fakes import KeywordPRM, ScriptedPolicy, seeded_arithmetic

PROBLEM = "Tom has 12 apples and buys 7 more. How many apples does he have now?"
MESSAGES = [{"role": "user", "content": PROBLEM}]
BEAM = {"n": 4, "beam_width": 2, "max_iterations": 3}


def prm() -> KeywordPRM:
    return KeywordPRM({"= 19": 0.9, "answer": 0.7})


@pytest.fixture(scope="module")
def url():
    with serving(create_app(ScriptedPolicy(seeded_arithmetic), prm())) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    return openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=30)


async def reference(builder, **settings):
    graph = builder(ScriptedPolicy(seeded_arithmetic), prm(), **settings)
    return await graph.ainvoke({"problem": PROBLEM})


async def test_a_completion_is_the_selected_solution(client):
    reply = client.chat.completions.create(
        model="best_of_n", messages=MESSAGES, seed=3, max_tokens=200, extra_body={"ttc": {"n": 4}}
    )
    expected = await reference(create_best_of_n, n=4, seed=3, max_tokens=200)
    assert reply.choices[0].message.content == expected["solution"]
    assert reply.choices[0].finish_reason == "stop" and reply.model == "best_of_n"
    assert reply.usage.completion_tokens == expected["usage"]["policy_tokens"] > 0
    ttc = reply.model_extra["ttc"]
    assert ttc["answer"] == expected["answer"]
    assert len(ttc["candidates"]) == 4
    assert {"text", "answer", "score"} <= set(ttc["candidates"][0])
    assert ttc["usage"]["policy_calls"] == 1


async def test_a_streamed_search_reasons_then_answers(client):
    stream = client.chat.completions.create(
        model="beam_search",
        messages=MESSAGES,
        seed=5,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ttc": BEAM},
    )
    chunks = list(stream)
    expected = await reference(create_beam_search, seed=5, **BEAM)
    assert chunks[0].choices[0].delta.role == "assistant"
    kinds = []
    for chunk in chunks:
        if chunk.choices and (chunk.choices[0].delta.model_extra or {}).get("reasoning_content"):
            kinds.append("reasoning")
            event = TypeAdapter(ProgressEvent).validate_python(chunk.model_extra["ttc_event"])
            assert event["strategy"] == "beam_search"
        elif chunk.choices and chunk.choices[0].delta.content:
            kinds.append("content")
    assert kinds.count("content") == 1 and kinds[-1] == "content"
    assert kinds.count("reasoning") >= 6  # candidates, scores, prunes, selected
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected["solution"]
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and finish.count("stop") == 1
    assert chunks[-2].model_extra["ttc"]["answer"] == expected["answer"]
    assert (
        chunks[-1].choices == []
        and chunks[-1].usage.completion_tokens == (expected["usage"]["policy_tokens"])
    )


def test_the_raw_stream_is_server_sent_events(url):
    body = {"model": "best_of_n", "messages": MESSAGES, "stream": True, "ttc": {"n": 2}}
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=30) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[1].removeprefix("data: "))
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"]["reasoning_content"].endswith("\n")


async def test_chat_openai_points_at_the_endpoint(url):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        base_url=url, model="beam_search", api_key="none", seed=5, extra_body={"ttc": BEAM}
    )
    expected = await reference(create_beam_search, seed=5, **BEAM)
    assert chat.invoke(PROBLEM).content == expected["solution"]
    streamed = "".join(str(chunk.content) for chunk in chat.stream(PROBLEM))
    assert streamed == expected["solution"]


def test_models_are_the_strategies_with_their_settings_schemas(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == set(STRATEGIES)
    assert {"best_of_n", "beam_search", "dvts", "self_refine", "particle_filtering"} <= set(models)
    schema = models["beam_search"].model_extra["ttc"]["settings_schema"]
    assert {"n", "beam_width", "max_iterations"} <= set(schema["properties"])
    assert (
        "table" not in models["compute_optimal"].model_extra["ttc"]["settings_schema"]["properties"]
    )  # a file on the server: not a client's to choose
    assert client.models.retrieve("dvts").id == "dvts"


def test_without_a_verifier_the_searches_that_need_one_are_unavailable():
    with serving(create_app(ScriptedPolicy(seeded_arithmetic))) as base:
        cards = httpx.get(f"{base}/models").json()["data"]
        available = {c["id"]: c["ttc"]["available"] for c in cards}
        assert available["best_of_n"] and not available["beam_search"]
        reply = httpx.post(
            f"{base}/chat/completions", json={"model": "beam_search", "messages": MESSAGES}
        )
        assert reply.status_code == 400 and "needs a prm" in reply.json()["error"]["message"]
        reply = httpx.post(
            f"{base}/chat/completions",
            json={"model": "best_of_n", "messages": MESSAGES, "ttc": {"n": 2}},
            timeout=30,
        )
        assert reply.status_code == 200 and reply.json()["ttc"]["answer"]


# -- errors ---------------------------------------------------------------------------------


def post(url: str, body: object, **kwargs) -> httpx.Response:
    reply = httpx.post(f"{url}/chat/completions", json=body, timeout=30, **kwargs)
    assert "Traceback" not in reply.text
    return reply


def error_of(reply: httpx.Response) -> dict:
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_bad_settings_are_a_400_naming_each(url):
    body = {"model": "beam_search", "messages": MESSAGES, "ttc": {"n": 0, "temperature": "hot"}}
    reply = post(url, body)
    assert reply.status_code == 400
    message = error_of(reply)["message"]
    assert "n:" in message and "temperature:" in message
    reply = post(url, {**body, "ttc": {"beam_widht": 2}})
    assert reply.status_code == 400 and "ttc.beam_widht" in error_of(reply)["message"]
    reply = post(url, {**body, "ttc": {"n": 3, "beam_width": 2}})
    assert "multiple of beam_width" in error_of(reply)["message"]


@pytest.mark.parametrize(
    "body, says",
    [
        ({"model": "best_of_n"}, "messages"),
        ({"model": "best_of_n", "messages": []}, "messages"),
        ({"model": "best_of_n", "messages": [{"role": "user", "content": " "}]}, "no problem"),
        ({"model": "best_of_n", "messages": MESSAGES, "n": 3}, "one choice"),
        ({"model": "best_of_n", "messages": MESSAGES, "ttc": {"table": "/etc/passwd"}}, "table"),
        ({"model": "greedy", "messages": MESSAGES, "ttc": {"n": 4}}, "ttc.n"),
        ({"model": "best_of_n", "messages": MESSAGES, "temperature": True}, "temperature"),
    ],
)
def test_bad_requests_are_a_400(url, body, says):
    reply = post(url, body)
    assert reply.status_code == 400 and says in error_of(reply)["message"]


def test_malformed_json_is_a_400(url):
    reply = httpx.post(f"{url}/chat/completions", content=b"{not json", timeout=10)
    assert reply.status_code == 400 and error_of(reply)["type"] == "invalid_request_error"


def test_unknown_model_is_a_404(client, url):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert error_of(post(url, {"model": "gpt-4o", "messages": MESSAGES}))["code"] == (
        "model_not_found"
    )
    assert httpx.get(f"{url}/nowhere").status_code == 404


def test_the_api_key_is_required_and_compared():
    app = create_app(ScriptedPolicy(seeded_arithmetic), prm(), api_key="s3cret")
    with serving(app) as base:
        for key in ("none", "s3cre", "S3CRET", "s3cret2"):
            client = openai.OpenAI(base_url=base, api_key=key, max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
        reply = httpx.post(f"{base}/chat/completions", json={"model": "best_of_n"})
        assert reply.status_code == 401 and "s3cret" not in reply.text
        assert reply.headers["www-authenticate"] == "Bearer"
        client = openai.OpenAI(base_url=base, api_key="s3cret", max_retries=0)
        reply = client.chat.completions.create(
            model="best_of_n", messages=MESSAGES, extra_body={"ttc": {"n": 2}}
        )
        assert reply.choices[0].message.content


def test_limits_are_a_429_and_the_body_size_a_413():
    limits = Limits(max_n=4, max_tokens=64, max_run_tokens=500, max_body_bytes=2048)
    with serving(create_app(ScriptedPolicy(seeded_arithmetic), prm(), limits=limits)) as base:
        for ttc, param in (
            ({"n": 8}, "n"),
            ({"max_tokens": 65}, "max_tokens"),
            ({"budget_tokens": 501}, "budget_tokens"),
        ):
            reply = post(base, {"model": "best_of_n", "messages": MESSAGES, "ttc": ttc})
            assert reply.status_code == 429 and error_of(reply)["param"] == param
        big = [{"role": "user", "content": "x" * 3000}]
        reply = post(base, {"model": "best_of_n", "messages": big})
        assert reply.status_code == 413 and error_of(reply)["code"] == "max_body_bytes"
        # a run's budget is capped to max_run_tokens when the request names none
        reply = post(base, {"model": "best_of_n", "messages": MESSAGES, "ttc": {"n": 2}})
        assert reply.json()["ttc"]["usage"]["budget_tokens"] == 500


def test_concurrent_runs_over_the_limit_are_a_429_and_a_timeout_stops_a_run():
    policy = HangingPolicy()
    limits = Limits(max_concurrent_runs=1, run_seconds=1.0)
    with serving(create_app(policy, prm(), limits=limits)) as base:
        body = {"model": "best_of_n", "messages": MESSAGES, "stream": True, "ttc": {"n": 2}}
        with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=30) as first:
            lines = first.iter_lines()
            assert next(lines).startswith("data: ")  # the role chunk: the run holds the slot
            reply = post(base, {**body, "stream": False})
            assert reply.status_code == 429 and error_of(reply)["code"] == "max_concurrent_runs"
            rest = [line for line in lines if line.startswith("data: ")]
        error = json.loads(rest[-2].removeprefix("data: "))["error"]
        assert error["code"] == "run_seconds" and rest[-1] == "data: [DONE]"
        reply = post(base, {**body, "stream": False})  # the slot is free again; times out
        assert reply.status_code == 429 and error_of(reply)["code"] == "run_seconds"
    assert policy.in_flight == 0 and policy.cancelled == policy.calls == 2


def test_a_dead_engine_is_a_503():
    for policy in (DeadPolicy(health=True), DeadPolicy(health=False)):
        with serving(create_app(policy, prm())) as base:
            body = {"model": "best_of_n", "messages": MESSAGES, "ttc": {"n": 2}}
            reply = post(base, body)
            assert reply.status_code == 503 and error_of(reply)["type"] == "server_error"
            assert httpx.get(f"{base.removesuffix('/v1')}/health").status_code == (
                503 if policy.health else 200
            )
            client = openai.OpenAI(base_url=base, api_key="none", max_retries=0)
            with pytest.raises(openai.APIError):
                streamed = client.chat.completions.create(
                    model="best_of_n", messages=MESSAGES, stream=True, extra_body={"ttc": {"n": 2}}
                )
                list(streamed)


# -- a client that leaves -------------------------------------------------------------------


def wait_until(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_client_that_leaves_cancels_its_search_at_once():
    policy = HangingPolicy()
    app = create_app(policy, prm())
    with serving(app) as base:
        body = {"model": "beam_search", "messages": MESSAGES, "stream": True, "ttc": BEAM}
        with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=30) as reply:
            lines = reply.iter_lines()  # kept: a dropped iterator closes the response
            next(lines)
            assert wait_until(lambda: policy.in_flight == 1)
        assert wait_until(lambda: policy.in_flight == 0, 2.0)  # closed: cancelled at once
        assert policy.cancelled == 1
        assert wait_until(lambda: app.state.endpoint.admission.running == 0)
        # without streaming too: the client gives up waiting, the search stops
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base}/chat/completions", json={**body, "stream": False}, timeout=0.5)
        assert wait_until(lambda: policy.cancelled == 2 and policy.in_flight == 0, 2.0)
        assert wait_until(lambda: app.state.endpoint.admission.running == 0)
