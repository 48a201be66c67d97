"""Seeded fuzzing of backend replies: random (mostly broken) replies from a hostile
OpenAI-compatible server and from a chat model.

Every case ends in valid completions (0 <= num_tokens <= max_tokens, finite logprobs <= 0, a
reason on each failed sample) or a clear error (`PolicyError` naming the URL, `ValueError`);
never another exception, never a hang; a reply with a fault never passes as a clean answer.
"""

import asyncio
import math
import random

import pytest
from transformers import AutoTokenizer

from langgraph_ttc.models import prepare_embedded_model
from langgraph_ttc.policies import ChatModelPolicy, OpenAIPolicy, PolicyError
from langgraph_ttc.types import Completion, GenerationRequest
from tests.unit.hostile_chat import random_chat_reply
from tests.unit.hostile_server import HostileServer, random_reply

WALL_S = 8.0  # the policy's own timeout is 2 s
CASES = 80
MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(prepare_embedded_model()))


@pytest.fixture(scope="module")
def server():
    with HostileServer().running() as running:
        yield running


def random_request(rng: random.Random) -> GenerationRequest:
    n = rng.choice([1, 2, 3])
    return GenerationRequest(
        MESSAGES, n=n, max_tokens=rng.choice([1, 8, 20, 64]), stop=("\n\n",), seed=1
    )


def check_completions(request: GenerationRequest, samples: list[Completion]) -> None:
    assert len(samples) == request.n
    for sample in samples:
        assert isinstance(sample.text, str) and sample.finish_reason in ("stop", "length")
        assert 0 <= sample.num_tokens <= request.max_tokens
        assert sample.logprob is None or (math.isfinite(sample.logprob) and sample.logprob <= 0)
        assert sample.error is None or (sample.text == "" and sample.error)


async def ends_well(call, request: GenerationRequest, faults: dict, where: str) -> str:
    """How one call ends; `faults["fault"]` (read after the call: the server sets it when
    it answers) is the fault injected, if any."""
    try:
        [samples] = await asyncio.wait_for(call, WALL_S)
    except TimeoutError:
        pytest.fail(f"{where}: no end within {WALL_S}s (fault {faults.get('fault')})")
    except (PolicyError, ValueError) as error:
        assert str(error), where
        assert faults.get("fault") is not None, f"{where}: a valid reply failed: {error}"
        return "clear error"
    check_completions(request, samples)
    if any(s.error for s in samples):
        return "isolated"
    fault = faults.get("fault")
    assert fault is None, f"{where}: the fault {fault!r} passed as a clean answer"
    return "answer"


async def test_random_server_replies_end_well(server, tokenizer):
    rng = random.Random(20)
    seen = set()
    policy = OpenAIPolicy(server.url, "fake-model", tokenizer=tokenizer, max_retries=1)
    await policy.start()
    policy.timeout = 2.0  # each call's deadline (a dripping reply costs this much)
    for case in range(CASES):
        request = random_request(rng)
        script_rng = random.Random(rng.random())
        made: dict = {}

        def script(body, script_rng=script_rng, made=made):
            if "reply" not in made:
                made["reply"], made["fault"] = random_reply(script_rng, body)
            return made["reply"]

        server.script = script
        call = policy.generate([request])
        seen.add(await ends_well(call, request, made, f"case {case}"))
    server.script = None
    assert seen == {"answer", "isolated", "clear error"}  # the suite reaches every ending


async def test_random_chat_replies_end_well():
    rng = random.Random(21)
    seen = set()
    for case in range(CASES):
        request = random_request(rng)
        model, fault = random_chat_reply(rng, request.max_tokens)
        call = ChatModelPolicy(model).generate([request])
        seen.add(await ends_well(call, request, {"fault": fault}, f"chat case {case}"))
    assert seen == {"answer", "isolated", "clear error"}
