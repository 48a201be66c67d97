"""`ttc tune`: fit the compute-optimal router's table from a `ttc eval` run
(`langgraph_ttc.eval.tune` does the fitting)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from langgraph_ttc.eval.results import ResultsLog
from langgraph_ttc.eval.tune import TuneError, fit_table


def add_parser(commands: Any) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "tune",
        help="fit the compute-optimal router's table from a `ttc eval` run",
        description="Bins problems by the signal of a best-of-N probe (its first --probe-n "
        "samples) and picks, per bin and budget, the strategy with the best accuracy.",
    )
    parser.add_argument("--results", required=True, type=Path, help="DIR/results.jsonl")
    parser.add_argument("--out", required=True, type=Path, help="table JSON to write")
    parser.add_argument("--probe-n", type=int, default=4, help="samples in the router's probe")
    parser.add_argument("--bins", type=int, default=3, help="difficulty bins")
    parser.set_defaults(run=main)
    return parser


def main(args: argparse.Namespace) -> int:
    rows, _ = ResultsLog(args.results).read()
    if not rows:
        raise TuneError(f"{args.results} holds no results rows")
    config_path = args.results.with_name("config.json")
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    has_prm = config.get("prm", "arithmetic") != "none"
    table = fit_table(
        rows,
        probe_n=args.probe_n,
        bins=args.bins,
        has_prm=has_prm,
        source=f"{config.get('dataset', args.results)}, verifier {config.get('prm', '?')}",
    )
    args.out.write_text(json.dumps(table.model_dump(), indent=2) + "\n")
    print(f"table: {args.out} ({table.source}); bins {table.bins}", file=sys.stderr)
    for budget, row in sorted(table.routes.items()):
        print(f"  budget {budget}: " + " | ".join(r.strategy for r in row), file=sys.stderr)
    return 0
