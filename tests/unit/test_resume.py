"""A search interrupted mid-way (engine failure) resumes from its last checkpoint."""

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from langgraph_ttc import create_beam_search
from tests.fakes import KeywordPRM, alternating, tree_policy


class FlakyPolicy:
    """Fails once on its `fail_at`-th call, like an engine that died mid-search."""

    def __init__(self, inner, fail_at):
        self.inner, self.fail_at, self.calls = inner, fail_at, 0

    async def generate(self, requests):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("engine died")
        return await self.inner.generate(requests)


async def test_beam_search_resumes_mid_search_from_sqlite(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGGRAPH_STRICT_MSGPACK", "true")
    inner = tree_policy(4, alternating)
    policy = FlakyPolicy(inner, fail_at=3)
    builder = create_beam_search(
        policy, KeywordPRM({"good": 0.9, "bad": 0.1}), n=4, beam_width=2, seed=0
    ).builder
    reference = await create_beam_search(
        tree_policy(4, alternating),
        KeywordPRM({"good": 0.9, "bad": 0.1}),
        n=4,
        beam_width=2,
        seed=0,
    ).ainvoke({"problem": "p"})
    config = {"configurable": {"thread_id": "search-1"}}
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "ckpt.sqlite")) as saver:
        graph = builder.compile(checkpointer=saver)
        with pytest.raises(RuntimeError, match="engine died"):
            await graph.ainvoke({"problem": "p"}, config)
        state = await graph.aget_state(config)
        assert state.next == ("expand",) and state.values["iteration"] == 2
        out = await graph.ainvoke(None, config)  # resume: only the unfinished work re-runs
    assert out["answer"] == reference["answer"]
    assert [c["text"] for c in out["candidates"]] == [c["text"] for c in reference["candidates"]]
    assert len(inner.calls) == 5  # 5 iterations; the two before the failure were not redone
