"""Seeded fuzzing of the public surface: random settings, inputs, and faulty backends.

Every case must end in one of three ways: an answer, a clear error (ValueError or TimeoutError
raised by this library, with a message), or isolated failures recorded in `usage["errors"]`.
Never another exception, never a hang (each run is bounded), never a non-string answer.
"""

import asyncio
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langgraph_ttc.errors import EmptyProblemError
from langgraph_ttc.strategies import STRATEGIES, create_strategy
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, seeded_arithmetic, tree_policy

FUZZ = settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WALL_S = 5.0  # no single fuzzed run may take longer

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(0, 3), max_size=2),
)
SETTING_NAMES = sorted({f for info in STRATEGIES.values() for f in info.settings.model_fields})


def policy_for(strategy: str):
    if STRATEGIES[strategy].steps:
        return tree_policy(3, alternating)
    return ScriptedPolicy(seeded_arithmetic)


async def bounded(coro):
    return await asyncio.wait_for(coro, WALL_S)


def check_output(out):
    assert out["answer"] is None or isinstance(out["answer"], str)
    assert isinstance(out["solution"], str)
    assert all(math.isfinite(c["score"]) and 0 <= c["score"] <= 1 for c in out["candidates"])
    assert set(out["usage"]) >= {
        "policy_tokens",
        "policy_calls",
        "prm_calls",
        "prm_steps",
        "errors",
    }


@FUZZ
@given(
    strategy=st.sampled_from(sorted(STRATEGIES)),
    overrides=st.dictionaries(st.sampled_from(SETTING_NAMES), ODD_VALUES, max_size=3),
)
async def test_random_settings_build_and_run_or_fail_clearly(strategy, overrides):
    prm = KeywordPRM({"good": 0.9, "bad": 0.1})
    base = {"n": 4, "max_tokens": 64, "max_iterations": 4}
    try:
        graph = create_strategy(strategy, policy_for(strategy), prm, {**base, **overrides})
    except ValueError as error:
        assert str(error)
        return
    try:
        out = await bounded(graph.ainvoke({"problem": "What is 3 + 4?"}))
    except ValueError as error:  # e.g. a recursion limit a setting needs
        assert str(error)
        return
    check_output(out)


@FUZZ
@given(
    strategy=st.sampled_from(sorted(STRATEGIES)),
    context=st.dictionaries(st.sampled_from([*SETTING_NAMES, "bogus"]), ODD_VALUES, max_size=3),
)
async def test_random_per_run_settings_fail_before_any_work_or_run(strategy, context):
    policy = policy_for(strategy)
    graph = create_strategy(strategy, policy, KeywordPRM({"good": 0.9}), {"n": 2, "max_tokens": 32})
    try:
        out = await bounded(graph.ainvoke({"problem": "p"}, context=context))
    except ValueError as error:
        assert str(error) and policy.calls == []
        return
    check_output(out)


PROBLEMS = st.one_of(
    st.text(max_size=200),
    st.none(),
    st.integers(),
    st.just(""),
    st.just("\x00" * 50),
    st.text(alphabet="\\{}$ \n", max_size=300),
)


@FUZZ
@given(strategy=st.sampled_from(sorted(STRATEGIES)), problem=PROBLEMS)
async def test_random_problems_are_solved_or_named_empty(strategy, problem):
    graph = create_strategy(strategy, policy_for(strategy), KeywordPRM({}), {"n": 2})
    try:
        out = await bounded(graph.ainvoke({"problem": problem}))
    except EmptyProblemError as error:
        assert "problem" in str(error)
        return
    check_output(out)


class FaultyPolicy:
    """Answers like `inner`, but each call may fail in one of the ways real backends do."""

    def __init__(self, inner, rng):
        self.inner, self.rng = inner, rng

    async def generate(self, requests):
        fault = self.rng.choice(["ok", "ok", "raise", "short", "extra", "none", "garbage", "hang"])
        if fault == "raise":
            raise ConnectionError("backend went away")
        if fault == "hang":
            await asyncio.sleep(3600)
        if fault == "none":
            return None
        results = await self.inner.generate(requests)
        if fault == "short":
            return [r[:-1] for r in results]
        if fault == "extra":
            return [[*r, r[0]] for r in results]
        if fault == "garbage":
            return [["text" for _ in r] for r in results]
        return results


class FaultyPRM:
    def __init__(self, rng):
        self.rng = rng

    async def score(self, problem, solutions):
        fault = self.rng.choice(["ok", "ok", "raise", "nan", "shape", "range", "hang", "noise"])
        if fault == "raise":
            raise RuntimeError("verifier crashed")
        if fault == "hang":
            await asyncio.sleep(3600)
        value = {"nan": math.nan, "range": 1.5, "noise": 1 + 1e-12}.get(fault, 0.5)
        rows = [[value] * len(steps) for steps in solutions]
        return rows[:-1] if fault == "shape" else rows


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("seed", range(6))
async def test_faulty_backends_give_clear_errors_or_isolated_failures(strategy, seed):
    rng = random.Random(seed)
    policy = FaultyPolicy(policy_for(strategy), rng)
    settings_ = {"n": 4, "max_iterations": 4, "policy_timeout": 0.2, "prm_timeout": 0.2}
    graph = create_strategy(strategy, policy, FaultyPRM(rng), settings_)
    try:
        out = await bounded(graph.ainvoke({"problem": "What is 3 + 4?"}))
    except (ValueError, TimeoutError, ConnectionError) as error:
        assert str(error)
        return
    check_output(out)
    assert all(isinstance(e, str) and e for e in out["usage"]["errors"])
