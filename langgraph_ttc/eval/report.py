"""summary.json and the readable table (terminal and table.txt)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langgraph_ttc.selection import SELECTIONS


def format_table(points: Sequence[Mapping[str, Any]]) -> str:
    """One line per (strategy, N): accuracy per selection mode, pass@N, cost."""
    header = (
        f"{'strategy':<12}{'N':>4}{'run':>5}{'m':>3}  "
        + "".join(f"{mode:>9}" for mode in SELECTIONS)
        + f"{'pass@N':>9}{'tokens':>9}{'wall s':>8}{'probs':>6}{'t/o':>5}{'err':>5}"
    )
    lines = [header, "-" * len(header)]
    for p in points:
        tokens = f"{p['mean_tokens']:.0f}" + ("" if p.get("tokens_exact", True) else "~")
        lines.append(
            f"{p['strategy']:<12}{p['n']:>4}{p['run_n']:>5}{p['beam_width']:>3}  "
            + "".join(f"{p['accuracy'][mode]:>9.1%}" for mode in SELECTIONS)
            + f"{p['pass_at_n']:>9.1%}{tokens:>9}{p['mean_wall_time_s']:>8.1f}"
            + f"{p['problems']:>6}{p['grading_timeouts']:>5}{p['errors']:>5}"
        )
    lines.append(
        "N: budget; run: the N the run used (smaller N read from its first samples/subtrees); "
        "m: beam width; tokens: mean generated per problem (~ estimated); wall s: mean per "
        "problem with runs sharing the engine; t/o: grading timeouts (counted wrong); "
        "err: failed runs (counted wrong)"
    )
    return "\n".join(lines)


def write_summary(
    out_dir: Path, points: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]
) -> Path:
    """Write summary.json (atomically: a kill never leaves half a file) and table.txt."""
    summary = {**meta, "results": list(points)}
    path = out_dir / "summary.json"
    _write_atomic(path, json.dumps(summary, indent=2) + "\n")
    _write_atomic(out_dir / "table.txt", format_table(points) + "\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
