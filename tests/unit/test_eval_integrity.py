"""`ttc eval` output that cannot be corrupted: odd model text, two writers, changed inputs."""

import json

import pytest

from langgraph_ttc.eval.budgets import RunSpec
from langgraph_ttc.eval.datasets import Problem
from langgraph_ttc.eval.outdir import (
    EvalUsageError,
    dataset_fingerprint,
    exclusive,
    prepare_out_dir,
)
from langgraph_ttc.eval.results import ResultsLog
from langgraph_ttc.eval.runner import WorkItem, run_item


def test_a_lone_surrogate_in_model_text_is_written_and_read_back(tmp_path):
    log = ResultsLog(tmp_path / "results.jsonl")
    text = "broken \ud800 output"
    log.append([{"id": "a", "strategy": "best_of_n", "budget": 1, "text": text}])
    (row,), _ = log.read()
    assert row["text"] == text


async def test_grading_that_fails_becomes_an_error_row_not_a_crash(monkeypatch):
    import langgraph_ttc.eval.runner as runner

    def broken(*args, **kwargs):
        if args[1] is not None:
            raise RuntimeError("grader exploded")
        return real(*args, **kwargs)

    real = runner.build_rows
    monkeypatch.setattr(runner, "build_rows", broken)

    class Graph:
        async def ainvoke(self, inp, config=None):
            return {"candidates": [], "usage": {}}

    item = WorkItem(Problem("p1", "1 + 1?", "2"), RunSpec("best_of_n", 1, 1, (1,)), (1,))
    (row,) = await run_item(item, Graph(), (), 1.0)
    assert row["error"] == "grading failed: RuntimeError: grader exploded"
    assert row["correct"] == {"naive": False, "weighted": False, "majority": False}


def test_a_second_writer_on_the_same_out_fails_at_once(tmp_path):
    with exclusive(tmp_path), pytest.raises(EvalUsageError, match="in use by another ttc eval"):
        with exclusive(tmp_path):
            pass
    with exclusive(tmp_path):  # released: usable again
        pass


def test_resume_without_config_json_is_refused(tmp_path):
    config = {"dataset": "d.jsonl", "settings": {}}
    log = prepare_out_dir(tmp_path, config, resume=False)
    log.append([{"id": "a", "strategy": "best_of_n", "budget": 1}])
    (tmp_path / "config.json").unlink()
    with pytest.raises(EvalUsageError, match=r"config\.json is missing"):
        prepare_out_dir(tmp_path, config, resume=True)


def test_a_dataset_changed_in_place_is_not_mixed_with_old_rows(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "1", "problem": "1+1?", "answer": "2"}) + "\n")
    config = {"dataset": str(data), "dataset_sha256": dataset_fingerprint(str(data))}
    out = tmp_path / "out"
    prepare_out_dir(out, config, resume=False).append([{"id": "1", "strategy": "g", "budget": 1}])
    data.write_text(json.dumps({"id": "1", "problem": "1+2?", "answer": "3"}) + "\n")
    changed = {**config, "dataset_sha256": dataset_fingerprint(str(data))}
    assert changed["dataset_sha256"] != config["dataset_sha256"]
    with pytest.raises(EvalUsageError, match="dataset_sha256"):
        prepare_out_dir(out, changed, resume=True)
