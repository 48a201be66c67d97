"""Resumability: torn last lines, a killed process, and the --out / --resume rules."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from langgraph_ttc.eval.outdir import EvalUsageError, prepare_out_dir
from langgraph_ttc.eval.results import ResultsCorrupted, ResultsLog, row_key

ROOT = Path(__file__).resolve().parents[2]


def row(pid, strategy="best_of_n", budget=1):
    return {"id": pid, "strategy": strategy, "budget": budget, "correct": {}, "pad": "x" * 50}


def test_torn_last_line_is_dropped_and_cut_before_appending(tmp_path):
    log = ResultsLog(tmp_path / "results.jsonl")
    log.append([row("a"), row("b")])
    with log.path.open("ab") as file:
        file.write(b'{"id": "c", "strategy": "best_of_n", "bud')  # killed mid-write
    rows, good_end = log.read()
    assert [r["id"] for r in rows] == ["a", "b"]
    assert good_end == len(log.path.read_bytes().rsplit(b"\n", 1)[0]) + 1
    assert [r["id"] for r in log.repair()] == ["a", "b"]
    log.append([row("c")])
    lines = log.path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]


def test_a_complete_row_without_its_newline_counts_as_torn(tmp_path):
    log = ResultsLog(tmp_path / "results.jsonl")
    log.append([row("a")])
    with log.path.open("a") as file:
        file.write(json.dumps(row("b")))  # the newline never made it
    assert [r["id"] for r in log.repair()] == ["a"]
    log.append([row("b")])
    assert [r["id"] for (r,) in [(json.loads(x),) for x in log.path.read_text().splitlines()]] == [
        "a",
        "b",
    ]


def test_garbage_last_line_with_newline_is_dropped_but_garbage_in_the_middle_raises(tmp_path):
    log = ResultsLog(tmp_path / "results.jsonl")
    log.append([row("a")])
    with log.path.open("ab") as file:
        file.write(b"\x00\x00\x00\n")  # tail lost by the file system
    assert [r["id"] for r in log.repair()] == ["a"]
    log.append([row("b")])
    with log.path.open("ab") as file:
        file.write(b"not json\n")
    log.append([row("c")])
    with pytest.raises(ResultsCorrupted, match=":3"):
        log.read()


def test_out_dir_rules(tmp_path):
    config = {"dataset": "d.jsonl", "model": "m", "prm": "arithmetic", "settings": {"seed": 0}}
    out = tmp_path / "out"
    log = prepare_out_dir(out, config, resume=False)
    log.append([row("a")])
    with pytest.raises(EvalUsageError, match="--resume"):
        prepare_out_dir(out, config, resume=False)  # never overwrite results silently
    assert prepare_out_dir(out, {**config, "strategies": ["x"]}, resume=True).path == log.path
    with pytest.raises(EvalUsageError, match="settings"):
        prepare_out_dir(out, {**config, "settings": {"seed": 1}}, resume=True)
    assert [r["id"] for r in log.read()[0]] == ["a"]


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from langgraph_ttc.eval import (Problem, ResultsLog, build_graph,
                                    pending_work, plan_runs, run_eval)
    from langgraph_ttc.eval.runner import done_keys
    from tests.fakes import KeywordPRM, ScriptedPolicy

    class Slow(ScriptedPolicy):
        async def generate(self, requests):
            await asyncio.sleep(float(sys.argv[2]))
            return await super().generate(requests)

    def script(request, i):
        return f"step {i}\\n\\n\\\\boxed{{{i}}}"

    async def main():
        problems = [Problem(str(p), f"problem {p}", "0") for p in range(12)]
        specs = plan_runs(["greedy", "best_of_n"], [1, 2, 4], 2)
        policy, prm = Slow(script), KeywordPRM({})
        graphs = {s.key: build_graph(s, policy, prm, {}) for s in specs}
        log = ResultsLog(sys.argv[1])
        rows = log.repair()
        work = pending_work(problems, specs, done_keys(rows))
        print(len(work), flush=True)
        await run_eval(work, graphs, log, concurrency=2, progress=False)

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


def run_child(script: Path, results: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), str(results), str(delay)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_resume_after_the_process_was_killed_loses_and_duplicates_nothing(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    results = tmp_path / "results.jsonl"
    child = run_child(script, results, delay=0.3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait for some, not all, rows
        if results.exists() and results.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    first = ResultsLog(results).read()[0]
    assert 4 <= len(first) < 12 * 4, "the kill should land mid-run"
    with results.open("ab") as file:  # and the kill tore the row being written
        file.write(b'{"id": "11", "strategy": "greedy", "bu')

    resumed = run_child(script, results, delay=0.0)
    out, _ = resumed.communicate(timeout=120)
    assert resumed.returncode == 0
    todo = int(out.split()[0])
    assert 0 < todo < 12 * 2  # only unfinished (problem, run) pairs ran again

    rows = ResultsLog(results).read()[0]
    keys = [row_key(r) for r in rows]
    expected = {
        (s, k, str(p))
        for p in range(12)
        for s, k in [("greedy", 1), ("best_of_n", 1), ("best_of_n", 2), ("best_of_n", 4)]
    }
    assert len(keys) == len(set(keys)) == 48  # no duplicates
    assert set(keys) == expected  # nothing lost
    assert {row_key(r) for r in first} <= set(keys)
    assert all(line.startswith("{") for line in results.read_text().splitlines())
