import math
import random
from collections import Counter

import pytest
from pydantic import TypeAdapter

from langgraph_ttc import create_particle_filtering
from langgraph_ttc.events import ProgressEvent
from langgraph_ttc.strategies.particle_filtering import (
    multinomial_resample,
    resample_indices,
    softmax_weights,
    systematic_resample,
)
from tests.fakes import KeywordPRM, alternating, tree_policy
from tests.fakes import run_streamed as run

GOOD = {"good": 0.9, "bad": 0.1}


def test_softmax_weights_sum_to_one_and_sharpen_with_lower_temperature():
    warm = softmax_weights([0.9, 0.1], 1.0)
    cold = softmax_weights([0.9, 0.1], 0.1)
    assert sum(warm) == pytest.approx(1) and sum(cold) == pytest.approx(1)
    assert warm[0] == pytest.approx(1 / (1 + math.exp(-0.8)))
    assert cold[0] > warm[0] > 0.5
    assert softmax_weights([500.0, 0.0], 0.001)[0] == 1.0  # no overflow
    assert softmax_weights([], 1.0) == []


def test_systematic_resampling_draws_each_index_floor_or_ceil_of_n_w():
    weights = [0.5, 0.3, 0.2]
    for seed in range(50):
        counts = Counter(systematic_resample(weights, 10, random.Random(seed)))
        assert counts[0] == 5 and counts[1] == 3 and counts[2] == 2
    weights = [0.55, 0.45]
    for seed in range(50):
        counts = Counter(systematic_resample(weights, 4, random.Random(seed)))
        assert counts[0] in (2, 3) and counts[0] + counts[1] == 4


def test_systematic_resampling_with_a_known_offset():
    class Fixed(random.Random):
        def random(self):
            return 0.5

    # points 0.125, 0.375, 0.625, 0.875 against cumulative weights 0.1, 0.7, 1.0
    assert systematic_resample([0.1, 0.6, 0.3], 4, Fixed()) == [1, 1, 1, 2]


def test_multinomial_resampling_follows_the_weights_and_the_seed():
    picks = multinomial_resample([0.0, 1.0, 0.0], 5, random.Random(1))
    assert picks == [1, 1, 1, 1, 1]
    counts = Counter(multinomial_resample([0.8, 0.2], 2000, random.Random(7)))
    assert 1500 < counts[0] < 1700
    a = resample_indices([0.3, 0.7], 6, random.Random(3), "multinomial")
    assert a == resample_indices([0.3, 0.7], 6, random.Random(3), "multinomial") == sorted(a)


async def test_particles_follow_the_prm_and_keep_finished_ones():
    policy = tree_policy(3, alternating)
    graph = create_particle_filtering(
        policy, KeywordPRM(GOOD), n=4, seed=0, weight_temperature=0.05
    )
    out, events = await run(graph)
    assert out["answer"] == "3"  # three good steps
    assert all(c["finish_reason"] is not None for c in out["candidates"])
    # one policy call per step, every growing particle in it
    assert [sum(r.n for r in call) for call in policy.calls] == [4, 4, 4, 4]
    assert len(policy.calls[0]) == 1  # the root: one request with n=4
    for event in events:
        TypeAdapter(ProgressEvent).validate_python(event)
    kinds = Counter(e["type"] for e in events)
    assert kinds["candidate"] == 16 and kinds["prune"] == 4 and kinds["score"] == 16
    assert out["usage"]["policy_calls"] == 4 and out["usage"]["prm_calls"] == 4


async def test_a_cold_temperature_resamples_only_the_best():
    policy = tree_policy(3, alternating)
    graph = create_particle_filtering(
        policy, KeywordPRM(GOOD), n=4, seed=0, weight_temperature=0.01
    )
    _, events = await run(graph)
    first = next(e for e in events if e["type"] == "prune")
    assert len(first["kept"]) == 2 and len(first["dropped"]) == 2  # the two good children
    second_call = policy.calls[1]
    assert all("good" in r.prefix for r in second_call)


async def test_same_seed_same_run():
    outs = []
    for _ in range(2):
        graph = create_particle_filtering(
            tree_policy(4, alternating), KeywordPRM(GOOD), n=4, seed=5, resampling="multinomial"
        )
        outs.append((await graph.ainvoke({"problem": "p"}))["candidates"])
    assert [c["text"] for c in outs[0]] == [c["text"] for c in outs[1]]


async def test_budget_stops_the_filter():
    policy = tree_policy(6, alternating)
    graph = create_particle_filtering(
        policy, KeywordPRM(GOOD), n=4, seed=0, max_step_tokens=5, budget_tokens=30
    )
    out = await graph.ainvoke({"problem": "p"})
    assert len(policy.calls) == 3  # cost 20 per step, 4 spent each: stops with 18 left
    assert out["usage"]["budget_spent"] == 12 and out["candidates"]
    assert all(c["finish_reason"] == "length" for c in out["candidates"])


def test_needs_a_prm():
    with pytest.raises(ValueError, match="needs a prm"):
        create_particle_filtering(tree_policy(2, alternating), None)
