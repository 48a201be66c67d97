"""Benchmark: LangGraph + strategy overhead per run and per iteration, with an instant policy
and PRM, so the number is everything except the engine. Compare it with engine time (seconds
per step on CPU) to check the graph stays a small fraction.

    .venv/bin/python bench/graph_overhead.py [--runs 50]
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fakes

from langgraph_ttc import create_beam_search, create_best_of_n, create_dvts
from tests.fakes import KeywordPRM, alternating, tree_policy


async def time_runs(graph, runs):
    started = time.perf_counter()
    for _ in range(runs):
        out = await graph.ainvoke({"problem": "p"})
    return (time.perf_counter() - started) / runs, out


async def main(runs):
    prm = KeywordPRM({"good": 0.9, "bad": 0.1})
    depth = 10
    graphs = {
        "best_of_n (n=8)": create_best_of_n(tree_policy(depth, alternating), prm, n=8, seed=0),
        "beam_search (n=8, bw=2)": create_beam_search(
            tree_policy(depth, alternating), prm, n=8, beam_width=2, seed=0
        ),
        "dvts (n=8, bw=2)": create_dvts(
            tree_policy(depth, alternating), prm, n=8, beam_width=2, seed=0
        ),
    }
    print(f"{'graph':<26}{'ms/run':>9}{'iterations':>12}{'ms/iteration':>14}")
    for name, graph in graphs.items():
        seconds, out = await time_runs(graph, runs)
        iterations = out["usage"]["policy_calls"]
        print(
            f"{name:<26}{seconds * 1000:>9.2f}{iterations:>12}{seconds * 1000 / iterations:>14.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    asyncio.run(main(parser.parse_args().runs))
