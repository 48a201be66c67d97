"""Worked examples: the packaged set, files, --few-shot K on `ttc solve` and `ttc eval`."""

import json

import pytest

from langgraph_ttc import cli
from langgraph_ttc.answers import grade, strict_answer
from langgraph_ttc.cli import eval as command
from langgraph_ttc.selection import split_steps
from langgraph_ttc.worked_examples import (
    DEFAULT_FEW_SHOT,
    ExamplesError,
    load_examples,
    select_examples,
)
from tests.fakes import cycling


def test_the_packaged_examples_follow_the_system_prompts_format():
    examples = load_examples()
    assert 4 <= len(examples) <= 8
    for problem, solution in examples:
        assert problem.endswith("?")
        assert len(split_steps(solution)) >= 2  # steps separated by a blank line
        last_step = split_steps(solution)[-1]
        assert "\\boxed{" in last_step and strict_answer(solution) is not None
    # the arithmetic in each solution ends where its boxed answer says
    assert [strict_answer(s) for _, s in examples] == ["15", "42", "9", "26", "52", "8"]
    assert grade(strict_answer(examples[1][1]), "42")


def test_select_the_first_k_of_a_file_or_of_the_default_set(tmp_path):
    path = tmp_path / "ex.jsonl"
    rows = [{"problem": f"p{i}?", "solution": f"s{i}\n\n\\boxed{{{i}}}"} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert select_examples(2, path) == [("p0?", "s0\n\n\\boxed{0}"), ("p1?", "s1\n\n\\boxed{1}")]
    assert len(select_examples(None, path)) == 3  # a file without K: all of it
    assert select_examples(None) == load_examples()[:DEFAULT_FEW_SHOT] != []
    assert select_examples(2) == load_examples()[:2]
    with pytest.raises(ExamplesError, match="more examples than the 3"):
        select_examples(4, path)
    with pytest.raises(ExamplesError, match=">= 0"):
        select_examples(-1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"problem": "p"}\n', "ex.jsonl:1 needs non-empty string fields"),
        ('{"problem": "p", "solution": "s"}\nnot json\n', "ex.jsonl:2 is not JSON"),
        ('["p", "s"]\n', "needs non-empty string fields"),
        ('{"problem": " ", "solution": "s"}\n', "needs non-empty string fields"),
    ],
)
def test_bad_example_files_fail_clearly(tmp_path, text, message):
    path = tmp_path / "ex.jsonl"
    path.write_text(text)
    with pytest.raises(ExamplesError, match=message):
        select_examples(0, path)  # checked even when none are used
    with pytest.raises(ExamplesError, match="cannot read"):
        select_examples(1, tmp_path / "missing.jsonl")


def test_solve_shows_the_examples_as_chat_turns(monkeypatch, capsys):
    policy = cycling(["1 + 2 = 3\n\n\\boxed{3}"])
    policy.start, policy.shutdown, policy.startup_seconds = _noop_start, lambda: None, 0.0
    monkeypatch.setattr("langgraph_ttc.policies.VLLMPolicy", lambda model=None: policy)
    argv = ["solve", "What is 1 + 2?", "--n", "1", "--temperature", "0", "--prm", "none"]
    assert cli.main([*argv, "--few-shot", "2"]) == 0
    messages = policy.calls[0][0].messages
    examples = load_examples()[:2]
    roles = ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m["role"] for m in messages] == roles
    assert messages[1]["content"] == examples[0][0] and messages[4]["content"] == examples[1][1]
    assert messages[-1]["content"] == "What is 1 + 2?"
    assert "examples=2" in capsys.readouterr().err
    assert cli.main([*argv, "--few-shot", "99"]) == 1
    assert "more examples than the 6" in capsys.readouterr().err


async def _noop_start():
    return None


def test_eval_records_the_examples_and_resume_refuses_others(tmp_path, monkeypatch, capsys):
    dataset = tmp_path / "d.jsonl"
    dataset.write_text(json.dumps({"id": "a", "problem": "1 + 1?", "answer": "2"}) + "\n")
    policy = cycling(["1 + 1 = 2\n\n\\boxed{2}"])
    monkeypatch.setattr(command, "make_backends", lambda args: (policy, None))
    out = tmp_path / "out"
    argv = ["eval", "--dataset", str(dataset), "--n", "2", "--out", str(out), "--prm", "none"]
    assert cli.main([*argv, "--few-shot", "3"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["examples"] == [list(e) for e in load_examples()[:3]]
    assert config["few_shot"] == 3
    assert all(len(call[0].messages) == 1 + 2 * 3 + 1 for call in policy.calls)
    assert cli.main([*argv, "--few-shot", "3", "--resume"]) == 0
    assert cli.main([*argv, "--few-shot", "2", "--resume"]) == 1
    assert "different settings" in capsys.readouterr().err
    calls = len(policy.calls)
    # --resume without the options keeps the earlier run's examples
    assert cli.main([*argv, "--resume", "--limit", "1"]) == 0 and len(policy.calls) == calls


def test_an_examples_file_is_a_bounded_regular_file(tmp_path):
    import os

    from langgraph_ttc.worked_examples import load_examples

    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(ExamplesError, match="not a regular file"):
        load_examples(tmp_path / "fifo.jsonl")  # no writer: an open() would block for ever
    (tmp_path / "big.jsonl").write_bytes(b" " * ((4 << 20) + 1))
    with pytest.raises(ExamplesError, match="limit"):
        load_examples(tmp_path / "big.jsonl")
