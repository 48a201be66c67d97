"""`ttc eval` from the command line, with the engine replaced by protocol-level fakes."""

import json

import pytest

from langgraph_ttc import cli
from langgraph_ttc.cli import eval as command
from tests.fakes import KeywordPRM, cycling

ROWS = [
    {"id": "a", "problem": "1 + 1?", "answer": "2"},
    {"id": "b", "problem": "2 + 2?", "answer": "4"},
    {"id": "c", "problem": "3 + 3?", "answer": "6"},
]


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture
def fake_engine(monkeypatch):
    """Replace vLLM with fakes: samples answer 2 or 4, scored by a keyword PRM; records runs."""
    policy = cycling(["1 + 1 = 2 ok\n\n\\boxed{2}", "so 4\n\n\\boxed{4}"])
    prm = KeywordPRM({"ok": 0.9})
    monkeypatch.setattr(
        command, "make_backends", lambda args: (policy, prm if args.prm != "none" else None)
    )
    return policy.calls


def test_eval_writes_results_summary_table_and_plot(tmp_path, dataset, fake_engine, capsys):
    out = tmp_path / "out"
    argv = ["eval", "--dataset", str(dataset), "--n", "1,2", "--out", str(out), "--limit", "2"]
    assert cli.main(argv) == 0
    assert len(fake_engine) == 4  # 2 problems x (greedy, best-of-N once at N=2)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3
    summary = json.loads((out / "summary.json").read_text())
    points = {(p["strategy"], p["n"]): p for p in summary["results"]}
    assert set(points) == {("greedy", 1), ("best_of_n", 1), ("best_of_n", 2)}
    assert points[("greedy", 1)]["accuracy"]["naive"] == 0.5  # "2" is right for problem a only
    assert points[("best_of_n", 2)]["pass_at_n"] == 1.0  # a: 2, b: 4 among the two samples
    assert summary["problems"] == 2 and summary["dataset"] == str(dataset)
    table = capsys.readouterr().out
    assert table.splitlines()[1].split()[:2] == ["strategy", "N"]
    assert (out / "table.txt").read_text().strip() == table.strip()
    assert (out / "scaling.png").read_bytes()[:4] == b"\x89PNG"

    # the same command again refuses to touch the results; --resume with nothing to do does
    # not start an engine; a larger --limit runs only the new problem
    assert cli.main(argv) == 1
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*argv, "--resume"]) == 0 and len(fake_engine) == 4
    assert cli.main([*argv[:-2], "--limit", "3", "--resume"]) == 0 and len(fake_engine) == 6
    assert len((out / "results.jsonl").read_text().splitlines()) == 3 * 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problems"] == 3
    assert [i["work_items"] for i in summary["invocations"]] == [4, 0, 2]

    # changed sampling settings cannot be mixed into the same results
    assert cli.main([*argv, "--resume", "--temperature", "0.5"]) == 1
    assert "different settings" in capsys.readouterr().err


NEW_ROW_FIELDS = ("selected", "strict_predictions", "strict_correct", "strict_pass")
NEW_ROW_FIELDS += ("stated_candidates", "num_candidates")


