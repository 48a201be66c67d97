"""A bounded load test of the strategies endpoint on the real engine (loopback only).

    PYTHONPATH=. python bench/endpoint_load.py                       # 50 clients, 10 leave
    PYTHONPATH=. python bench/endpoint_load.py --clients 5 --leavers 1 --no-eval   # a smoke run

`--clients` streaming clients each ask the endpoint (`create_app` over one `VLLMPolicy`, served
by uvicorn on 127.0.0.1) for a search of one problem of `--dataset` (the first `--clients`
problems), all at once; `--leavers` of them, chosen at random (`--seed`), close their
connection after a random number of chunks. Every other client must get its answer; after
the run the engine must hold 0 unfinished requests. Reports, over the clients that stayed:
time to the first progress chunk and to the answer (p50/p95); the engine's generated tokens
per second over the run (leavers' tokens included: the engine generated them); and, unless
`--no-eval`, `ttc eval`'s tok/s on the same problems and settings (its own engine, started
after this one is stopped). Stops by itself: `--timeout` bounds the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from langgraph_ttc.eval.datasets import load_problems
from langgraph_ttc.policies import VLLMPolicy
from langgraph_ttc.server import Limits, create_app
from langgraph_ttc.verifiers import ArithmeticVerifier
from langgraph_ttc.vllm_serve import free_port


@dataclass
class Client:
    index: int
    problem: str
    leave_after: int | None  # data chunks read before leaving (None: stays to the end)
    started: float = 0.0
    first_progress: float | None = None
    answered: float | None = None
    tokens: int = 0
    left: bool = False
    error: str | None = None
    chunks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def one_client(http: httpx.AsyncClient, url: str, client: Client, body: dict) -> None:
    client.started = time.perf_counter()
    request = {**body, "messages": [{"role": "user", "content": client.problem}]}
    try:
        async with http.stream("POST", f"{url}/chat/completions", json=request) as reply:
            if reply.status_code != 200:
                client.error = f"HTTP {reply.status_code}: {(await reply.aread())[:200]!r}"
                return
            async for line in reply.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                client.chunks += 1
                read(client, json.loads(line.removeprefix("data: ")))
                if client.leave_after is not None and client.chunks >= client.leave_after:
                    client.left = True
                    return  # leaving the block closes the connection
    except httpx.HTTPError as error:
        client.error = f"{type(error).__name__}: {error}"


def read(client: Client, chunk: dict) -> None:
    now = time.perf_counter() - client.started
    if "error" in chunk:
        client.error = chunk["error"]["message"]
    if chunk.get("usage"):
        client.tokens = chunk["usage"]["completion_tokens"]
    for choice in chunk.get("choices", []):
        delta = choice["delta"]
        if delta.get("reasoning_content") and client.first_progress is None:
            client.first_progress = now
        if delta.get("content") and client.answered is None:
            client.answered = now


async def serve_and_load(args: argparse.Namespace, problems: list[str]) -> dict[str, Any]:
    policy = VLLMPolicy()
    await policy.start()
    try:
        return await load(args, policy, problems)
    finally:
        policy.shutdown()


async def load(args: argparse.Namespace, policy: VLLMPolicy, problems: list[str]) -> dict:
    limits = Limits(max_concurrent_runs=args.clients, run_seconds=args.timeout)
    app = create_app(policy, ArithmeticVerifier(), limits=limits)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.05)
    rng = random.Random(args.seed)
    leavers = set(rng.sample(range(args.clients), args.leavers))
    clients = [
        Client(i, problems[i % len(problems)], rng.randint(2, 40) if i in leavers else None)
        for i in range(args.clients)
    ]
    body = {"model": args.strategy, "stream": True, "stream_options": {"include_usage": True},
            "seed": args.seed, "ttc": settings(args)}  # fmt: skip
    before = policy.engine_tokens()
    started = time.perf_counter()
    limits_http = httpx.Limits(max_connections=args.clients + 4)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        async with httpx.AsyncClient(timeout=args.timeout, limits=limits_http) as http:
            async with asyncio.timeout(args.timeout):
                await asyncio.gather(*(one_client(http, url, c, body) for c in clients))
        seconds = time.perf_counter() - started
        unfinished = await settle(policy)
    finally:
        server.should_exit = True
        await serving
    after = policy.engine_tokens()
    generated = (after.generated - before.generated) if after and before else None
    return report(clients, seconds, generated, unfinished)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"n": args.n, "beam_width": args.beam_width, "max_iterations": args.max_iterations,
            "max_tokens": args.max_tokens}  # fmt: skip


async def settle(policy: VLLMPolicy, seconds: float = 30.0) -> int:
    """The engine's unfinished requests once they drain (or after `seconds`)."""
    deadline = time.monotonic() + seconds
    while policy.num_unfinished_requests and time.monotonic() < deadline:  # noqa: ASYNC110 (a count, no event)
        await asyncio.sleep(0.1)
    return policy.num_unfinished_requests


