"""`ttc verifier collect` on a scripted policy: strict labels, Monte-Carlo step labels, resume."""

import json
import re
from collections import Counter

import pytest

from langgraph_ttc import cli
from langgraph_ttc.cli import verifier as command
from langgraph_ttc.eval.datasets import Problem
from langgraph_ttc.strategies.settings import StrategySettings
from langgraph_ttc.training.collect import CollectSettings, collect_problem
from tests.fakes import ScriptedPolicy


def script(request, i):
    """Sample kinds by index: right and stated, wrong, right but unstated (a stray number).
    A rollout from a "good" step states the right answer every other sample, from a "bad"
    step a wrong one."""
    a, b = map(int, re.findall(r"\d+", request.messages[-1]["content"])[:2])
    if request.prefix:
        right = "good" in request.prefix and i % 2 == 0
        return f"so \\boxed{{{a + b if right else a + b + 2}}}"
    return [
        f"{a} + {b} = {a + b} good\n\nso \\boxed{{{a + b}}}",
        f"{a} + {b} = {a + b + 1} bad\n\nso \\boxed{{{a + b + 1}}}",
        f"{a} + {b} = {a + b} good\n\nthat is {a + b} apples",
    ][i % 3]


async def test_labels_are_strict_and_steps_get_rollout_fractions():
    policy = ScriptedPolicy(script)
    sampling = StrategySettings(n=3, seed=5, max_tokens=64)
    rows = await collect_problem(
        Problem("p", "What is 3 + 4?", "7"), policy, sampling, CollectSettings(3, rollouts=2)
    )
    assert [r["candidate"] for r in rows] == [0, 1, 2]
    assert [r["label"] for r in rows] == [1, 0, 0]
    assert [r["lenient_label"] for r in rows] == [1, 0, 1]  # the stray 7 counts only leniently
    assert [r["stated_answer"] for r in rows] == ["7", "8", None]
    assert [r["step_labels"] for r in rows] == [[0.5, 1.0], [0.0, 0.0], [0.5, 0.0]]
    assert rows[0]["steps"] == ["3 + 4 = 7 good", "so \\boxed{7}"]
    samples, rollouts = policy.calls
    assert [r.n for r in samples] == [3] and samples[0].seed == 5
    # one rollout request per non-final step, continuing that step, each with its own seed
    assert [r.prefix for r in rollouts] == [
        "3 + 4 = 7 good\n\n",
        "3 + 4 = 8 bad\n\n",
        "3 + 4 = 7 good\n\n",
    ]
    assert all(r.n == 2 for r in rollouts) and len({r.seed for r in rollouts}) == 3
    outcome_only = await collect_problem(
        Problem("p", "What is 3 + 4?", "7"), policy, sampling, CollectSettings(3)
    )
    assert [r["step_labels"] for r in outcome_only] == [None] * 3 and len(policy.calls) == 3


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"id": f"q{i}", "problem": f"What is {i} + 2?", "answer": str(i + 2)} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_collect_writes_one_row_per_candidate_and_resumes(tmp_path, dataset, monkeypatch, capsys):
    policy = ScriptedPolicy(script)
    monkeypatch.setattr(command, "make_policy", lambda args: policy)
    out = tmp_path / "data"
    argv = ["verifier", "collect", "--dataset", str(dataset), "--n", "3", "--out", str(out)]
    argv += ["--rollouts", "2", "--no-progress"]
    assert cli.main([*argv, "--limit", "2"]) == 0
    path = out / "candidates.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert Counter(r["problem_id"] for r in rows) == {"q0": 3, "q1": 3}
    assert "6 candidates of 2 problems: 2 labelled right" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["n"] == 3 and config["rollouts"] == 2

    assert cli.main([*argv, "--limit", "2"]) == 1  # no silent overwrite
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*argv, "--resume", "--rollouts", "4"]) == 1
    assert "different rollouts" in capsys.readouterr().err

    calls = len(policy.calls)
    assert cli.main([*argv, "--resume"]) == 0  # only q2 is new
    assert len(policy.calls) == calls + 2  # its samples, then its rollouts
    # a kill in the middle of the last write: that problem is collected again, once
    text = path.read_text()
    path.write_text(text[: len(text) - 40])
    assert cli.main([*argv, "--resume"]) == 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert Counter(r["problem_id"] for r in rows) == {"q0": 3, "q1": 3, "q2": 3}
    assert [r["candidate"] for r in rows if r["problem_id"] == "q2"] == [0, 1, 2]


@pytest.mark.parametrize(
    ("extra", "message"), [(["--n", "0"], "--n must be >= 1"), (["--rollouts", "-1"], ">= 0")]
)
def test_bad_options_fail_before_sampling(tmp_path, dataset, monkeypatch, capsys, extra, message):
    policy = ScriptedPolicy(script)
    monkeypatch.setattr(command, "make_policy", lambda args: policy)
    argv = ["verifier", "collect", "--dataset", str(dataset), "--out", str(tmp_path / "o")]
    assert cli.main([*argv, *extra]) == 1
    assert message in capsys.readouterr().err and policy.calls == []
