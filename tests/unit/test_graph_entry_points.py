"""The graphs/ entry points load as the LangGraph tooling loads them (no engine starts)."""

import importlib.util
import json
from pathlib import Path

import pytest
from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc.strategies import STRATEGY_NAMES

GRAPHS_DIR = Path(__file__).resolve().parents[2] / "graphs"
SPEC = json.loads((GRAPHS_DIR / "langgraph.json").read_text())


def test_langgraph_json_lists_every_strategy():
    assert set(SPEC["graphs"]) == set(STRATEGY_NAMES)


@pytest.mark.parametrize("name", sorted(SPEC["graphs"]))
def test_entry_point_exports_a_compiled_graph(name):
    path, attribute = SPEC["graphs"][name].split(":")
    spec = importlib.util.spec_from_file_location(f"ttc_graph_{name}", GRAPHS_DIR / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    graph = getattr(module, attribute)
    assert isinstance(graph, CompiledStateGraph)
    assert set(graph.get_input_jsonschema()["properties"]) == {"problem", "messages"}
    assert {"answer", "solution", "candidates", "usage"} <= set(
        graph.get_output_jsonschema()["properties"]
    )
    assert not module.policy.started  # importing must not start an engine
