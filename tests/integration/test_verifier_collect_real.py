"""`ttc verifier collect` end to end: the embedded model on two shared problems, then a resume."""

import json

import pytest

from tests.shared_data import shared_data_dir
from tests.ttc_subprocess import run_ttc

pytestmark = pytest.mark.integration
DATASET = shared_data_dir() / "mawps_addsub.jsonl"


@pytest.mark.skipif(not DATASET.exists(), reason="shared data sets not on this machine")
def test_collect_on_two_problems_with_rollouts_then_resume(tmp_path):
    out = tmp_path / "data"
    args = [
        "--dataset", str(DATASET), "--limit", "2", "--n", "3", "--rollouts", "2",
        "--max-tokens", "64", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    first = run_ttc("verifier", "collect", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "engine ready" in first.stderr and "6 candidates of 2 problems" in first.stdout

    rows = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    ids = [json.loads(line)["id"] for line in DATASET.read_text().splitlines()[:2]]
    assert [(r["problem_id"], r["candidate"]) for r in rows] == [
        (i, k) for i in ids for k in range(3)
    ]
    for row in rows:
        assert row["label"] in (0, 1) and row["num_tokens"] <= 64
        assert row["label"] == 0 or row["stated_answer"] is not None
        assert len(row["step_labels"]) == len(row["steps"])
        assert all(label in (0.0, 0.5, 1.0) for label in row["step_labels"])  # k = 2 rollouts
        if row["steps"]:
            assert row["step_labels"][-1] == row["label"]

    again = run_ttc("verifier", "collect", *args, "--resume")  # nothing left: no engine start
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 problems to collect" in again.stderr and "engine" not in again.stderr
    assert len((out / "candidates.jsonl").read_text().splitlines()) == 6
