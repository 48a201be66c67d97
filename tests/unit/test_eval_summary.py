"""Summary arithmetic on hand-made result rows, and the table / plot built from it."""

import json

import pytest

from langgraph_ttc.eval.metrics import summarize
from langgraph_ttc.eval.report import format_table, write_summary


def row(strategy, budget, pid, naive, weighted, majority, passed, tokens, wall, **extra):
    strict = extra.pop("strict", (False, False, False, False, 0, 1))
    return {
        "strict_correct": dict(zip(("naive", "weighted", "majority"), strict[:3], strict=True)),
        "strict_pass": strict[3],
        "stated_candidates": strict[4],
        "num_candidates": strict[5],
        "id": pid,
        "strategy": strategy,
        "budget": budget,
        "run_n": extra.pop("run_n", budget),
        "beam_width": extra.pop("beam_width", 1),
        "correct": {"naive": naive, "weighted": weighted, "majority": majority},
        "pass": passed,
        "tokens": tokens,
        "wall_time_s": wall,
        "grading_timeouts": extra.pop("timeouts", 0),
        "error": extra.pop("error", None),
        **extra,
    }


STRICT_A = (True, False, False, True, 3, 4)  # naive right, pass, 3 of 4 stated
STRICT_B = (False, True, True, True, 1, 4)
ROWS = [
    row("best_of_n", 4, "a", True, True, False, True, 100, 2.0, run_n=8, strict=STRICT_A),
    row(
        "best_of_n", 4, "b", False, True, True, True, 60, 4.0, run_n=8, timeouts=2, strict=STRICT_B
    ),
    row("best_of_n", 4, "c", False, False, False, False, 20, 3.0, run_n=8, error="boom"),
    row("best_of_n", 4, "d", False, False, False, True, 40, 3.0, run_n=8),
    row("greedy", 1, "a", True, True, True, True, 30, 1.0),
    row("greedy", 1, "b", False, False, False, False, 10, 1.0),
    row("best_of_n", 1, "a", True, True, True, True, 25, 2.0, run_n=8),
    row("beam_search", 2, "a", True, True, True, True, 7, 1.0, beam_width=2, tokens_exact=False),
]


def test_summary_arithmetic():
    points = summarize(ROWS)
    assert [(p["strategy"], p["n"]) for p in points] == [
        ("greedy", 1),
        ("best_of_n", 1),
        ("best_of_n", 4),
        ("beam_search", 2),
    ]
    bon4 = points[2]
    assert bon4["problems"] == 4 and bon4["run_n"] == 8
    assert bon4["accuracy"] == {"naive": 0.25, "weighted": 0.5, "majority": 0.25}
    assert bon4["correct"] == {"naive": 1, "weighted": 2, "majority": 1}
    assert bon4["pass_at_n"] == 0.75
    assert bon4["strict_accuracy"] == {"naive": 0.25, "weighted": 0.25, "majority": 0.25}
    assert bon4["strict_pass_at_n"] == 0.5
    assert bon4["format_rate"] == 4 / 10  # (3 + 1 + 0 + 0) stated of (4 + 4 + 1 + 1)
    assert bon4["mean_tokens"] == 55.0 and bon4["mean_wall_time_s"] == 3.0
    assert bon4["grading_timeouts"] == 2 and bon4["errors"] == 1
    greedy = points[0]
    assert greedy["accuracy"]["naive"] == 0.5 and greedy["mean_tokens"] == 20
    assert points[3]["beam_width"] == 2 and points[3]["tokens_exact"] is False


def test_table_and_summary_file(tmp_path):
    points = summarize(ROWS)
    table = format_table(points)
    lines = table.splitlines()
    bon4 = next(line for line in lines if line.startswith("best_of_n") and " 4 " in line)
    assert bon4.split()[4:] == (
        "25.0% 25.0% 25.0% 50.0% 25.0% 50.0% 25.0% 75.0% 40.0% 55 3.0 4 2 1".split()
    )
    assert "strict" in lines[0] and "lenient" in lines[0]
    assert "7~" in next(line for line in lines if line.startswith("beam_search"))
    path = write_summary(tmp_path, points, {"dataset": "x.jsonl"})
    saved = json.loads(path.read_text())
    assert saved["dataset"] == "x.jsonl" and saved["results"] == points
    assert (tmp_path / "table.txt").read_text() == table + "\n"
    assert not list(tmp_path.glob("*.tmp"))


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from langgraph_ttc.eval.plots import plot_accuracy_tokens, plot_scaling

    for plot, name in ((plot_scaling, "scaling.png"), (plot_accuracy_tokens, "tokens.png")):
        path = plot(summarize(ROWS), tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
