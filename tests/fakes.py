"""Protocol-level fakes: deterministic from prompt and seed, and they honour n, stop and prefix."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import replace

from langgraph_ttc.confidence import StopMonitor
from langgraph_ttc.types import Completion, GenerationRequest

Script = Callable[[GenerationRequest, int], str]


def _finish(text: str, request: GenerationRequest) -> Completion:
    """Cut `text` at the first stop string (kept in the output) or at max_tokens words."""
    found = [(text.find(stop), stop) for stop in request.stop if stop in text]
    stop_at, matched = min(found) if found else (len(text), None)
    words = text[:stop_at].split(" ")
    if len(words) > request.max_tokens:
        return Completion(" ".join(words[: request.max_tokens]), "length", None, request.max_tokens)
    body = text[:stop_at] + (matched or "")
    return Completion(body, "stop", matched, max(1, len(body.split())))


WordConfidence = Callable[[str], float]


class ScriptedPolicy:
    """Completions come from `script(request, sample_index)`; every call is recorded. When a
    request asks for top-k logprobs, each completion carries one token confidence per token
    (a token is a whitespace-separated word): `confidence(word)`, or 1.0 without one."""

    def __init__(self, script: Script, confidence: WordConfidence | None = None):
        self.script, self.word_confidence = script, confidence
        self.calls: list[list[GenerationRequest]] = []

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        self.calls.append(list(requests))
        return [
            [_confident(_finish(self.script(r, i), r), r, self.word_confidence) for i in range(r.n)]
            for r in requests
        ]


def _confident(
    completion: Completion, request: GenerationRequest, confidence: WordConfidence | None
) -> Completion:
    """As a real engine does: token confidences when the request asks for top-k logprobs,
    exactly one per counted token (the words', then confidence("") for the rest)."""
    if request.top_logprobs is None or completion.token_confidences is not None:
        return completion
    figure = confidence or (lambda word: 1.0)
    figures = [figure(word) for word in completion.text.split()][: completion.num_tokens]
    figures += [figure("")] * (completion.num_tokens - len(figures))
    return replace(completion, token_confidences=tuple(figures))


def cycling(texts: Sequence[str]) -> ScriptedPolicy:
    """Sample i of every request is texts[i % len(texts)]."""
    return ScriptedPolicy(lambda request, i: texts[i % len(texts)])


def seeded_arithmetic(request: GenerationRequest, index: int) -> str:
    """A pseudo-random arithmetic solution, a pure function of prompt, prefix, seed and index."""
    key = repr((request.messages, request.prefix, request.seed, index, request.temperature))
    rng = random.Random(hashlib.sha256(key.encode()).digest())
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    result = a + b + rng.choice([0, 0, 1, -1])
    return f"We add {a} + {b} = {result}.\n\nSo the answer is \\boxed{{{result}}}."


class KeywordPRM:
    """Scores a step by the first keyword it contains (default 0.5); records calls."""

    def __init__(self, weights: dict[str, float], default: float = 0.5, fail_on: str | None = None):
        self.weights, self.default, self.fail_on = weights, default, fail_on
        self.calls: list[list[list[str]]] = []

    def step_score(self, step: str) -> float:
        return next((w for k, w in self.weights.items() if k in step), self.default)

    async def score(self, problem: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        self.calls.append([list(s) for s in solutions])
        if self.fail_on and any(self.fail_on in step for s in solutions for step in s):
            raise RuntimeError(f"PRM cannot score text containing {self.fail_on!r}")
        return [[self.step_score(step) for step in steps] for steps in solutions]


def tree_policy(
    depth: int,
    label: Callable[[GenerationRequest, int, int], str],
    confidence: WordConfidence | None = None,
) -> ScriptedPolicy:
    """A step-wise solver: from a prefix with d steps it writes steps d..depth-1, each
    "s{k}:{label}" (one token), then a boxed answer (the number of "good" steps); stop strings
    cut it.

    `label(request, sample_index, step_index)` names each step, so tests steer the tree;
    `confidence(word)` gives each token's confidence when a request asks for them."""

    def script(request: GenerationRequest, i: int) -> str:
        done = request.prefix.count("\n\n")
        steps = [f"s{k}:{label(request, i, k)}" for k in range(done, depth)]
        text = request.prefix + "\n\n".join(steps)
        answer = text.count("good")
        tail = "\n\n".join([*steps, f"\\boxed{{{answer}}}"]) if steps else f"\\boxed{{{answer}}}"
        return tail

    return ScriptedPolicy(script, confidence)


def alternating(request: GenerationRequest, i: int, k: int) -> str:
    """Sample 0 of a request writes good steps, sample 1 bad, and so on."""
    return "good" if i % 2 == 0 else "bad"


async def run_streamed(graph, inp=None, config=None):
    """(final state, custom events) of one streamed run of `graph`."""
    events, out = [], {}
    async for mode, chunk in graph.astream(
        inp or {"problem": "p"}, config, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            events.append(chunk)
        else:
            out = chunk
    return out, events


class ConfidentPolicy(ScriptedPolicy):
    """A ScriptedPolicy that gives token confidences when asked (`top_logprobs`): one per
    word, `confidence(word)`; it applies a request's `confidence_stop` word by word (the
    sample ends at the word where the rule fires, "confidence")."""

    def __init__(self, script: Script, confidence: Callable[[str], float]):
        super().__init__(script)
        self.confidence = confidence

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        results = await super().generate(requests)
        return [
            [self._with_confidences(c, r) for c in completions]
            for r, completions in zip(requests, results, strict=True)
        ]

    def _with_confidences(self, completion: Completion, request: GenerationRequest) -> Completion:
        if request.top_logprobs is None:
            return completion
        words = completion.text.split(" ")
        confidences = [self.confidence(w) for w in words][: completion.num_tokens]
        if request.confidence_stop is not None:
            monitor = StopMonitor(request.confidence_stop)
            for j, value in enumerate(confidences):
                if monitor.push(value):
                    text = " ".join(words[: j + 1])
                    return Completion(
                        text, "confidence", None, j + 1, None, None, tuple(confidences[: j + 1])
                    )
        return replace(completion, token_confidences=tuple(confidences))
