"""A step search (beam search by default; MCTS, REBASE) on a checkpointed thread in its own
process, so that a test can SIGKILL the process mid-search and resume the thread from a new one.

Child side (`python -m tests.durable_search ...`): build the graph over a SQLite or PostgreSQL
checkpointer, then either run an uninterrupted reference search on its own thread, start the
search on `--thread`, or resume it with `ainvoke(None, config)`. Every policy call appends a
line to a file, so the parent counts calls across processes without talking to the child.

Parent side (`kill_and_resume`): run the reference and start the search in one process, kill
its process group after some policy calls, resume in a second process, and return the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph_ttc import create_beam_search, create_mcts, create_rebase
from langgraph_ttc.types import Completion, GenerationRequest, Policy

ROOT = Path(__file__).resolve().parent.parent
FAKE_PROBLEM = "p"
REAL_PROBLEM = "A baker has 15 cakes and sells 6. How many cakes are left?"
BUILDERS = {"beam_search": create_beam_search, "mcts": create_mcts, "rebase": create_rebase}
# each search's own settings, besides n, seed (and max_tokens on the real engine)
STRATEGY_SETTINGS: dict[str, dict[str, Any]] = {
    "beam_search": {"beam_width": 2},
    "mcts": {"expansions": 2},
    "rebase": {},
}


class CountingPolicy:
    """Appends a line to `calls_file` when a call starts, then waits `delay` seconds (room to
    kill the process mid-call) before asking the wrapped policy."""

    def __init__(self, inner: Policy, calls_file: Path, delay: float):
        self.inner, self.calls_file, self.delay = inner, calls_file, delay

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        with self.calls_file.open("a") as calls:
            calls.write(f"{len(requests)} requests\n")
        await asyncio.sleep(self.delay)
        return await self.inner.generate(requests)


def backend(engine: str, strategy: str) -> tuple[Policy, Any, dict[str, Any]]:
    """The policy, verifier and settings of the search: the fake tree or the real engine."""
    own = STRATEGY_SETTINGS[strategy]
    if engine == "fake":
        from tests.fakes import KeywordPRM, alternating, tree_policy

        settings: dict[str, Any] = {"n": 4, "seed": 0, **own}
        # token confidences (when a confidence selection asks): the model is sure of bad steps
        policy = tree_policy(6, alternating, lambda word: 9.0 if "bad" in word else 4.0)
        return policy, KeywordPRM({"good": 0.9, "bad": 0.1}), settings
    from langgraph_ttc.policies import EngineSettings, VLLMPolicy
    from langgraph_ttc.verifiers import ArithmeticVerifier

    policy = VLLMPolicy(settings=EngineSettings(max_model_len=2048, kv_cache_gib=1))
    return policy, ArithmeticVerifier(), {"n": 4, "max_tokens": 128, "seed": 0, **own}


@contextlib.asynccontextmanager
async def open_saver(kind: str, conn: str) -> AsyncIterator[Any]:
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(conn) as saver:
            yield saver
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(conn) as saver:
            await saver.setup()  # creates the tables once; later calls are no-ops
            yield saver


def summary(out: dict[str, Any], calls_file: Path) -> dict[str, Any]:
    return {
        "answer": out["answer"],
        "candidates": [c["text"] for c in out["candidates"]],
        "token_confidences": [c.get("token_confidences") for c in out["candidates"]],
        "policy_calls": count_lines(calls_file),
    }


def count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def write_report(path: str, report: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(report))


async def child(args: argparse.Namespace) -> None:
    policy, prm, settings = backend(args.engine, args.strategy)  # one engine for both runs
    if args.selection:
        settings["selection"] = args.selection
    try:
        await searches(args, policy, prm, settings)
    finally:
        if shutdown := getattr(policy, "shutdown", None):
            shutdown()  # stop the engine before interpreter teardown, not in a finalizer


async def searches(args: argparse.Namespace, policy: Policy, prm: Any, settings: dict) -> None:
    problem = FAKE_PROBLEM if args.engine == "fake" else REAL_PROBLEM
    report: dict[str, Any] = {}
    async with open_saver(args.saver, args.conn) as saver:

        def graph_counting_into(calls: Path, delay: float) -> Any:
            counting = CountingPolicy(policy, calls, delay)
            build = BUILDERS[args.strategy]
            return build(counting, prm, checkpointer=saver, **settings)

        graph = graph_counting_into(Path(args.calls), args.delay)
        config = {"configurable": {"thread_id": args.thread}}
        if args.reference_calls:
            reference_calls = Path(args.reference_calls)
            reference = graph_counting_into(reference_calls, 0.0)
            out = await reference.ainvoke(
                {"problem": problem}, {"configurable": {"thread_id": f"{args.thread}-reference"}}
            )
            report["reference"] = summary(out, reference_calls)
            write_report(args.out, report)
        if args.resume:
            state = await graph.aget_state(config)
            report["resumed_at"] = {"iteration": state.values["iteration"], "next": state.next}
            out = await graph.ainvoke(None, config)
        else:
            out = await graph.ainvoke({"problem": problem}, config)
        report["result"] = summary(out, Path(args.calls))
        write_report(args.out, report)


@dataclass
class Figures:
    """What a kill-and-resume run measured."""

    reference: dict[str, Any]  # the uninterrupted run: answer, candidates, policy_calls
    calls_before_kill: int  # policy calls started by the killed process
    resumed_at_iteration: int  # iterations the checkpoint held when the new process resumed
    calls_after_resume: int
    resumed: dict[str, Any]  # the resumed run: answer, candidates, policy_calls


def spawn(args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Own process group: a kill reaches the engine's worker processes too.
    return subprocess.Popen(
        [sys.executable, "-m", "tests.durable_search", *args],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )


def kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def kill_and_resume(
    tmp: Path,
    saver: str,
    conn: str,
    *,
    engine: str,
    kill_after: int,
    delay: float,
    timeout: float,
    strategy: str = "beam_search",
    selection: str | None = None,
) -> Figures:
    """Reference run and search in a first process, SIGKILLed once `kill_after` policy calls of
    the search have started; then a second process resumes the search's thread."""
    common = ["--saver", saver, "--conn", conn, "--engine", engine, "--thread", "search"]
    common += ["--strategy", strategy, *(["--selection", selection] if selection else [])]
    first_calls, second_calls = tmp / "calls-first.txt", tmp / "calls-second.txt"
    first_out, second_out = tmp / "first.json", tmp / "second.json"
    first = spawn(
        [
            *common,
            *("--calls", str(first_calls), "--delay", str(delay), "--out", str(first_out)),
            *("--reference-calls", str(tmp / "calls-reference.txt")),
        ]
    )
    try:
        deadline = time.monotonic() + timeout
        while count_lines(first_calls) < kill_after:
            if first.poll() is not None:
                raise AssertionError(f"the search ended (code {first.returncode}) before the kill")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kill_after} policy calls within {timeout} s")
            time.sleep(0.02)
        time.sleep(0.1)  # well inside the call: the previous iteration's checkpoint is written
    finally:
        kill_group(first)
    assert first.returncode == -signal.SIGKILL
    reference = json.loads(first_out.read_text())["reference"]
    calls_before_kill = count_lines(first_calls)

    second = spawn(
        [
            *common,
            "--resume",
            "--calls",
            str(second_calls),
            "--delay",
            "0",
            "--out",
            str(second_out),
        ]
    )
    try:
        assert second.wait(timeout) == 0, "the resumed search failed"
    finally:
        kill_group(second)
    report = json.loads(second_out.read_text())
    return Figures(
        reference=reference,
        calls_before_kill=calls_before_kill,
        resumed_at_iteration=report["resumed_at"]["iteration"],
        calls_after_resume=count_lines(second_calls),
        resumed=report["result"],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--saver", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--conn", required=True, help="SQLite file or PostgreSQL URI")
    parser.add_argument("--engine", choices=["fake", "real"], default="fake")
    parser.add_argument("--strategy", choices=sorted(BUILDERS), default="beam_search")
    parser.add_argument("--thread", required=True)
    parser.add_argument("--selection", help="the search's selection (default: its own)")
    parser.add_argument("--calls", required=True, help="one line per policy call goes here")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per policy call")
    parser.add_argument("--reference-calls", help="first run an uninterrupted reference")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", required=True)
    asyncio.run(child(parser.parse_args(argv)))


if __name__ == "__main__":
    main()


def check_resumed(figures: Figures, kill_after: int) -> None:
    """The kill landed mid-search; the resumed run redid at most the iteration in flight at
    the kill, ran only the remaining ones, and ended as the uninterrupted run did."""
    total = figures.reference["policy_calls"]  # one policy call per iteration
    assert kill_after <= figures.calls_before_kill < total
    # Every finished iteration was checkpointed: at most the call in flight is lost.
    assert figures.calls_before_kill - 1 <= figures.resumed_at_iteration < total
    assert figures.calls_after_resume == total - figures.resumed_at_iteration
    assert figures.resumed["answer"] == figures.reference["answer"]
    assert figures.resumed["candidates"] == figures.reference["candidates"]
