"""The "replies" kind of the robustness census: backends that answer badly.

Each case runs best-of-N over `OpenAIPolicy` against a hostile OpenAI-compatible server on
127.0.0.1 (a random reply: valid, a broken field, a broken body, an error status, a server that
drips one byte every half second), or over `ChatModelPolicy` with a chat model sending a random
reply (empty, a tool call, impossible usage, bad logprobs, withheld, huge). A case with a fault
must end in a clear error (`PolicyError` naming the URL, `ValueError`) or an isolated failure
(usage["errors"]); an answer there, or a budget charged more than the requests asked for, is
"silent-wrong".
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from transformers import AutoTokenizer

from langgraph_ttc.errors import TTCError
from langgraph_ttc.models import prepare_embedded_model
from langgraph_ttc.policies import ChatModelPolicy, OpenAIPolicy
from langgraph_ttc.strategies import create_best_of_n
from tests.unit.hostile_chat import random_chat_reply
from tests.unit.hostile_server import HostileServer, Reply, random_reply

WALL_S = 5.0  # a case not ended by then is a hang (the policy's own timeout is 1 s)
POLICY_TIMEOUT_S = 1.0
CRASHES: list[str] = []


class OneReplyPerCase:
    """The server's script for one case: a random reply, the same for every try."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.reply, self.fault = rng, None, None

    def __call__(self, body: dict[str, Any]) -> Reply:
        if self.reply is None:
            self.reply, self.fault = random_reply(self.rng, body)
        return self.reply


async def run_case(graph: Any, faulty: Any, cap: int) -> str:
    """How one case ends; `faulty()` says (after the run) whether a fault was injected."""
    deadline = asyncio.timeout(WALL_S)
    try:
        async with deadline:
            out = await graph.ainvoke({"problem": "What is 2 + 2?"})
    except (TTCError, ValueError, TimeoutError) as error:
        if deadline.expired():
            return "hang"
        return "clear error" if str(error) else "crash"
    except Exception as error:
        CRASHES.append(f"replies: {type(error).__name__}: {error}"[:300])
        return "crash"
    spent = out["usage"]["policy_tokens"]
    if not 0 <= spent <= cap or not all(isinstance(c["text"], str) for c in out["candidates"]):
        return "silent-wrong"
    if out["usage"]["errors"]:
        return "isolated"
    return "silent-wrong" if faulty() else "answer"


async def census(cases: int, rng: random.Random) -> dict[str, Counter]:
    counts: Counter = Counter()
    tokenizer = AutoTokenizer.from_pretrained(str(prepare_embedded_model()))  # loaded once
    with HostileServer().running() as server:
        for _ in range(cases):
            n, max_tokens = rng.choice([1, 2, 4]), rng.choice([8, 20, 64])
            options = {"n": n, "max_tokens": max_tokens, "seed": rng.randrange(100)}
            if rng.random() < 0.75:
                script = server.script = OneReplyPerCase(random.Random(rng.random()))
                policy: Any = OpenAIPolicy(
                    server.url,
                    "fake-model",
                    tokenizer=tokenizer,
                    timeout=POLICY_TIMEOUT_S,
                    max_retries=1,
                )
                faulty: Any = lambda script=script: script.fault is not None  # noqa: E731
            else:
                model, fault = random_chat_reply(rng, max_tokens)
                policy = ChatModelPolicy(model)
                faulty = lambda fault=fault: fault is not None  # noqa: E731
            graph = create_best_of_n(policy, None, **options)
            counts[await run_case(graph, faulty, n * max_tokens)] += 1
            if isinstance(policy, OpenAIPolicy):
                await policy.aclose()
    return {"replies": counts}
