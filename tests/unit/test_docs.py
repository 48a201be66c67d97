"""The docs stay true to the code: docs/settings.md is rendered from the settings models, and
every docs/ page the code names exists."""

import re
from pathlib import Path

from langgraph_ttc.strategies.registry import STRATEGIES
from langgraph_ttc.strategies.settings import RefineSettings, SearchSettings, StrategySettings
from langgraph_ttc.strategies.settings_doc import render

SETTINGS_DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_docs_settings_md_is_up_to_date():
    assert SETTINGS_DOC.read_text() == render(), (
        "docs/settings.md is out of date: run "
        "`python -m langgraph_ttc.strategies.settings_doc > docs/settings.md`"
    )


def test_every_field_and_strategy_is_documented():
    text = render()
    for model in (StrategySettings, SearchSettings, RefineSettings):
        assert f"## {model.__name__}" in text
        for name in model.model_fields:
            assert f"| `{name}` |" in text, name
    for name in STRATEGIES:
        assert f"| `{name}` |" in text, name


def test_limits_and_rules_come_from_the_models():
    text = render()
    assert "| `n` | int | `8` | >= 1, <= 4096 |" in text
    assert "| `prm_timeout` | float \\| None | `120.0` | > 0 |" in text
    assert "n must be a multiple of beam_width." in text
    assert "(per run also `chains`)" in text


def test_docs_named_in_the_code_exist():
    root = Path(__file__).resolve().parents[2]
    named = set()
    for source in [*root.glob("langgraph_ttc/**/*.py"), root / "README.md"]:
        named.update(re.findall(r"docs/[\w-]+\.md", source.read_text()))
    assert named, "no docs/ references found: the pattern is wrong"
    missing = sorted(name for name in named if not (root / name).is_file())
    assert not missing, f"referenced but missing: {missing}"
