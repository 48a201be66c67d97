"""Router tables come only from where the user allows (issue: trust no file): a run names a
file inside the build-time `table_dir`, errors name fields and never echo a file, an edited
file routes by its new content, and every route is checked before any policy call."""

import json
import os

import pytest

from langgraph_ttc import create_compute_optimal
from langgraph_ttc.errors import SettingsError
from langgraph_ttc.strategies.routing_table import read_table_file
from tests.fakes import KeywordPRM, ScriptedPolicy

SECRET = {"api_key": "sk-SECRET-123", "note": "do not print"}


def table(first="best_of_n", second="adaptive_majority", **settings):
    return {
        "bins": [0.5],
        "routes": {
            "4": [
                {"strategy": first, "settings": {"n": 4, **settings}},
                {"strategy": second, "settings": {"n": 4}},
            ]
        },
    }


def script(request, i):
    return "Step\n\n\\boxed{7}"


def CountingPolicy():
    return ScriptedPolicy(script)  # records its calls


async def test_a_run_cannot_name_any_file_and_nothing_is_echoed(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(SECRET))
    policy = CountingPolicy()
    graph = create_compute_optimal(policy, None, n=4, max_tokens=64)
    for name in (str(secret), "secret.json"):
        with pytest.raises(SettingsError, match="table_dir") as caught:
            await graph.ainvoke({"problem": "1+1?"}, context={"table": name})
        assert "sk-SECRET" not in str(caught.value)
    # with a table_dir: only names inside it, never the secret's contents
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "link.json").symlink_to(secret)
    (tables / "bad.json").write_text(json.dumps(SECRET))
    graph = create_compute_optimal(policy, None, n=4, max_tokens=64, table_dir=tables)
    for name, pattern in [
        (str(secret), "relative"),
        ("../secret.json", "relative"),
        ("link.json", "outside"),
        ("missing.json", "No such file"),
        ("bad.json", "api_key: Extra inputs"),
    ]:
        with pytest.raises(SettingsError, match=pattern) as caught:
            await graph.ainvoke({"problem": "1+1?"}, context={"table": name})
        assert "sk-SECRET" not in str(caught.value) and "do not print" not in str(caught.value)
    assert policy.calls == []


async def test_a_fifo_or_a_huge_file_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "huge.json").write_bytes(b" " * (2 << 20))
    graph = create_compute_optimal(CountingPolicy(), None, n=4, max_tokens=64, table_dir=tmp_path)
    with pytest.raises(SettingsError, match="not a regular file"):
        await graph.ainvoke({"problem": "1+1?"}, context={"table": "fifo.json"})
    with pytest.raises(SettingsError, match="limit"):
        await graph.ainvoke({"problem": "1+1?"}, context={"table": "huge.json"})


async def test_an_edited_table_routes_by_its_new_content(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table("best_of_n", "best_of_n")))
    graph = create_compute_optimal(CountingPolicy(), None, n=4, max_tokens=8, table_dir=tmp_path)
    routes = []
    for first in ("best_of_n", "self_refine"):
        path.write_text(json.dumps(table(first, first)))
        async for _mode, chunk in graph.astream(
            {"problem": "1+1?"}, context={"table": "t.json"}, stream_mode=["custom"]
        ):
            if chunk["type"] == "route":
                routes.append(chunk["route"])
    assert routes == ["best_of_n", "self_refine"]


def test_a_bad_route_fails_at_build_naming_the_bin_and_route():
    policy = CountingPolicy()
    with pytest.raises(SettingsError, match=r"table budget 4, bin 0, route to best_of_n: n:"):
        create_compute_optimal(policy, None, table=table(n="lots"), max_tokens=8)
    with pytest.raises(SettingsError, match=r"bin 0, route to best_of_n: unknown setting"):
        create_compute_optimal(policy, None, table=table(bogus=1), max_tokens=8)
    assert policy.calls == []


async def test_a_bad_route_in_a_run_table_fails_before_any_call(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps(table(n="lots")))
    policy = CountingPolicy()
    graph = create_compute_optimal(policy, None, n=4, max_tokens=8, table_dir=tmp_path)
    with pytest.raises(SettingsError, match="bin 0, route to best_of_n: n:") as caught:
        await graph.ainvoke({"problem": "1+1?"}, context={"table": "t.json"})
    assert "lots" not in str(caught.value) and policy.calls == []


def test_a_negative_budget_says_so():
    bad = {"bins": [], "routes": {"-4": [{"strategy": "best_of_n"}]}}
    with pytest.raises(SettingsError, match=r"table budget -4: a budget is a number"):
        create_compute_optimal(CountingPolicy(), None, table=bad)


def test_greedy_router_settings_name_where_the_route_n_comes_from():
    prm = KeywordPRM({})
    with pytest.raises(SettingsError) as caught:
        create_compute_optimal(CountingPolicy(), prm, n=1, temperature=0, table=table())
    message = str(caught.value)
    assert "route to best_of_n" in message and "the route sets n" in message
    assert "router's" in message


def test_a_table_file_that_is_not_json_names_the_position_only(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("api_key = sk-SECRET-123")
    with pytest.raises(SettingsError, match=r"not JSON: .* line 1") as caught:
        read_table_file(path)
    assert "SECRET" not in str(caught.value)
    path.write_text(json.dumps([SECRET]))
    with pytest.raises(SettingsError, match="JSON object") as caught:
        read_table_file(path)
    assert "SECRET" not in str(caught.value)
