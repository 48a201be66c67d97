"""Benchmark: best-of-N, beam search and DVTS side by side on one problem (real engine).

Reports wall time, generated tokens, policy calls and policy calls per iteration, plus the
engine's start time. Not a test: numbers depend on the machine.

    .venv/bin/python bench/strategies.py [--n 8] [--beam-width 2] [--seed 0] [--out FILE.json]
"""

import argparse
import asyncio
import json
import time
from pathlib import Path

from langgraph_ttc import create_beam_search, create_best_of_n, create_dvts
from langgraph_ttc.policies import EngineSettings, VLLMPolicy
from langgraph_ttc.verifiers import ArithmeticVerifier

PROBLEM = "A baker has 15 cakes and sells 6. How many cakes are left?"


async def measure(name, graph):
    iterations = 0
    generation_events = 0
    out = {}
    started = time.perf_counter()
    async for mode, chunk in graph.astream({"problem": PROBLEM}, stream_mode=["custom", "values"]):
        if mode == "values":
            out = chunk
        elif chunk["type"] == "prune":
            iterations = max(iterations, chunk["iteration"] + 1)
        elif chunk["type"] == "generation":
            generation_events += 1
    wall = time.perf_counter() - started
    usage = out["usage"]
    return {
        "strategy": name,
        "wall_s": round(wall, 1),
        "policy_tokens": usage["policy_tokens"],
        "tokens_per_s": round(usage["policy_tokens"] / wall, 1),
        "policy_calls": usage["policy_calls"],
        "iterations": iterations or 1,
        "policy_calls_per_iteration": round(usage["policy_calls"] / (iterations or 1), 2),
        "prm_calls": usage["prm_calls"],
        "answer": out["answer"],
    }


async def main(args):
    prm = ArithmeticVerifier()
    async with VLLMPolicy(settings=EngineSettings(block_size=args.block_size)) as policy:
        common = dict(n=args.n, max_tokens=args.max_tokens, seed=args.seed)
        search = dict(beam_width=args.beam_width, max_iterations=args.max_iterations, **common)
        graphs = {
            "best_of_n": create_best_of_n(policy, prm, **common),
            "beam_search": create_beam_search(policy, prm, **search),
            "dvts": create_dvts(policy, prm, **search),
        }
        rows = [await measure(name, graph) for name, graph in graphs.items()]
        return {
            "engine_start_s": round(policy.startup_seconds, 1),
            "problem": PROBLEM,
            "settings": vars(args),
            "results": rows,
        }


def print_report(report, out):
    header = f"{'strategy':<12}{'wall s':>8}{'tokens':>8}{'tok/s':>8}{'calls':>7}{'iters':>7}"
    print(f"engine start: {report['engine_start_s']} s\n{header}  calls/iter  answer")
    for r in report["results"]:
        print(
            f"{r['strategy']:<12}{r['wall_s']:>8}{r['policy_tokens']:>8}{r['tokens_per_s']:>8}"
            f"{r['policy_calls']:>7}{r['iterations']:>7}  {r['policy_calls_per_iteration']:>10}"
            f"  {r['answer']}"
        )
    if out:
        Path(out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--beam-width", type=int, default=2)
    parser.add_argument("--max-iterations", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-size", type=int, default=None, help="KV block (default 32 on CPU)")
    parser.add_argument("--out", default=None)
    arguments = parser.parse_args()
    print_report(asyncio.run(main(arguments)), arguments.out)
