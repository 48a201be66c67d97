"""The graphs/ entry points load as the LangGraph tooling loads them (no engine starts)."""

import importlib.util
import json
import tomllib
from pathlib import Path

import pytest
from langgraph.graph.state import CompiledStateGraph

from langgraph_ttc import policies
from langgraph_ttc.policies import VLLMPolicy
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


def test_langgraph_json_installs_the_cpu_engine():
    """`langgraph build` installs local paths without extras: the engine's packages are listed
    beside the package, the same pins as the `cpu` and `embedded` extras."""
    extras = tomllib.loads((GRAPHS_DIR.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    engine = [req for req in extras["cpu"] if not req.startswith("langgraph-ttc")]
    assert SPEC["dependencies"] == ["..", *engine, *extras["embedded"]]


def load_entry_module():
    spec = importlib.util.spec_from_file_location("ttc_graphs_env", GRAPHS_DIR / "strategies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_engine_is_embedded_by_default_and_ttc_model_picks_another():
    module = load_entry_module()
    assert isinstance(module.policy_from_environment({}), VLLMPolicy)
    assert module.policy_from_environment({}).model_ref is None  # the embedded model
    chosen = module.policy_from_environment({"TTC_MODEL": "/models/smollm2"})
    assert chosen.model_ref == "/models/smollm2" and not chosen.started


def test_base_url_without_openai_policy_is_a_clear_error(monkeypatch):
    module = load_entry_module()
    monkeypatch.delattr(policies, "OpenAIPolicy", raising=False)
    with pytest.raises(RuntimeError, match=r"TTC_BASE_URL=http://gpu:8000/v1 .* no OpenAIPolicy"):
        module.policy_from_environment({"TTC_BASE_URL": "http://gpu:8000/v1", "TTC_MODEL": "m"})


def test_base_url_selects_the_openai_compatible_server(monkeypatch):
    module = load_entry_module()

    class RecordingOpenAIPolicy:
        def __init__(self, **options):
            self.options = options

    monkeypatch.setattr(policies, "OpenAIPolicy", RecordingOpenAIPolicy, raising=False)
    chosen = module.policy_from_environment(
        {"TTC_BASE_URL": "http://gpu:8000/v1", "TTC_MODEL": "m"}
    )
    assert chosen.options == {"base_url": "http://gpu:8000/v1", "model": "m"}
    with pytest.raises(RuntimeError, match="needs TTC_MODEL"):
        module.policy_from_environment({"TTC_BASE_URL": "http://gpu:8000/v1"})