def report(clients: list[Client], seconds: float, generated: int | None, unfinished: int) -> dict:
    stayed = [c for c in clients if c.leave_after is None or not c.left]
    progress = [c.first_progress for c in stayed if c.first_progress is not None]
    answers = [c.answered for c in stayed if c.answered is not None]
    return {
        "clients": len(clients),
        "left": sum(c.left for c in clients),
        "answered": len(answers),
        "stayed_without_answer": [c.index for c in stayed if c.answered is None],
        "errors": [c.error for c in clients if c.error][:5],
        "first_progress_s": {"p50": percentile(progress, 0.5), "p95": percentile(progress, 0.95)},
        "answer_s": {"p50": percentile(answers, 0.5), "p95": percentile(answers, 0.95)},
        "seconds": round(seconds, 2),
        "engine_generated_tokens": generated,
        "endpoint_tok_s": round(generated / seconds, 1) if generated else None,
        "answered_tokens": sum(c.tokens for c in stayed),
        "unfinished_requests_after": unfinished,
    }


def eval_tok_s(args: argparse.Namespace) -> float | None:
    """`ttc eval` on the same problems and settings (its own engine); its tok/s."""
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "langgraph_ttc.cli", "eval", "--dataset", args.dataset,
                "--limit", str(args.clients), "--strategy", args.strategy, "--n", str(args.n),
                "--beam-width", str(args.beam_width), "--max-iterations",
                str(args.max_iterations), "--max-tokens", str(args.max_tokens), "--seed",
                str(args.seed), "--few-shot", "0", "--out", out]  # fmt: skip
        subprocess.run(argv, check=True, timeout=args.timeout, stdout=subprocess.DEVNULL)
        summary = json.loads((Path(out) / "summary.json").read_text())
    return find(summary, "tok_s")


def find(tree: Any, key: str) -> Any:
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        tree = list(tree.values())
    if isinstance(tree, list):
        for item in tree:
            found = find(item, key)
            if found is not None:
                return found
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--leavers", type=int, default=10)
    parser.add_argument("--dataset", default="../shared/data/gsm8k_test.jsonl")
    parser.add_argument("--strategy", default="beam_search")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--beam-width", type=int, default=2)
    parser.add_argument("--max-iterations", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="bounds the whole run")
    parser.add_argument("--no-eval", action="store_true", help="skip the `ttc eval` comparison")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    if not 0 <= args.leavers <= args.clients:
        parser.error("--leavers must be between 0 and --clients")
    problems = [p.problem for p in load_problems(args.dataset, limit=args.clients)]
    figures = asyncio.run(serve_and_load(args, problems))
    if not args.no_eval:
        figures["eval_tok_s"] = eval_tok_s(args)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    ok = not figures["stayed_without_answer"] and figures["unfinished_requests_after"] == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":  # vLLM spawns worker processes: keep the guard
    from langgraph_ttc import logs

    logs.configure()
    main()
