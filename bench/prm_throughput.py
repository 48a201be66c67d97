"""PRM throughput on this machine (a benchmark, not a test).

    PYTHONPATH=. python bench/prm_throughput.py [--rounds 5] [--block-size 32] [--skip-pooling]

Measures, one engine at a time:
1. the pooling PRM (a tiny random Qwen2ForProcessRewardModel made on the fly: 2 layers,
   hidden 128) and the token-probability PRM (RLHFlow format, on the embedded SmolLM2-135M):
   candidates scored per second for batches of 8 candidates x 4 steps, each round a new problem
   (so nothing is cached from an earlier round);
2. the prefix-cache hit rate of the token-probability PRM across beam-search-like iterations:
   8 beams, each iteration every beam gains one step, the best half survives and is copied
   (vLLM `RequestOutput.num_cached_tokens` / prompt tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from typing import Any

from langgraph_ttc.policies import EngineSettings
from langgraph_ttc.verifiers import TokenProbPRM, VLLMPoolingPRM
from langgraph_ttc.verifiers.testing import make_tiny_pooling_prm

CANDIDATES, STEPS = 8, 4


def problem(seed: int) -> str:
    rng = random.Random(seed)
    a, b, c = rng.randint(10, 99), rng.randint(10, 99), rng.randint(2, 9)
    return (
        f"Problem {seed}: a shop sells {a} apples on Monday and {b} on Tuesday, then gets "
        f"{c} times as many on Wednesday as on Monday. How many apples does it sell in all?"
    )


def step(rng: random.Random, k: int) -> str:
    a, b = rng.randint(1, 200), rng.randint(1, 200)
    return f"Step {k + 1}: we compute {a} + {b} = {a + b + rng.choice([0, 0, 1])} apples so far."


def candidates(seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[step(rng, k) for k in range(STEPS)] for _ in range(CANDIDATES)]


async def throughput(prm: Any, rounds: int) -> dict[str, float]:
    await prm.score(problem(-1), candidates(-1))  # warm-up
    started = time.perf_counter()
    for r in range(rounds):
        await prm.score(problem(r), candidates(r))
    seconds = time.perf_counter() - started
    return {
        "candidates_per_s": rounds * CANDIDATES / seconds,
        "steps_per_s": rounds * CANDIDATES * STEPS / seconds,
        "seconds_per_batch": seconds / rounds,
    }


async def beam_cache(prm: TokenProbPRM, iterations: int = 6) -> dict[str, Any]:
    rng = random.Random(7)
    text = problem(1000)
    beams: list[list[str]] = [[] for _ in range(CANDIDATES)]
    per_iteration = []
    total_prompt = total_cached = 0
    for it in range(iterations):
        beams = [[*b, step(rng, it)] for b in beams]
        before = (prm.prompt_tokens, prm.cached_tokens)
        started = time.perf_counter()
        scores = await prm.score(text, beams)
        seconds = time.perf_counter() - started
        sent, cached = prm.prompt_tokens - before[0], prm.cached_tokens - before[1]
        total_prompt += sent
        total_cached += cached
        per_iteration.append(
            {"iteration": it, "hit_rate": round(cached / sent, 3), "seconds": round(seconds, 2)}
        )
        ranked = sorted(range(len(beams)), key=lambda i: -scores[i][-1])[: CANDIDATES // 2]
        beams = [list(beams[i]) for i in ranked for _ in range(2)]  # survivors, copied
    return {"hit_rate": round(total_cached / total_prompt, 3), "iterations": per_iteration}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--block-size", type=int, default=None, help="KV block size (CPU default: 32)"
    )
    parser.add_argument("--skip-pooling", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if not args.skip_pooling:
        with tempfile.TemporaryDirectory() as tmp:
            prm = VLLMPoolingPRM(
                str(make_tiny_pooling_prm(tmp)),
                settings=EngineSettings(
                    max_model_len=1024, kv_cache_gib=1, enable_prefix_caching=False
                ),
            )
            try:
                await prm.start()
                results["pooling_tiny_qwen2_prm"] = {
                    "startup_s": round(prm.handle.startup_seconds or 0, 1),
                    **await throughput(prm, args.rounds),
                }
            finally:
                prm.shutdown()
        print(json.dumps(results, indent=2), flush=True)
    prm = TokenProbPRM(
        "embedded",
        format="rlhflow",
        settings=EngineSettings(max_model_len=2048, kv_cache_gib=1, block_size=args.block_size),
    )
    try:
        await prm.start()
        key = f"token_prob_rlhflow_smollm2_block{args.block_size or 32}"
        results[key] = {
            "startup_s": round(prm.handle.startup_seconds or 0, 1),
            **await throughput(prm, args.rounds),
        }
        results[key]["throughput_hit_rate"] = round(prm.cached_tokens / prm.prompt_tokens, 3)
        results[key]["beam_search_like"] = await beam_cache(prm)
    finally:
        prm.shutdown()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":  # vLLM spawns workers: scripts that start an engine need the guard
    asyncio.run(main())
