import io
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


class TerminalStream(io.StringIO):
    """Captures what Progress writes, claiming to be a terminal so the live line renders."""

    def isatty(self) -> bool:
        return True


CLEAR = "\r\x1b[K"  # back to the line start, erase it


@pytest.mark.parametrize(
    ("event", "rendered"),
    [
        (
            {"type": "generation", "tokens": 30, "seconds": 2.0, "sequences": 4, "finished": 1},
            f"{CLEAR}generating: 30 tokens, 15.0 tok/s, 1/4 samples done",
        ),
        (
            {"type": "candidate", "id": 2, "text": "so\n\nit is 5", "num_tokens": 7},
            f"{CLEAR}  candidate 2: 7 tokens  ...so it is 5\n",
        ),
        ({"type": "candidate", "id": 2, "text": "so", "num_tokens": 1, "finished": False}, ""),
        (
            {
                "type": "score",
                "strategy": "best_of_n",
                "id": 1,
                "score": 0.5,
                "step_scores": [0.25, 0.5],
            },
            f"{CLEAR}  score 1: 0.50  steps [0.25, 0.50]\n",
        ),
        (
            {
                "type": "score",
                "strategy": "beam_search",
                "id": 1,
                "score": 0.5,
                "step_scores": [0.5],
            },
            f"{CLEAR}score 1: 0.50  steps [0.50]",
        ),
        (
            {"type": "prune", "iteration": 3, "kept": [0, 1], "dropped": [2, 3, 4]},
            f"{CLEAR}  iteration 3: kept [0, 1], dropped 3\n",
        ),
        (
            {"type": "critique", "id": 0, "text": "step 2\nis wrong"},
            f"{CLEAR}  critique of 0: step 2 is wrong...\n",
        ),
        (
            {"type": "selected", "id": 0, "answer": "3", "score": 0.5},
            f"{CLEAR}selected candidate 0: answer '3'\n",
        ),
    ],
)
def test_progress_renders_every_event_kind(event, rendered):
    terminal = TerminalStream()
    cli.Progress(terminal).event(event)
    assert terminal.getvalue() == rendered


def test_progress_keeps_live_lines_off_a_pipe():
    pipe = io.StringIO()
    progress = cli.Progress(pipe)
    progress.event({"type": "generation", "tokens": 1, "seconds": 1, "sequences": 1, "finished": 0})
    progress.event({"type": "selected", "id": 0, "answer": "3", "score": 0.5})
    assert pipe.getvalue() == "selected candidate 0: answer '3'\n"
