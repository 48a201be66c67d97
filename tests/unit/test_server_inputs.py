"""What reaches the endpoint from outside: fuzzed request bodies (seeded) over real HTTP, the
progress lines of every event kind, the run key header, and `ttc serve --strategies`."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langgraph_ttc import backends, cli, events
from langgraph_ttc.policies import OpenAIPolicy
from langgraph_ttc.policies.openai import RUN_HEADER, run_header
from langgraph_ttc.server import Limits, create_app
from langgraph_ttc.strategies import STRATEGIES
from langgraph_ttc.types import GenerationRequest
from tests.endpoint import serving
from tests.fakes import KeywordPRM, ScriptedPolicy, seeded_arithmetic

FUZZ = settings(
    derandomize=True,
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMITS = Limits(max_n=8, max_tokens=64, max_run_tokens=2000, max_body_bytes=4096, run_seconds=5)
SETTING_NAMES = sorted({f for info in STRATEGIES.values() for f in info.settings.model_fields})
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
SMALL = st.one_of(st.integers(0, 9), st.floats(0, 2), st.sampled_from(["majority", "last"]))
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "robot"]), "content": st.text()}
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=20)}
                ),
                max_size=3,
            ),
        }
    ),
    ODD,
)
# near-valid bodies, so that many runs start (and stream) with random settings
NEAR_VALID = st.fixed_dictionaries(
    {
        "model": st.sampled_from(list(STRATEGIES)),
        "messages": st.just([{"role": "user", "content": "What is 12 + 7?"}]),
        "ttc": st.dictionaries(
            st.sampled_from(
                [
                    "n",
                    "beam_width",
                    "max_iterations",
                    "max_tokens",
                    "temperature",
                    "seed",
                    "selection",
                    "rounds",
                    "batch_size",
                    "probe_n",
                    "lookahead",
                ]
            ),
            st.one_of(st.integers(1, 4), st.floats(0.1, 1.5), st.sampled_from(["majority"])),
            max_size=4,
        ),
    },
    optional={"stream": st.booleans(), "seed": st.integers(0, 5), "max_tokens": st.integers(1, 64)},
)
WILD = st.fixed_dictionaries(
    {
        "model": st.one_of(st.sampled_from([*STRATEGIES, "gpt-4o", ""]), ODD),
        "messages": st.one_of(st.lists(MESSAGE, max_size=3), ODD),
    },
    optional={
        "stream": st.one_of(st.booleans(), ODD),
        "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), ODD),
        "max_tokens": st.one_of(st.integers(-5, 80), ODD),
        "temperature": st.one_of(st.floats(-1, 3), ODD),
        "seed": st.one_of(st.integers(-10, 10**20), ODD),
        "n": st.one_of(st.integers(0, 3), ODD),
        "ttc": st.one_of(
            st.dictionaries(
                st.sampled_from([*SETTING_NAMES, "chains", "bogus"]),
                st.one_of(SMALL, ODD),
                max_size=5,
            ),
            ODD,
        ),
    },
)


@pytest.fixture(scope="module")
def url():
    app = create_app(ScriptedPolicy(seeded_arithmetic), KeywordPRM({"=": 0.8}), limits=LIMITS)
    with serving(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        yield client


def check_reply(reply: httpx.Response) -> None:
    assert reply.status_code < 500, reply.text
    assert "Traceback" not in reply.text
    if reply.status_code != 200:
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    elif reply.headers["content-type"].startswith("text/event-stream"):
        data = [line for line in reply.text.splitlines() if line.startswith("data: ")]
        assert data[-1] == "data: [DONE]"
        for line in data[:-1]:  # chunks, or an error object (a run that failed)
            chunk = json.loads(line.removeprefix("data: "))
            code = chunk.get("error", {}).get("code")
            assert not isinstance(code, int) or code < 500, chunk
    else:
        assert isinstance(reply.json()["choices"][0]["message"]["content"], str)


BODY = st.one_of(NEAR_VALID, WILD)


@FUZZ
@given(body=BODY)
def test_fuzzed_bodies_never_get_a_5xx_nor_hang(url, body):
    check_reply(url.post("/chat/completions", json=body))


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_fuzzed_bytes_never_get_a_5xx_nor_hang(url, raw):
    headers = {"content-type": "application/json"}
    check_reply(url.post("/chat/completions", content=raw, headers=headers))


# -- progress lines -------------------------------------------------------------------------

EVENTS = [
    {"type": "candidate", "strategy": "beam_search", "iteration": 2, "id": 3, "parent": 1,
     "text": "Step 1: 12 + 7 = 19\n\n", "num_tokens": 9, "finished": False},
    {"type": "score", "strategy": "beam_search", "iteration": 2, "id": 3,
     "step_scores": [0.5, 0.9], "score": 0.9},
    {"type": "prune", "strategy": "dvts", "iteration": 2, "kept": [1, 4], "dropped": [2],
     "group": 0},
    {"type": "critique", "strategy": "self_refine", "iteration": 1, "id": 2, "text": "Fine."},
    {"type": "generation", "strategy": "best_of_n", "tokens": 120, "seconds": 1.25,
     "sequences": 8, "finished": 3},
    {"type": "error", "strategy": "best_of_n", "id": 5, "message": "verifier timed out"},
    {"type": "route", "strategy": "compute_optimal", "signal": 0.42, "bin": 1, "budget": 8,
     "route": "beam_search", "settings": {"n": 8}},
    {"type": "selected", "strategy": "beam_search", "id": 3, "answer": "19", "score": 0.9},
]  # fmt: skip


def test_every_event_kind_has_its_own_line():
    lines = [events.describe(event) for event in EVENTS]
    assert lines == [
        "candidate 3 [step 2] from 1: 9 tokens: Step 1: 12 + 7 = 19",
        "score 3 [step 2]: 0.900 (2 steps)",
        "prune [step 2, group 0]: kept 1, 4; dropped 2",
        "critique of 2 [step 1]: Fine.",
        "generating: 120 tokens, 3/8 samples done, 1.2 s",
        "error (candidate 5): verifier timed out",
        "route: beam_search (difficulty signal 0.42, bin 1, budget 8)",
        "selected 3: answer 19 (score 0.900)",
    ]
    assert all("\n" not in line for line in lines)
    # a kind added later, or a malformed event, still gets a line
    assert events.describe({"type": "expand", "strategy": "mcts", "node": 4}) == "expand: node=4"
    assert events.describe({"type": "score", "id": 1, "score": "x"}).startswith("score: ")
    long = events.describe({**EVENTS[0], "text": "word " * 100})
    assert len(long) < 160 and long.endswith("…")


# -- the run key ----------------------------------------------------------------------------


def test_one_runs_requests_share_a_run_header():
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    first, later = GenerationRequest(messages), GenerationRequest(messages, prefix="Step 1")
    other = GenerationRequest([{"role": "user", "content": "What is 3 + 3?"}])
    assert run_header(first) == run_header(later) != run_header(other)
    with backends.run_key("chatcmpl-1"):
        assert run_header(first) == run_header(other) == "chatcmpl-1"
    assert backends.current_run_key() is None


async def test_openai_policy_sends_the_run_header():
    from tests.fake_openai_server import FakeOpenAIServer

    seen: list[str | None] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.headers.get(RUN_HEADER))

    with FakeOpenAIServer().running() as server:
        policy = OpenAIPolicy(server.url, tokenizer=_Tokenizer())
        policy._client = None
        import openai

        policy._client = openai.AsyncOpenAI(
            base_url=policy.base_url,
            api_key="x",
            http_client=httpx.AsyncClient(event_hooks={"request": [record]}),
        )
        request = GenerationRequest([{"role": "user", "content": "2 + 2?"}], max_tokens=8)
        with backends.run_key("chatcmpl-abc"):
            await policy.generate([request, request])
        await policy.generate([request])
    assert seen[-3:] == ["chatcmpl-abc", "chatcmpl-abc", run_header(request)]


class _Tokenizer:
    """Enough of a tokenizer for OpenAIPolicy's prompt rendering."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **_):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def encode(self, text, add_special_tokens=False):
        return list(range(len(text.split())))


