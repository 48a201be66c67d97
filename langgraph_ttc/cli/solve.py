"""`ttc solve`: one problem, with live progress, then the candidates and the answer."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from langgraph_ttc.backends import ManagedLifecycle
from langgraph_ttc.cli.flags import (
    add_backend_flags,
    add_few_shot_flags,
    add_setting_flags,
    make_backends,
    settings_from,
)
from langgraph_ttc.cli.progress import Progress, format_candidates, start_policy
from langgraph_ttc.strategies import STRATEGY_NAMES, create_strategy
from langgraph_ttc.verifiers import close_prm, start_prm


def add_parser(commands: Any) -> None:
    solve = commands.add_parser("solve", help="solve one problem, with live progress")
    solve.add_argument("problem", help="the problem text")
    solve.add_argument("--strategy", choices=STRATEGY_NAMES, default="best_of_n")
    solve.set_defaults(settings=add_setting_flags(solve, defaults={"seed": 0}), run=main)
    add_backend_flags(solve)
    add_few_shot_flags(solve)
    solve.add_argument("--json", action="store_true", help="print the graph output as JSON")


def main(args: argparse.Namespace) -> int:
    return asyncio.run(solve(args))


async def solve(args: argparse.Namespace) -> int:
    settings = settings_from(args, args.settings)  # a bad examples file fails before any backend
    policy, prm = make_backends(args)
    graph = create_strategy(args.strategy, policy, prm, settings)  # validates first
    shown = {k: len(v) if k == "examples" else v for k, v in settings.items()}
    progress = Progress(sys.stderr)
    try:
        await start_policy(policy, progress.line)
        if isinstance(prm, ManagedLifecycle):
            progress.line("starting the verifier's engine...")
            await start_prm(prm)
        progress.line(
            f"solving with {args.strategy} ({', '.join(f'{k}={v}' for k, v in shown.items())})"
        )
        output: dict[str, Any] = {}
        started = time.perf_counter()
        # subgraphs: the compute-optimal router's routed strategy streams its events too
        async for namespace, mode, chunk in graph.astream(
            {"problem": args.problem}, stream_mode=["custom", "values"], subgraphs=True
        ):
            if mode == "custom":
                progress.event(chunk)
            elif not namespace:
                output = chunk
        elapsed = time.perf_counter() - started
    finally:
        close_prm(prm)
        if isinstance(policy, ManagedLifecycle):
            policy.shutdown()
    result = {k: output.get(k) for k in ("answer", "solution", "candidates", "usage")}
    tokens = result["usage"]["policy_tokens"]
    progress.line(
        f"done in {elapsed:.1f}s: {tokens} tokens generated, {tokens / elapsed:.1f} tok/s"
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_candidates(result["candidates"], result["solution"]))
        print(f"\nAnswer: {result['answer']}")
    return 0
