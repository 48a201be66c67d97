"""Benchmark: the same strategies over VLLMPolicy, OpenAIPolicy and ChatModelPolicy(ChatOpenAI).

On the first problems of a dataset (default: 5 of mawps_singleop, n=8, max_tokens 128), each
backend runs best-of-N and beam search with all problems in flight at once; the two server
backends talk to one `vllm serve` started here with the same engine settings as the in-process
engine. Reports generated tokens/s and problems/min side by side, then the time of one
`ttc solve` with and without `--base-url` (the engine start a running server saves).
Not a test: numbers depend on the machine and its load.

    .venv/bin/python bench/backends.py [--dataset ../shared/data/mawps_singleop.jsonl]
        [--limit 5] [--n 8] [--max-tokens 128] [--out bench/results/backends.json]
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import httpx

from langgraph_ttc import create_beam_search, create_best_of_n
from langgraph_ttc.answers import grade
from langgraph_ttc.models import prepare_embedded_model
from langgraph_ttc.policies import ChatModelPolicy, EngineSettings, OpenAIPolicy, VLLMPolicy
from langgraph_ttc.types import GenerationRequest
from langgraph_ttc.verifiers import ArithmeticVerifier
from langgraph_ttc.vllm_serve import local_server

SETTINGS = EngineSettings(max_model_len=2048, kv_cache_gib=1)
SERVER_ROOT: dict[str, str] = {}


def load_problems(path: str, limit: int) -> list[dict]:
    with open(path) as rows:
        return [json.loads(line) for line, _ in zip(rows, range(limit), strict=False)]


def build_graphs(policy, args) -> dict:
    prm = ArithmeticVerifier()
    common = dict(n=args.n, max_tokens=args.max_tokens, seed=args.seed)
    return {
        "best_of_n": create_best_of_n(policy, prm, **common),
        "beam_search": create_beam_search(
            policy, prm, beam_width=args.beam_width, max_iterations=args.max_iterations, **common
        ),
    }


async def run_strategy(graph, problems: list[dict]) -> dict:
    started = time.perf_counter()
    outs = await asyncio.gather(*(graph.ainvoke({"problem": p["problem"]}) for p in problems))
    wall = time.perf_counter() - started
    correct = sum(grade(o["answer"], str(p["answer"])) for o, p in zip(outs, problems, strict=True))
    return {
        "wall_s": wall,
        "policy_tokens": sum(o["usage"]["policy_tokens"] for o in outs),
        "policy_calls": sum(o["usage"]["policy_calls"] for o in outs),
        "correct": correct,
    }


async def reset_prefix_cache(policy) -> None:
    """Every run starts cold: the backends share one server and sample the same texts."""
    if isinstance(policy, VLLMPolicy):
        await policy.engine.reset_prefix_cache()
        return
    async with httpx.AsyncClient() as client:
        response = await client.post(SERVER_ROOT["url"] + "/reset_prefix_cache")
        response.raise_for_status()


async def warm_up(policy) -> None:
    request = GenerationRequest([{"role": "user", "content": "Say hi."}], max_tokens=8, seed=0)
    await policy.generate([request])


def summarize(backend: str, strategy: str, runs: list[dict], problems: int) -> dict:
    errors = [r["error"] for r in runs if "error" in r]
    runs = [r for r in runs if "error" not in r]
    if not runs:
        return {"backend": backend, "strategy": strategy, "errors": errors}
    best = min(runs, key=lambda r: r["wall_s"])  # the least disturbed run on a shared machine
    return {
        "errors": errors,
        "backend": backend,
        "strategy": strategy,
        "wall_s": round(best["wall_s"], 1),
        "walls_s": [round(r["wall_s"], 1) for r in runs],
        "policy_tokens": best["policy_tokens"],
        "tokens_per_s": round(best["policy_tokens"] / best["wall_s"], 1),
        "problems_per_min": round(problems / best["wall_s"] * 60, 1),
        "policy_calls": best["policy_calls"],
        "correct": f"{best['correct']}/{problems}",
    }


def time_solve(problem: str, args, base_url: str | None) -> float:
    """Wall time of one `ttc solve` (best-of-N) in a fresh process."""
    argv = [sys.executable, "-m", "langgraph_ttc.cli", "solve", problem, "--n", str(args.n)]
    argv += ["--max-tokens", str(args.max_tokens), "--seed", str(args.seed), "--json"]
    if base_url:
        argv += ["--base-url", base_url]
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=os.environ.copy())
    return round(time.perf_counter() - started, 1)


async def main(args) -> dict:
    from langchain_openai import ChatOpenAI

    problems = load_problems(args.dataset, args.limit)
    model = str(prepare_embedded_model())
    os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # the server's /reset_prefix_cache
    server_started = time.perf_counter()
    with local_server(model, SETTINGS) as url:
        server_start_s = round(time.perf_counter() - server_started, 1)
        SERVER_ROOT["url"] = url.removesuffix("/v1")
        engine = VLLMPolicy(settings=SETTINGS)
        policies = {
            "VLLMPolicy": engine,
            "OpenAIPolicy": OpenAIPolicy(url, model, max_concurrency=args.max_concurrency),
            "ChatModelPolicy(ChatOpenAI)": ChatModelPolicy(
                ChatOpenAI(base_url=url, model=model, api_key="none", timeout=600),
                max_concurrency=args.max_concurrency,
            ),
        }
        try:
            for policy in policies.values():
                await warm_up(policy)
            engine_start_s = round(engine.startup_seconds, 1)
            graphs = {backend: build_graphs(p, args) for backend, p in policies.items()}
            runs: dict[tuple[str, str], list[dict]] = {}
            order = list(policies)
            for repeat in range(args.repeats):
                for backend in order[repeat % len(order) :] + order[: repeat % len(order)]:
                    for strategy, graph in graphs[backend].items():
                        try:
                            await reset_prefix_cache(policies[backend])
                            run = await run_strategy(graph, problems)
                        except Exception as error:  # e.g. an engine dying on an overloaded box
                            run = {"error": f"{type(error).__name__}: {error}"[:300]}
                        runs.setdefault((backend, strategy), []).append(run)
                        print(backend, strategy, json.dumps(run), file=sys.stderr, flush=True)
        finally:
            engine.shutdown()
        rows = [summarize(b, s, r, len(problems)) for (b, s), r in sorted(runs.items())]
        solve = {
            "problem": problems[0]["problem"],
            "with_base_url_s": time_solve(problems[0]["problem"], args, url),
            "without_base_url_s": time_solve(problems[0]["problem"], args, None),
        }
    solve["saved_s"] = round(solve["without_base_url_s"] - solve["with_base_url_s"], 1)
    return {
        "dataset": args.dataset,
        "problems": len(problems),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "server_start_s": server_start_s,
        "engine_start_s": engine_start_s,
        "results": rows,
        "ttc_solve": solve,
    }


def print_report(report: dict) -> None:
    print(
        f"{report['problems']} problems, n={report['settings']['n']}, "
        f"max_tokens={report['settings']['max_tokens']}; server start "
        f"{report['server_start_s']} s, in-process engine start {report['engine_start_s']} s"
    )
    print(f"{'backend':<29}{'strategy':<13}{'wall s':>8}{'tokens':>8}{'tok/s':>8}{'prob/min':>9}")
    for r in report["results"]:
        if "wall_s" not in r:
            print(f"{r['backend']:<29}{r['strategy']:<13}  failed: {r['errors'][0]}")
            continue
        print(
            f"{r['backend']:<29}{r['strategy']:<13}{r['wall_s']:>8}{r['policy_tokens']:>8}"
            f"{r['tokens_per_s']:>8}{r['problems_per_min']:>9}  {r['correct']}"
        )
    s = report["ttc_solve"]
    print(
        f"ttc solve: {s['without_base_url_s']} s starting an engine, {s['with_base_url_s']} s "
        f"with --base-url ({s['saved_s']} s saved)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="../shared/data/mawps_singleop.jsonl")
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--beam-width", type=int, default=2)
    parser.add_argument("--max-iterations", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="runs per cell; the fastest counts")
    parser.add_argument("--out", type=Path, default=Path("bench/results/backends.json"))
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    print_report(result)
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(result, indent=2) + "\n")