# -- ttc serve --strategies -----------------------------------------------------------------


def test_serve_strategies_runs_the_endpoint_with_the_flags(monkeypatch, capsys):
    import uvicorn

    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    monkeypatch.setenv("TTC_API_KEY", "from-env")
    argv = ["serve", "--strategies", "--upstream", "http://127.0.0.1:9/v1", "--port", "8123",
            "--max-n", "16", "--run-seconds", "30", "--prm", "none"]  # fmt: skip
    assert cli.main(argv) == 0
    endpoint = ran["app"].state.endpoint
    assert ran["port"] == 8123 and endpoint.api_key == "from-env"
    assert endpoint.limits == Limits(max_n=16, run_seconds=30)
    assert isinstance(endpoint.policy, OpenAIPolicy) and endpoint.prm is None
    assert endpoint.policy.base_url == "http://127.0.0.1:9/v1"
    err = capsys.readouterr().err
    assert "from-env" not in err and "/v1/chat/completions" in err


def test_upstream_without_strategies_is_a_clear_error(capsys):
    assert cli.main(["serve", "--upstream", "http://127.0.0.1:9/v1"]) == 1
    assert "add --strategies" in capsys.readouterr().err


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_every_strategy_answers_with_its_defaults(url, strategy):
    """OpenAI fields a strategy does not read (greedy's seed) are left out; a budget that
    pays one sample per round (adaptive majority) runs as many rounds as it needs."""
    body = {"model": strategy, "messages": [{"role": "user", "content": "What is 12 + 7?"}]}
    reply = url.post("/chat/completions", json={**body, "seed": 0, "temperature": 0.7})
    assert reply.status_code == 200, reply.text
    assert reply.json()["ttc"]["usage"]["policy_tokens"] > 0
