"""examples/scaling_curve.py with fakes: the evaluation API end to end on two problems."""

import os
from pathlib import Path

import pytest

from examples.scaling_curve import DATASET, REPOSITORY, scaling_curve
from langgraph_ttc.eval import Problem
from tests.fakes import KeywordPRM, alternating, tree_policy

# the fake solver writes two steps; "good" ones count, so sample 0 answers 2, sample 1 answers 0
PROBLEMS = [Problem("a", "first", "2"), Problem("b", "second", "0")]


async def test_summary_and_plot(tmp_path):
    points = await scaling_curve(
        tree_policy(2, alternating),
        KeywordPRM({"good": 0.9, "bad": 0.1}),
        PROBLEMS,
        tmp_path,
        budgets=(1, 2),
        settings={"seed": 0},
    )
    by_key = {(p["strategy"], p["n"]): p for p in points}
    assert set(by_key) == {
        ("greedy", 1),
        ("best_of_n", 1),
        ("best_of_n", 2),
        ("beam_search", 1),
        ("beam_search", 2),
    }
    assert all(p["problems"] == 2 and p["errors"] == 0 for p in points)
    # greedy and the PRM-ranked searches answer 2: right on "a", wrong on "b"
    assert by_key["greedy", 1]["accuracy"]["naive"] == 0.5
    assert by_key["beam_search", 2]["accuracy"]["naive"] == 0.5
    # two best-of-N samples hold both answers: each problem has a right one
    assert by_key["best_of_n", 2]["pass_at_n"] == 1.0
    assert by_key["best_of_n", 1]["pass_at_n"] == 0.5
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 10
    with pytest.raises(FileExistsError):  # never mixes two runs' rows
        await scaling_curve(tree_policy(2, alternating), None, PROBLEMS, tmp_path)


def test_default_dataset_sits_beside_the_repository():
    # normpath, not resolve: ../shared may be a symbolic link
    expected = REPOSITORY.parent / "shared/data/mawps_singleop.jsonl"
    assert Path(os.path.normpath(DATASET)) == expected
