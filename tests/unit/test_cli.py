import json
from typing import ClassVar

import pytest

from langgraph_ttc import cli
from tests.fakes import ScriptedPolicy, seeded_arithmetic


class FakeEnginePolicy(ScriptedPolicy):
    """Stands in for VLLMPolicy in CLI tests: same lifecycle methods, scripted samples."""

    instances: ClassVar[list["FakeEnginePolicy"]] = []

    def __init__(self, model=None):
        super().__init__(seeded_arithmetic)
        self.model, self.startup_seconds, self.closed = model, 0.1, False
        FakeEnginePolicy.instances.append(self)

    async def start(self):
        pass

    def shutdown(self):
        self.closed = True


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch):
    FakeEnginePolicy.instances = []
    monkeypatch.setattr("langgraph_ttc.policies.VLLMPolicy", FakeEnginePolicy)


def test_solve_json(capsys):
    assert cli.main(["solve", "What is 1 + 2?", "--n", "4", "--json", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert set(out) == {"answer", "solution", "candidates", "usage"}
    assert len(out["candidates"]) == 4
    assert "engine ready" in captured.err and "tok/s" in captured.err
    assert FakeEnginePolicy.instances[0].closed


@pytest.mark.parametrize("strategy", ["beam_search", "dvts", "self_refine"])
def test_solve_every_strategy_prints_a_table(capsys, strategy):
    assert (
        cli.main(
            [
                "solve",
                "What is 1 + 2?",
                "--strategy",
                strategy,
                "--n",
                "4",
                "--max-iterations",
                "3",
                "--rounds",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["id", "answer", "score", "tokens", "finish"]
    assert "*" in out and "Answer:" in out


def test_model_flag_reaches_the_policy(capsys):
    cli.main(["solve", "q", "--n", "1", "--temperature", "0", "--model", "my/model", "--json"])
    assert FakeEnginePolicy.instances[0].model == "my/model"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["solve", "  "], "empty problem"),
        (["solve", "q", "--n", "0"], "n: Input should be greater than or equal to 1"),
        (["solve", "q", "--strategy", "beam_search", "--prm", "none"], "needs a prm"),
        (["solve", "q", "--strategy", "dvts", "--n", "3"], "multiple of beam_width"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, message):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_candidate_table_marks_the_selection():
    rows = [
        {
            "id": 0,
            "text": "a",
            "answer": "1",
            "score": 0.2,
            "num_tokens": 3,
            "finish_reason": "stop",
        },
        {
            "id": 1,
            "text": "b",
            "answer": None,
            "score": 0.9,
            "num_tokens": 5,
            "finish_reason": "length",
        },
    ]
    table = cli.format_candidates(rows, "a").splitlines()
    assert table[1].split()[:2] == ["1", "None"]  # best score first
    assert table[2].startswith("*")


def test_progress_renders_every_event_kind(capsys):
    import io

    stream = io.StringIO()
    progress = cli.Progress(stream)
    for event in [
        {"type": "generation", "tokens": 10, "seconds": 1.0, "sequences": 2, "finished": 1},
        {"type": "candidate", "id": 0, "text": "x", "num_tokens": 1, "finished": True},
        {"type": "score", "strategy": "best_of_n", "id": 0, "score": 0.5, "step_scores": [0.5]},
        {"type": "prune", "iteration": 0, "kept": [1], "dropped": [2]},
        {"type": "critique", "id": 0, "text": "fine"},
        {"type": "selected", "id": 0, "answer": "3", "score": 0.5},
    ]:
        progress.event(event)
    text = stream.getvalue()
    assert "candidate 0" in text and "kept [1]" in text and "answer '3'" in text
