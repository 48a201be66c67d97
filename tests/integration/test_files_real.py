"""Files and resumed state on the real engine (small: n=2, 48 tokens): a router reads a
per-run table only inside its table directory, and a resumed search whose state was edited
to carry an impossible score stops with a StateError."""

import json
import math

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from langgraph_ttc import create_best_of_n, create_compute_optimal
from langgraph_ttc.errors import SettingsError
from langgraph_ttc.strategies.state_check import StateError
from langgraph_ttc.verifiers import ArithmeticVerifier

pytestmark = pytest.mark.integration
PROBLEM = "A baker has 15 cakes and sells 6. How many cakes are left?"


async def test_router_per_run_table_stays_in_its_directory(policy, tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    route = {"strategy": "best_of_n", "settings": {"n": 2}}
    (tables / "t.json").write_text(json.dumps({"probe_n": 2, "bins": [], "routes": {"2": [route]}}))
    (tmp_path / "secret.json").write_text(json.dumps({"api_key": "sk-SECRET-123"}))
    graph = create_compute_optimal(
        policy, None, n=4, probe_n=2, max_tokens=48, seed=0, table_dir=tables
    )
    routes = []
    async for chunk in graph.astream(
        {"problem": PROBLEM}, context={"table": "t.json"}, stream_mode="custom"
    ):
        if chunk["type"] == "route":
            routes.append(chunk["route"])
    assert routes == ["best_of_n"]
    with pytest.raises(SettingsError, match="relative") as caught:
        await graph.ainvoke({"problem": PROBLEM}, context={"table": "../secret.json"})
    assert "SECRET" not in str(caught.value)


async def test_resumed_search_with_a_tampered_score_is_rejected(policy):
    graph = create_best_of_n(
        policy,
        ArithmeticVerifier(),
        n=2,
        max_tokens=48,
        seed=0,
        checkpointer=InMemorySaver(),
        interrupt_before=["select"],
    )
    config = {"configurable": {"thread_id": "tampered"}}
    await graph.ainvoke({"problem": PROBLEM}, config)
    pool = [dict(c) for c in (await graph.aget_state(config)).values["pool"]]
    pool[0]["score"] = math.inf
    await graph.aupdate_state(config, {"pool": pool}, as_node="score")
    with pytest.raises(StateError, match=r"thread 'tampered'.*pool\.0\.score"):
        await graph.ainvoke(None, config)
