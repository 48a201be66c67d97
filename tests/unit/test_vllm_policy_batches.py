"""VLLMPolicy's batch handling over a scripted engine: cancel-on-failure, in-flight counts,
result contract and progress reports. The engine object mimics `AsyncLLM.generate`/`abort`."""

import asyncio
from dataclasses import dataclass

import pytest

from langgraph_ttc import progress
from langgraph_ttc.policies import PolicyError, VLLMPolicy
from langgraph_ttc.types import GenerationRequest


class CharTokenizer:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return "".join(m["content"] for m in messages)

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids)


@dataclass
class Sample:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    stop_reason: str | None = None
    cumulative_logprob: float = -1.0


@dataclass
class Output:
    outputs: list[Sample]


class ScriptedEngine:
    """Prompt "fail": rejected at once (like vLLM's over-long prompt check). "hang": one token,
    then waits forever. "short": finishes sample 0 only. Anything else: each sample emits
    three one-token deltas and stops."""

    def __init__(self) -> None:
        self.policy: VLLMPolicy | None = None
        self.running: set[str] = set()
        self.aborted: list[str] = []
        self.in_flight_seen: list[int] = []

    async def generate(self, prompt, params, request_id):
        text = "".join(chr(t) for t in prompt["prompt_token_ids"])
        await asyncio.sleep(0)
        if text == "fail":
            raise ValueError(f"prompt of request {request_id} is longer than max_model_len")
        self.running.add(request_id)
        try:
            if text == "hang":
                yield Output([Sample(0, "x", [1])])
                await asyncio.Event().wait()
            samples = 1 if text == "short" else params.n
            for step in range(3):
                self.in_flight_seen.append(self.policy.sequences_in_flight)
                last = step == 2
                yield Output(
                    [Sample(i, "ab"[i % 2], [7], "stop" if last else None) for i in range(samples)]
                )
                await asyncio.sleep(0)
        finally:
            self.running.discard(request_id)

    async def abort(self, request_id):
        self.aborted.append(request_id)


@pytest.fixture
def scripted():
    engine = ScriptedEngine()
    policy = VLLMPolicy.from_engine(engine, CharTokenizer())
    engine.policy = policy
    return policy, engine


def ask(text: str, n: int = 1) -> GenerationRequest:
    return GenerationRequest([{"role": "user", "content": text}], n=n, max_tokens=8, seed=1)


async def test_one_failing_request_cancels_and_aborts_the_others(scripted):
    policy, engine = scripted
    with pytest.raises(ValueError, match="longer than max_model_len"):
        await policy.generate([ask("hang"), ask("hang", n=2), ask("fail")])
    assert engine.running == set()  # the hanging requests did not keep generating
    assert sorted(engine.aborted) == ["ttc-0", "ttc-1"]
    assert policy.sequences_in_flight == 0


async def test_in_flight_counts_samples_until_they_finish(scripted):
    policy, engine = scripted
    results = await policy.generate([ask("q", n=2), ask("r", n=3)])
    assert [len(r) for r in results] == [2, 3]
    assert results[0][1].text == "bbb" and results[0][1].num_tokens == 3
    assert max(engine.in_flight_seen) == 5 and policy.sequences_in_flight == 0
    assert engine.aborted == []


async def test_request_ending_with_unfinished_samples_is_a_policy_error(scripted):
    policy, _ = scripted
    with pytest.raises(PolicyError, match="before every sample finished"):
        await policy.generate([ask("short", n=2)])
    assert policy.sequences_in_flight == 0


async def test_dead_engine_is_a_policy_error(scripted):
    from vllm.v1.engine.exceptions import EngineDeadError

    policy, engine = scripted

    async def dead(prompt, params, request_id):
        raise EngineDeadError()
        yield

    engine.generate = dead
    with pytest.raises(PolicyError, match="engine died"):
        await policy.generate([ask("q")])


async def test_generation_reports_progress_to_the_listener(scripted):
    policy, _ = scripted
    seen: list[progress.GenerationProgress] = []
    with progress.listen(seen.append):
        await policy.generate([ask("q", n=2), ask("r")])
    final = seen[-1]
    assert (final.tokens, final.sequences, final.finished) == (9, 3, 3)
    assert final.seconds >= 0


def test_capacity_is_unknown_before_start():
    policy = VLLMPolicy()
    assert policy.capacity is None and policy.sequences_in_flight == 0


async def test_a_caller_tally_sees_its_own_samples_only(scripted):
    from langgraph_ttc.policies.base import tally_sequences

    policy, _engine = scripted
    seen = []

    async def caller(n):
        with tally_sequences() as tally:
            assert not tally.started
            task = asyncio.ensure_future(policy.generate([ask("hang", n)]))
            await asyncio.sleep(0.05)
            seen.append(tally.in_flight)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return tally

    tallies = await asyncio.gather(caller(2), caller(3))
    assert sorted(seen) == [2, 3] and all(t.started and t.in_flight == 0 for t in tallies)
    assert policy.sequences_in_flight == 0


def test_engine_counts_come_from_the_stat_logger_and_are_capped_by_open_requests():
    from types import SimpleNamespace

    from langgraph_ttc.engine import SchedulerCounts

    counts = SchedulerCounts()
    assert counts.factory(object(), 0) is counts  # vLLM's per-engine factory signature
    counts.record(SimpleNamespace(num_running_reqs=7, num_waiting_reqs=2), None)
    counts.record(None, None)  # steps without scheduler stats keep the last ones
    assert (counts.latest.running, counts.latest.waiting) == (7, 2)

    open_requests = SimpleNamespace(get_num_unfinished_requests=lambda: 3)
    policy = VLLMPolicy.from_engine(SimpleNamespace(output_processor=open_requests), None)
    assert policy.engine_counts() is None  # an engine it did not start: no stat logger
    policy._scheduler_counts = counts
    reported = policy.engine_counts()
    assert (reported.running, reported.waiting) == (3, 2)  # an idle engine's stale report


def test_engine_tokens_add_up_the_engine_steps_prefill_and_generation():
    from types import SimpleNamespace

    from langgraph_ttc.engine import EngineTokens, SchedulerCounts
    from langgraph_ttc.eval.runner import describe_engine

    def step(computed: int, cached: int, generated: int) -> SimpleNamespace:
        prompt = SimpleNamespace(computed=computed, cached_tokens=cached)
        return SimpleNamespace(prompt_token_stats=prompt, num_generation_tokens=generated)

    counts = SchedulerCounts()
    counts.record(None, step(30, 90, 4))
    start = counts.tokens
    counts.record(None, step(10, 50, 8))
    counts.record(SimpleNamespace(num_running_reqs=8, num_waiting_reqs=0), step(0, 0, 22))
    assert counts.tokens == EngineTokens(40, 140, 34, 3)
    run = counts.tokens.since(start)
    assert run == EngineTokens(10, 50, 30, 2)
    assert describe_engine(run)["prefill_share"] == 0.25  # 10 prefilled of 40 computed
    assert describe_engine(run)["tokens_per_step"] == 15.0
    assert EngineTokens().prefill_share is None

    policy = VLLMPolicy.from_engine(SimpleNamespace(), None)
    assert policy.engine_tokens() is None  # an engine it did not start: no stat logger
    policy._scheduler_counts = counts
    assert policy.engine_tokens() == counts.tokens
