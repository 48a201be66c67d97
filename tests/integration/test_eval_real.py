"""`ttc eval` end to end: the embedded model on a few shared problems, then a resume."""

import json

import pytest

from tests.shared_data import shared_data_dir
from tests.ttc_subprocess import run_ttc

pytestmark = pytest.mark.integration
DATASET = shared_data_dir() / "mawps_singleop.jsonl"


@pytest.mark.skipif(not DATASET.exists(), reason="shared data sets not on this machine")
def test_cli_eval_on_three_problems_then_resume(tmp_path):
    out = tmp_path / "eval"
    args = [
        "--dataset", str(DATASET), "--limit", "3", "--strategy", "best_of_n", "beam_search",
        "--n", "1,2", "--max-tokens", "48", "--max-iterations", "3", "--concurrency", "3",
        "--out", str(out), "--no-progress",
    ]  # fmt: skip
    first = run_ttc("eval", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "engine ready" in first.stderr

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    # greedy + best-of-N at 1 and 2 (one run at N=2) + beam search at 1 and 2 (two runs)
    keys = sorted((r["strategy"], r["budget"], r["id"]) for r in rows)
    ids = [json.loads(line)["id"] for line in DATASET.read_text().splitlines()[:3]]
    expected = [("beam_search", 1), ("beam_search", 2), ("best_of_n", 1), ("best_of_n", 2)]
    assert keys == sorted([(s, k, i) for s, k in [*expected, ("greedy", 1)] for i in ids])
    for row in rows:
        assert row["error"] is None, row["error"]
        assert len(row["candidates"]) == row["budget"]
        assert row["tokens"] > 0 and row["wall_time_s"] > 0
        assert row["pass"] == any(c["correct"] for c in row["candidates"])
        assert set(row["predictions"]) == {"naive", "weighted", "majority"}
    greedy = [r for r in rows if r["strategy"] == "greedy"]
    assert all(r["candidates"][0]["num_tokens"] <= 48 for r in greedy)
    bon = {(r["id"], r["budget"]): r for r in rows if r["strategy"] == "best_of_n"}
    for i in ids:  # N=1 is the first sample of the N=2 run
        assert bon[(i, 1)]["candidates"] == bon[(i, 2)]["candidates"][:1]

    summary = json.loads((out / "summary.json").read_text())
    points = {(p["strategy"], p["n"]): p for p in summary["results"]}
    assert set(points) == {(s, k) for s, k in expected} | {("greedy", 1)}
    for (strategy, n), point in points.items():
        matching = [r for r in rows if r["strategy"] == strategy and r["budget"] == n]
        assert point["problems"] == 3
        assert point["pass_at_n"] == sum(r["pass"] for r in matching) / 3
        assert point["accuracy"]["majority"] == sum(r["correct"]["majority"] for r in matching) / 3
    assert "greedy" in first.stdout and "beam_search" in first.stdout
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "load.png").read_bytes()[:4] == b"\x89PNG"
    engine = summary["throughput"]["engine"]  # the real engine's own work over the run
    assert engine["generated"] > 0 and engine["prompt_cached"] > 0
    assert 0 < engine["prefill_share"] < 1

    # nothing left to do: --resume only reports (no engine), and duplicates nothing
    again = run_ttc("eval", *args, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 to do" in again.stderr and "engine" not in again.stderr
    assert len((out / "results.jsonl").read_text().splitlines()) == len(rows)
