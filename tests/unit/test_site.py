"""The documentation site: it builds strictly, its strategy pages come from the registry, the
README stays a short front door, and every Python snippet imports only public names that exist.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import contextlib
import importlib
import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from langgraph_ttc.strategies.registry import STRATEGIES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hook", DOCS / "hooks" / "strategies.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _hook()


def generated_pages() -> dict[str, str]:
    return hook.strategy_pages((DOCS / "algorithms.md").read_text())


# ---------------------------------------------------------------- the build


def test_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for name in STRATEGIES:
        page = (site / "strategies" / f"{name}.html").read_text()
        assert "Settings" in page and "Events" in page and "Example" in page, name
    api = (site / "api" / "langgraph_ttc.html").read_text()
    assert "create_beam_search" in api and "n must be a multiple of beam_width" not in api
    assert (site / "api" / "policies.html").read_text().count("VLLMPolicy") > 1
    assert (site / "api" / "agents.html").read_text().count("TTCMiddleware") > 1
    folded = {str(page.relative_to(site)): found for page in site.rglob("*.html")
              if (found := folded_list_items(page.read_text()))}  # fmt: skip
    assert not folded, folded


# a numbered item swallowed by the one before ("... expanded. 4. The loop ..."): Markdown
# does this when an item holding an indented block is followed by one with no blank line
FOLDED_ITEM = re.compile(r"[a-z>)][.)]\s+\d\.\s+(<strong>|[A-Z])")


def folded_list_items(html: str) -> list[str]:
    items = re.findall(r"<li>(.*?)</li>", html, flags=re.S)
    return [m.group(0) for item in items for m in FOLDED_ITEM.finditer(item)]


def test_folded_list_items_are_found():
    broken = "<ol><li><p><strong>backup</strong>: never expanded. 4. The loop goes on</p></li></ol>"
    assert folded_list_items(broken) == ["d. 4. T"]
    assert folded_list_items("<ol><li>expanded.</li><li>The loop</li></ol>") == []


def test_every_registered_strategy_gets_a_page():
    pages = generated_pages()
    assert set(pages) == {"strategies/index.md", *(f"strategies/{n}.md" for n in STRATEGIES)}
    sections = hook.algorithm_sections((DOCS / "algorithms.md").read_text())
    for name, info in STRATEGIES.items():
        page = pages[f"strategies/{name}.md"]
        assert f"| `{next(iter(info.settings.model_fields))}` |" in page or "| field |" in page
        assert "](../events.md#selected)" in page, name  # its events, from a scripted run
        assert f'ttc solve "What is 12 + 7?" --strategy {name}' in page
        title = hook.title_of(sections[info.build.__name__][0])
        assert f"[{title}]({name}.md)" in pages["strategies/index.md"]


def test_events_come_from_a_run():
    pages = generated_pages()
    assert "[`prune`]" in pages["strategies/beam_search.md"]
    assert "[`critique`]" in pages["strategies/self_refine.md"]
    assert "[`route`]" in pages["strategies/compute_optimal.md"]
    assert "[`prune`]" not in pages["strategies/best_of_n.md"]


def test_a_strategy_without_an_algorithms_section_is_a_clear_warning(caplog):
    text = (DOCS / "algorithms.md").read_text()
    heading = r"^## Particle filtering \(`create_particle_filtering`\)"
    without = re.sub(heading, "## Gone", text, flags=re.M)
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.strategies"):
        pages = hook.strategy_pages(without)
    assert "strategies/particle_filtering.md" not in pages
    [record] = caplog.records
    assert "'particle_filtering' is registered but docs/algorithms.md has no section" in (
        record.getMessage()
    )
    assert "create_particle_filtering" in record.getMessage()


def test_public_names_have_docstrings(monkeypatch):
    assert hook.missing_docstrings() == []
    import langgraph_ttc.errors as errors

    def undocumented() -> None:
        pass

    undocumented.__module__ = "langgraph_ttc.errors"
    monkeypatch.setattr(errors, "undocumented", undocumented, raising=False)
    assert hook.missing_docstrings() == ["langgraph_ttc.errors.undocumented"]


class _EmbeddedStandIn:
    """Stands in for VLLMPolicy in the generated examples: the hook's scripted policy."""

    def __init__(self, *args, **kwargs):
        self.policy = hook._ScriptedPolicy()

    async def __aenter__(self):
        return self.policy

    async def __aexit__(self, *exc):
        return None


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_the_generated_example_runs(name, monkeypatch, capsys):
    page = generated_pages()[f"strategies/{name}.md"]
    [code] = [b for b in python_blocks(page) if "asyncio.run(main())" in b]
    import langgraph_ttc.policies

    monkeypatch.setattr(langgraph_ttc.policies, "VLLMPolicy", _EmbeddedStandIn)
    namespace: dict = {"__name__": "example"}
    exec(compile(code, f"<{name} example>", "exec"), namespace)
    asyncio.run(namespace["main"]())
    assert capsys.readouterr().out.splitlines()[-1].startswith("19 ")