def test_results_written_before_strict_metrics_still_resume(tmp_path, dataset, monkeypatch):
    texts = ["the sum is 2 or so", "1 + 1 = 2\n\n\\boxed{2}", "so 4\n\n\\boxed{4}"]
    policy = cycling(texts)
    monkeypatch.setattr(command, "make_backends", lambda args: (policy, None))
    out = tmp_path / "out"
    argv = ["eval", "--dataset", str(dataset), "--n", "1,3", "--out", str(out), "--prm", "none"]
    assert cli.main([*argv, "--limit", "2", "--few-shot", "0"]) == 0
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    del config["few_shot"], config["examples_file"]  # as an earlier version wrote it
    config_path.write_text(json.dumps(config))
    log = out / "results.jsonl"
    old_rows = []
    for line in log.read_text().splitlines():  # as an earlier version wrote them
        row = {k: v for k, v in json.loads(line).items() if k not in NEW_ROW_FIELDS}
        row["candidates"] = [
            {k: v for k, v in c.items() if k not in ("stated_answer", "strict_correct")}
            for c in row["candidates"]
        ]
        old_rows.append(row)
    log.write_text("".join(json.dumps(r) + "\n" for r in old_rows))
    calls = len(policy.calls)
    assert cli.main([*argv, "--limit", "3", "--resume"]) == 0  # no examples, as before
    assert len(log.read_text().splitlines()) == 3 * 3
    assert [len(call[0].messages) for call in policy.calls[calls:]] == [2, 2]
    resumed = {
        (p["strategy"], p["n"]): p
        for p in json.loads((out / "summary.json").read_text())["results"]
    }
    assert resumed[("best_of_n", 3)]["problems"] == 3
    # two problems from old rows, one fresh: all graded alike
    greedy = resumed[("greedy", 1)]
    assert greedy["strict_accuracy"]["naive"] == 0.0 and greedy["accuracy"]["naive"] == 1 / 3
    assert greedy["format_rate"] == 0.0
    bon3 = resumed[("best_of_n", 3)]
    assert bon3["format_rate"] == 2 / 3 and bon3["strict_pass_at_n"] == 2 / 3
    assert bon3["pass_at_n"] == 2 / 3 and bon3["accuracy"]["naive"] == 1 / 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "0,2"], "positive integers"),
        (["--concurrency", "0"], "--concurrency"),
        (["--dataset", "hf:HuggingFaceH4/MATH-500"], "hf:HuggingFaceH4/MATH-500"),
        (["--problem-field", "question"], "no 'question'"),
        (["--beam-width", "0", "--strategy", "beam_search"], "beam width"),
        (["--max-tokens", "0"], "max_tokens: Input should be greater than or equal to 1"),
        (["--strategy", "dvts", "--prm", "none"], "needs a prm"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, dataset, fake_engine, capsys, extra, message):
    argv = ["eval", "--dataset", str(dataset), "--out", str(tmp_path / "o"), *extra]
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err
    assert fake_engine == []
    assert not (tmp_path / "o" / "results.jsonl").exists()


# Runs `ttc eval` with VLLMPolicy replaced by a policy whose generation never ends.
BLOCKING_TTC = """
import asyncio, sys
from pathlib import Path

import langgraph_ttc.policies

generating, shut_down = Path(sys.argv[1]), Path(sys.argv[2])


class BlockingPolicy:
    startup_seconds = 0.0

    def __init__(self, model=None, *, settings=None):
        self.model_ref = model

    async def start(self):
        pass

    async def generate(self, requests):
        generating.touch()
        await asyncio.sleep(3600)

    def shutdown(self):
        shut_down.write_text("engine shut down")


langgraph_ttc.policies.VLLMPolicy = BlockingPolicy
from langgraph_ttc.cli import main

sys.exit(main(sys.argv[3:]))
"""


def test_sigterm_unwinds_like_ctrl_c_so_the_engine_is_shut_down(tmp_path, dataset):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script, generating, shut_down = (tmp_path / n for n in ("ttc.py", "generating", "shut_down"))
    script.write_text(BLOCKING_TTC)
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    argv = ["eval", "--dataset", str(dataset), "--out", str(tmp_path / "out"), "--no-progress"]
    process = subprocess.Popen(
        [sys.executable, str(script), str(generating), str(shut_down), *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not generating.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert generating.exists(), f"never reached generation: {process.poll()}"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "interrupted" and "Traceback" not in err
    assert shut_down.exists(), "interrupted without shutting the policy down"


def test_main_restores_the_sigterm_handler(tmp_path, dataset, fake_engine):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["eval", "--dataset", str(dataset), "--out", str(tmp_path), "--n", "0"]) == 1
    assert signal.getsignal(signal.SIGTERM) == before
