import json

import pytest

from langgraph_ttc.cli import main
from langgraph_ttc.eval.tune import TuneError, fit_table, probe_signals, quantile_edges
from langgraph_ttc.strategies.compute_optimal import load_table


def candidate(answer, score=0.5):
    return {"answer": answer, "score": score, "num_tokens": 10}


def row(pid, strategy, budget, correct, candidates=(), tokens=100, beam_width=1):
    modes = (
        correct
        if isinstance(correct, dict)
        else dict.fromkeys(("naive", "weighted", "majority"), correct)
    )
    return {
        "id": pid,
        "strategy": strategy,
        "budget": budget,
        "beam_width": beam_width,
        "correct": modes,
        "candidates": list(candidates),
        "tokens": tokens,
    }


def dataset():
    """Easy problems (probe agrees): majority-style best-of-N is right and cheap. Hard ones
    (probe disagrees): only beam search is right. Correctness never decides the bins."""
    rows = []
    for k in range(4):
        agree = [candidate("1")] * 4
        rows += [
            row(f"easy{k}", "best_of_n", 4, True, agree, tokens=40),
            row(f"easy{k}", "beam_search", 4, True, tokens=90, beam_width=2),
            row(f"easy{k}", "greedy", 1, True, [candidate("1")], tokens=10),
        ]
        split = [candidate(str(i)) for i in range(4)]
        rows += [
            row(f"hard{k}", "best_of_n", 4, False, split, tokens=40),
            row(f"hard{k}", "beam_search", 4, True, tokens=90, beam_width=2),
            row(f"hard{k}", "greedy", 1, False, [candidate("9")], tokens=10),
            row(f"hard{k}", "compute_optimal", 4, True, tokens=1),  # never a route
        ]
    return rows


def test_quantile_edges():
    assert quantile_edges([0.25] * 4 + [1.0] * 4, 2) == [1.0]
    assert quantile_edges([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 3) == [0.3, 0.5]
    assert quantile_edges([0.5] * 5, 3) == []  # one signal: one bin
    assert quantile_edges([], 3) == []


def test_probe_signals_read_the_first_probe_samples_only():
    rows = [row("a", "best_of_n", 8, True, [candidate("1")] * 4 + [candidate("2")] * 4)]
    assert probe_signals(rows, 4, has_prm=False) == {"a": 1.0}
    assert probe_signals(rows, 8, has_prm=False) == {"a": 0.5}
    assert probe_signals(rows, 9, has_prm=False) == {}


def test_fit_routes_easy_and_hard_bins_apart():
    table = fit_table(dataset(), probe_n=4, bins=2, has_prm=False)
    assert table.bins == [1.0]
    hard, easy = table.routes[4]
    assert hard.strategy == "beam_search" and hard.settings == {
        "n": 4,
        "selection": "majority",  # every mode ties: the first by name
        "beam_width": 2,
    }
    assert easy.strategy == "greedy"  # as accurate as the rest, and cheapest
    assert "8 problems" in table.source


def test_fit_needs_best_of_n_rows():
    rows = [r for r in dataset() if r["strategy"] != "best_of_n"]
    with pytest.raises(TuneError, match="best_of_n"):
        fit_table(rows)


def test_tune_command_writes_a_loadable_table(tmp_path):
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in dataset()))
    (tmp_path / "config.json").write_text(json.dumps({"prm": "none", "dataset": "d.jsonl"}))
    out = tmp_path / "table.json"
    assert main(["tune", "--results", str(results), "--out", str(out), "--bins", "2"]) == 0
    table = load_table(str(out))
    assert table.routes[4][0].strategy == "beam_search"
    assert "d.jsonl" in table.source


def test_fit_ranks_routes_by_strict_accuracy():
    """Best-of-N's picks are right only through the last-number fallback (lenient); beam
    search's state their answers (strict): beam search wins though it costs more."""
    rows = dataset()
    for r in rows:
        if r["id"].startswith("easy") and r["strategy"] in ("best_of_n", "greedy"):
            r["strict_correct"] = dict.fromkeys(("naive", "weighted", "majority"), False)
        elif r["strategy"] != "compute_optimal":
            r["strict_correct"] = r["correct"]
    _, easy = fit_table(rows, probe_n=4, bins=2, has_prm=False).routes[4]
    assert easy.strategy == "beam_search"
