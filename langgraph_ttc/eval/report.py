"""summary.json and the readable table (terminal and table.txt)."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langgraph_ttc.selection import SCORE_SELECTIONS as SELECTIONS

MODE_ABBREVIATIONS = {"naive": "naive", "weighted": "wtd", "majority": "maj"}


def format_table(points: Sequence[Mapping[str, Any]], notes: Sequence[str] = ()) -> str:
    """One line per (strategy, N): strict then lenient accuracy per selection mode and pass@N,
    the format rate, cost; then the legend and `notes` (e.g. the run's throughput)."""
    modes = "".join(f"{MODE_ABBREVIATIONS[mode]:>7}" for mode in SELECTIONS) + f"{'pass@N':>8}"
    width = 7 * len(SELECTIONS) + 8
    lead = f"{'':<12}{'':>4}{'':>5}{'':>3}  "
    groups = lead + f"{'strict (stated answers)':^{width}}  {'lenient (+ last number)':^{width}}"
    header = (
        f"{'strategy':<12}{'N':>4}{'run':>5}{'m':>3}  {modes}  {modes}"
        + f"{'format':>8}{'tokens':>9}{'wall s':>8}{'probs':>6}{'t/o':>5}{'err':>5}"
    )
    lines = [groups, header, "-" * len(header)]
    for p in points:
        tokens = f"{p['mean_tokens']:.0f}" + ("" if p.get("tokens_exact", True) else "~")
        strict = "".join(f"{p['strict_accuracy'][mode]:>7.1%}" for mode in SELECTIONS)
        lenient = "".join(f"{p['accuracy'][mode]:>7.1%}" for mode in SELECTIONS)
        lines.append(
            f"{p['strategy']:<12}{p['n']:>4}{p['run_n']:>5}{p['beam_width']:>3}  "
            + f"{strict}{p['strict_pass_at_n']:>8.1%}  {lenient}{p['pass_at_n']:>8.1%}"
            + f"{p['format_rate']:>8.1%}{tokens:>9}{p['mean_wall_time_s']:>8.1f}"
            + f"{p['problems']:>6}{p['grading_timeouts']:>5}{p['errors']:>5}"
        )
    lines += textwrap.wrap(
        "N: budget; run: the N the run used (smaller N read from its first samples/subtrees); "
        "m: beam width. naive/wtd/maj: the selection mode picks one candidate (on the run's "
        "answers); strict: that candidate states the right answer (\\boxed{} or 'the answer "
        "is'); lenient: its answer, read with the last-number fallback, is right. pass@N: any "
        "candidate right (strict: an oracle verifier's accuracy). format: share of candidates "
        "that state an answer; tokens: mean generated per problem (~ estimated); wall s: mean "
        "per problem with runs sharing the engine; t/o: grading timeouts (counted wrong); err: "
        "failed runs (counted wrong)",
        width=100,
    )
    return "\n".join([*lines, *notes])


def write_summary(
    out_dir: Path,
    points: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
    notes: Sequence[str] = (),
) -> Path:
    """Write summary.json (atomically: a kill never leaves half a file) and table.txt (with
    `notes` under the table)."""
    summary = {**meta, "results": list(points)}
    path = out_dir / "summary.json"
    _write_atomic(path, json.dumps(summary, indent=2) + "\n")
    _write_atomic(out_dir / "table.txt", format_table(points, notes) + "\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def describe_throughput(throughput: dict[str, Any]) -> str:
    """The run phase's tok/s (engine start excluded), utilisation and engine load, in words."""
    lines = [
        f"throughput: {throughput['policy_tokens']} policy tokens in {throughput['run_s']:.1f} s "
        f"= {throughput['tok_s']:.1f} tok/s"
        + (
            f", {throughput['utilisation']:.0%} of the engine's peak {throughput['peak_tok_s']:g}"
            " tok/s"
            if throughput.get("utilisation") is not None
            else " (engine utilisation: pass --peak-tok-s)"
        )
    ]
    per = throughput.get("per_strategy") or {}
    if len(per) > 1:
        lines.append(
            "  per strategy (its tokens / the time its problems ran, beside the others): "
            + "; ".join(
                f"{name} {g['tok_s'] or 0:.1f} tok/s over {g['active_s']:.1f} s"
                for name, g in per.items()
            )
        )
    load = throughput.get("load") or {}
    line = _describe_load(load)
    if line:
        lines.append(line)
    engine = throughput.get("engine") or {}
    if engine.get("prefill_share") is not None:
        lines.append(
            f"  engine work: {engine['generated']} tokens generated, {engine['prompt_computed']}"
            f" prompt tokens prefilled ({engine['prefill_share']:.0%} of its tokens), "
            f"{engine['prompt_cached']} read from the prefix cache"
            + (
                f"; {engine['tokens_per_step']} tokens generated per engine step"
                if engine.get("tokens_per_step")
                else ""
            )
        )
    return "\n".join(lines)


def _describe_load(load: dict[str, Any]) -> str | None:
    """The engine's running sequences while problems waited for admission (steady state)."""
    target = load.get("target_sequences")
    of_target = f" (target {target})" if target else ""
    if not load.get("steady_samples"):
        whole = _first_known(
            load, "mean_engine_running_whole_run", "mean_sequences_in_flight_whole_run"
        )
        if whole is None:
            return None
        return (
            f"  engine load: every problem was admitted at once (no steady state); "
            f"{whole:.1f} sequences running on average{of_target}"
        )
    running = _first_known(load, "mean_engine_running", "mean_sequences_in_flight")
    if running is None:
        return None
    below = load.get("share_below_half_target")
    return (
        f"  engine load while problems waited: {running:.1f} sequences running on average"
        + of_target
        + (f", below half the target in {below:.0%} of samples" if below is not None else "")
        + f"; {load['mean_items']:.1f} problems in flight"
    )


def _first_known(values: dict[str, Any], *keys: str) -> Any:
    return next((values[k] for k in keys if values.get(k) is not None), None)


def title(config: dict[str, Any], problems: int) -> str:
    name = (
        Path(config["dataset"]).stem
        if not config["dataset"].startswith("hf:")
        else config["dataset"]
    )
    shots = f", {config['few_shot']}-shot" if config.get("few_shot") else ""
    return f"{name}, {problems} problems{shots}\n{config['model']}, verifier: {config['prm']}"
