"""`ttc serve`: an OpenAI-compatible vLLM server on the embedded model (or --model), with the
engine settings ttc uses."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from langgraph_ttc.engine import EngineSettings, is_cpu_platform
from langgraph_ttc.models import resolve_model
from langgraph_ttc.vllm_serve import serve_command


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run `vllm serve` with the CPU settings, for `ttc solve/eval --base-url`",
        description="Start an OpenAI-compatible vLLM server on the embedded model (or --model) "
        "with the engine settings ttc uses; repeated `ttc solve --base-url URL` calls then skip "
        "the engine start. Runs until stopped (Ctrl-C).",
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
    serve.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    model = resolve_model(args.model)
    settings = EngineSettings(max_model_len=args.max_model_len)
    argv, env = serve_command(
        model, settings, port=args.port, host=args.host, on_cpu=is_cpu_platform(), tools=args.tools
    )
    print(
        f"starting vllm serve on http://{args.host}:{args.port}/v1 (model {model}); then:\n"
        f'  ttc solve --base-url http://{args.host}:{args.port}/v1 "<problem>"',
        file=sys.stderr,
        flush=True,
    )
    os.execve(argv[0], argv, {**os.environ, **env})  # the server replaces this process