# ---------------------------------------------------------------- the README


def test_readme_is_a_short_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move detail to docs/"
    assert lines[2:6] == [
        "```bash",
        "make demo   # set up .venv (vLLM, the embedded model) and solve a sample problem"
        " with best-of-N",
        "make test   # set up the same, then run the whole test suite"
        " (unit + real-engine integration)",
        "```",
    ]
    assert "![" in README.read_text() and "agent_graph.svg" in README.read_text()


def test_readme_lists_every_strategy_once():
    text = README.read_text()
    table = text[text.index("<!-- strategies:start") : text.index("<!-- strategies:end")]
    rows = [line for line in table.splitlines() if line.startswith("| [")]
    names = [re.match(r"\| \[(\w+)\]", row).group(1) for row in rows]
    assert sorted(names) == sorted(STRATEGIES), "one README table line per registered strategy"
    for row, name in zip(rows, names, strict=True):
        assert f"`{STRATEGIES[name].build.__name__}`" in row


# ---------------------------------------------------------------- snippets


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def all_snippets() -> list[tuple[str, str]]:
    sources = {"README.md": README.read_text()}
    sources |= {str(p.relative_to(ROOT)): p.read_text() for p in sorted(DOCS.rglob("*.md"))}
    sources |= {f"(generated) {k}": v for k, v in generated_pages().items()}
    return [(where, block) for where, text in sources.items() for block in python_blocks(text)]


SNIPPETS = all_snippets()


def imported(tree: ast.AST) -> list[tuple[str, str | None]]:
    """(module, name) per imported name; name None for `import module`."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
    return found


def check_import(module_name: str, name: str | None) -> str | None:
    """Why the import is wrong, or None."""
    if module_name.split(".")[0] == "examples":
        module = importlib.import_module(module_name)  # the repository's runnable examples
        return None if name is None or hasattr(module, name) else f"{module_name}.{name} missing"
    module = importlib.import_module(module_name)
    if name is None:
        return None
    if not hasattr(module, name):
        with contextlib.suppress(ImportError):  # a submodule: `from langgraph_ttc import logs`
            importlib.import_module(f"{module_name}.{name}")
            return None
        return f"{module_name} has no {name}"
    if module_name.split(".")[0] != "langgraph_ttc" or isinstance(
        getattr(module, name), ModuleType
    ):
        return None
    public = getattr(module, "__all__", None)
    if name.startswith("_") or (public is not None and name not in public):
        return f"{module_name}.{name} is not public (not in its __all__)"
    return None


def test_snippets_were_found():
    assert len(SNIPPETS) > 20
    assert any(where.startswith("(generated)") for where, _ in SNIPPETS)


@pytest.mark.parametrize(("where", "code"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_snippet_imports_only_public_names_that_exist(where, code):
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = builtins.compile(code, where, "exec", flags=flags)  # the snippet is valid Python
    problems = [p for module, name in imported(tree) if (p := check_import(module, name))]
    assert not problems, f"{where}: {problems}"


def test_the_import_check_catches_private_and_missing_names():
    assert check_import("langgraph_ttc", "create_beam_search") is None
    assert check_import("langgraph_ttc", "logs") is None
    assert "not public" in check_import("langgraph_ttc.events", "_LINEAGE")
    assert "not public" in check_import("langgraph_ttc.types", "Mapping")  # not in __all__
    assert "has no" in check_import("langgraph_ttc", "create_nothing")
