"""progress.listen / progress.report: scoping, nesting, task isolation, failing listeners."""

import ast
import asyncio
import logging
from pathlib import Path

from langgraph_ttc import progress
from langgraph_ttc.progress import GenerationProgress, listen, report


def step(tokens: int) -> GenerationProgress:
    return GenerationProgress(tokens=tokens, sequences=2, finished=0, seconds=0.5)


def test_report_without_listener_does_nothing():
    report(step(1))  # must not raise


def test_listener_gets_reports_only_inside_its_block():
    seen: list[GenerationProgress] = []
    with listen(seen.append):
        report(step(1))
    report(step(2))
    assert seen == [step(1)]


def test_nested_listeners_restore_the_outer_one():
    outer: list[int] = []
    inner: list[int] = []
    with listen(lambda p: outer.append(p.tokens)):
        report(step(1))
        with listen(lambda p: inner.append(p.tokens)):
            report(step(2))
        report(step(3))
    assert outer == [1, 3] and inner == [2]


def test_failing_listener_is_logged_once_and_never_raises(caplog):
    calls = []

    def broken(p: GenerationProgress) -> None:
        calls.append(p.tokens)
        raise RuntimeError("listener bug")

    with caplog.at_level(logging.ERROR, logger=progress.__name__), listen(broken):
        for tokens in range(3):
            report(step(tokens))
    assert calls == [0, 1, 2]
    failures = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None


async def test_concurrent_tasks_see_only_their_own_listener():
    seen: dict[str, list[int]] = {"a": [], "b": []}
    both_listening = asyncio.Barrier(2)

    async def run(name: str, tokens: int) -> None:
        with listen(lambda p: seen[name].append(p.tokens)):
            await both_listening.wait()  # both listeners are set before anyone reports
            report(step(tokens))
            await asyncio.sleep(0)
            report(step(tokens + 1))

    await asyncio.gather(run("a", 10), run("b", 20))
    assert seen == {"a": [10, 11], "b": [20, 21]}
    report(step(99))  # the tasks' listeners did not leak into this one
    assert seen == {"a": [10, 11], "b": [20, 21]}


def imported_modules(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def test_backends_never_import_langgraph_or_graph_events():
    from langgraph_ttc import engine
    from langgraph_ttc.policies import vllm
    from langgraph_ttc.verifiers import engine as verifier_engine

    for module in (progress, engine, vllm, verifier_engine):
        graph_side = {
            name
            for name in imported_modules(module)
            if name.split(".")[0] == "langgraph"
            or name in {"langgraph_ttc.events", "langgraph_ttc.strategies"}
        }
        assert not graph_side, (module.__name__, graph_side)
