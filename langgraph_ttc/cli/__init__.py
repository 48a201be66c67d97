"""The `ttc` command: solve a problem with a strategy, evaluate strategies on a dataset, fit the
router's table, train a verifier, serve a model, prepare the embedded model.

One module per command (`solve`, `eval`, `tune`, `verifier`, `serve`, `models`), each with
`add_parser(commands)` and a `main(args)` it sets as the parser's `run`; the flags that
commands share, strategy settings first, are declared once in `flags`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

from langgraph_ttc import logs
from langgraph_ttc.cli import eval as eval_command
from langgraph_ttc.cli import models, serve, solve, tune, verifier
from langgraph_ttc.cli.progress import Progress, format_candidates

__all__ = ["Progress", "build_parser", "format_candidates", "main"]

COMMANDS = (solve, eval_command, tune, verifier, serve, models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttc", description="Test-time compute strategies on a local vLLM policy."
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show vLLM's logs and the engine's output"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `kill` (SIGTERM) unwinds like Ctrl-C, so engine processes are shut down, not orphaned.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        logs.configure(verbose=args.verbose)  # before vLLM or transformers are imported
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line instead of a traceback, unless verbose
        if args.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
