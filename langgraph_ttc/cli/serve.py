"""`ttc serve`: an OpenAI-compatible vLLM server on the embedded model (or --model), with the
engine settings ttc uses; with `--strategies`, the strategies themselves as an
OpenAI-compatible chat-completions endpoint (langgraph_ttc.server) over the embedded engine,
or over `--upstream URL` (a model server, through OpenAIPolicy)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from langgraph_ttc import backends, policies, verifiers
from langgraph_ttc.cli.flags import PRM_HELP
from langgraph_ttc.engine import EngineSettings, is_cpu_platform
from langgraph_ttc.models import resolve_model
from langgraph_ttc.server.limits import Limits
from langgraph_ttc.vllm_serve import serve_command


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run `vllm serve` with the CPU settings (or, with --strategies, the strategies "
        "as an OpenAI-compatible endpoint)",
        description="Start an OpenAI-compatible vLLM server on the embedded model (or --model) "
        "with the engine settings ttc uses; repeated `ttc solve --base-url URL` calls then skip "
        "the engine start. With --strategies, serve the strategies instead: POST "
        "/v1/chat/completions with model=<strategy> streams the search (docs/endpoint.md). "
        "Runs until stopped (Ctrl-C).",
    )
    serve.add_argument("--model", default=None, help="default: embedded SmolLM2-135M")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-model-len", type=int, default=4096)
    serve.add_argument(
        "--no-tools",
        dest="tools",
        action="store_false",
        help="turn off tool calling (on by default: --enable-auto-tool-choice, the Hermes "
        "tool-call parser and, for the embedded model, a chat template with tools)",
    )
    endpoint = serve.add_argument_group("the strategies endpoint (--strategies)")
    endpoint.add_argument(
        "--strategies",
        action="store_true",
        help="serve the strategies as an OpenAI-compatible chat-completions endpoint",
    )
    endpoint.add_argument(
        "--upstream",
        metavar="URL",
        default=None,
        help="sample from this OpenAI-compatible model server (e.g. a `ttc serve` or a load "
        "balancer over several) instead of an embedded engine; --model names its model",
    )
    endpoint.add_argument("--prm", default="arithmetic", help=PRM_HELP)
    endpoint.add_argument(
        "--api-key",
        default=os.environ.get("TTC_API_KEY"),
        help="require `Authorization: Bearer KEY` (default: $TTC_API_KEY; unset: no key)",
    )
    add_limit_flags(endpoint)
    serve.set_defaults(run=main)


def add_limit_flags(group: Any) -> None:
    """A flag per `Limits` field (`max_concurrent_runs` -> `--max-concurrent-runs`)."""
    for key, field in Limits.model_fields.items():
        group.add_argument(
            "--" + key.replace("_", "-"),
            type=field.annotation,
            default=None,
            help=f"{field.description} (default: {field.default})",
        )


def limits_from(args: argparse.Namespace) -> Limits:
    given = {k: getattr(args, k) for k in Limits.model_fields if getattr(args, k) is not None}
    return Limits(**given)


def main(args: argparse.Namespace) -> int:
    if args.strategies:
        return serve_strategies(args)
    if args.upstream:
        raise ValueError("--upstream serves the strategies: add --strategies")
    model = resolve_model(args.model)
    settings = EngineSettings(max_model_len=args.max_model_len)
    argv, env = serve_command(  # statistics on: /metrics counts requests and prefix-cache hits
        model,
        settings,
        port=args.port,
        host=args.host,
        on_cpu=is_cpu_platform(),
        tools=args.tools,
        stats=True,
    )
    print(
        f"starting vllm serve on http://{args.host}:{args.port}/v1 (model {model}); then:\n"
        f'  ttc solve --base-url http://{args.host}:{args.port}/v1 "<problem>"',
        file=sys.stderr,
        flush=True,
    )
    os.execve(argv[0], argv, {**os.environ, **env})  # the server replaces this process


def serve_strategies(args: argparse.Namespace) -> int:
    """The endpoint until Ctrl-C; the backends it started are stopped on the way out."""
    # uvicorn and fastapi are the server extra's; only this command needs them
    import uvicorn

    from langgraph_ttc.server import create_app  # loads fastapi

    limits = limits_from(args)
    if args.upstream:
        policy: Any = policies.OpenAIPolicy(args.upstream, args.model)
    else:
        settings = EngineSettings(max_model_len=args.max_model_len)
        policy = policies.VLLMPolicy(args.model, settings=settings)
    prm = verifiers.build_prm(args.prm, policy)
    app = create_app(policy, prm, api_key=args.api_key, limits=limits)
    url = f"http://{args.host}:{args.port}/v1"
    source = args.upstream or "the embedded engine"
    print(
        f"serving the strategies on {url} over {source} (starting it first); e.g.\n"
        f"  curl -N {url}/chat/completions -H 'Content-Type: application/json' "
        """-d '{"model": "beam_search", "stream": true, """
        """"messages": [{"role": "user", "content": "What is 12 + 7?"}], "ttc": {"n": 4}}'""",
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        for backend in (prm, policy):
            backends.shutdown_backend(backend)
    return 0
