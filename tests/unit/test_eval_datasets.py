"""Loading evaluation problems: JSON Lines (the shared sets), fields, limits, hf: errors."""

import json
import sys
import types

import pytest

from langgraph_ttc.eval.datasets import DatasetError, Fields, load_problems
from tests.shared_data import shared_data_dir

SHARED = shared_data_dir() / "mawps_singleop.jsonl"


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.skipif(not SHARED.exists(), reason="shared data sets not on this machine")
def test_the_shared_sets_load_as_they_are():
    problems = load_problems(str(SHARED), limit=30)
    first = json.loads(SHARED.read_text().splitlines()[0])
    assert len(problems) == 30
    assert (problems[0].id, problems[0].problem, problems[0].answer) == (
        str(first["id"]),
        first["problem"].strip(),
        str(first["answer"]),
    )


def test_fields_limit_ids_and_reference_cleanup(tmp_path):
    path = write(
        tmp_path / "d.jsonl",
        [
            {"question": "Q1", "final": 42},
            {"question": "Q2", "final": "He has 3 + 4 = 7 apples.\n#### 7"},
            {"question": "Q3", "final": "1,000", "key": "x"},
        ],
    )
    problems = load_problems(path, fields=Fields("question", "final", "key"))
    assert [(p.id, p.problem, p.answer) for p in problems] == [
        ("0", "Q1", "42"),  # numeric answers become strings; missing ids are positions
        ("1", "Q2", "7"),  # GSM8K-style "#### 7"
        ("x", "Q3", "1,000"),
    ]
    assert len(load_problems(path, fields=Fields("question", "final"), limit=2)) == 2


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"problem": "p"}], "no 'answer' field"),
        (
            [{"id": 1, "problem": "p", "answer": 1}, {"id": 1, "problem": "q", "answer": 2}],
            "duplicate id",
        ),
        ([{"id": 1, "problem": "  ", "answer": 1}], "empty 'problem'"),
        ([], "no problems"),
    ],
)
def test_bad_rows_fail_clearly(tmp_path, rows, message):
    with pytest.raises(DatasetError, match=message):
        load_problems(write(tmp_path / "d.jsonl", rows))


def test_bad_files_fail_clearly(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_problems(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "p", "answer": 1}\n{oops\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: not valid JSON"):
        load_problems(str(bad))
    with pytest.raises(DatasetError, match="--limit"):
        load_problems(str(bad), limit=0)


def test_hf_without_the_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    with pytest.raises(DatasetError, match="pip install datasets"):
        load_problems("hf:HuggingFaceH4/MATH-500")


def test_hf_hub_unreachable(monkeypatch):
    calls = []

    def load_dataset(path, config, split):
        calls.append((path, config, split))
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(DatasetError, match=r"could not load hf:openai/gsm8k:main.*Couldn.t reach"):
        load_problems("hf:openai/gsm8k:main", split="test")
    assert calls == [("openai/gsm8k", "main", "test")]


def test_hf_rows_when_the_hub_answers(monkeypatch):
    rows = [{"question": f"Q{i}", "answer": f"work\n#### {i}"} for i in range(5)]
    fake = types.SimpleNamespace(load_dataset=lambda path, config, split: rows)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    problems = load_problems("hf:openai/gsm8k", fields=Fields("question", "answer"), limit=3)
    assert [(p.id, p.problem, p.answer) for p in problems] == [
        ("0", "Q0", "0"),
        ("1", "Q1", "1"),
        ("2", "Q2", "2"),
    ]
