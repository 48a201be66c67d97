"""MkDocs hook: the strategy pages, generated from the code at build time.

Every strategy in the registry (`langgraph_ttc.strategies.registry.STRATEGIES`) gets a page,
`strategies/<name>.md`, and a line in `strategies/index.md`:

- what it does: its section of docs/algorithms.md (the `## ...` heading naming its builder);
- its builder's signature and its settings table (`settings_doc.model_table`, as settings.md);
- its events: the event types one run emits on a scripted policy, in order of first appearance;
- a runnable example on the embedded model.

A registered strategy without an algorithms.md section, and a public name without a docstring,
are reported as warnings, which `mkdocs build --strict` turns into a failed build.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from langgraph_ttc.strategies.catalog import StrategyInfo
from langgraph_ttc.strategies.registry import STRATEGIES
from langgraph_ttc.strategies.settings_doc import model_table
from langgraph_ttc.types import Completion, GenerationRequest
from langgraph_ttc.verifiers import ArithmeticVerifier

log = logging.getLogger("mkdocs.hooks.strategies")

# The modules whose public names the API reference shows (`__all__`, else what they define).
API_MODULES = (
    "langgraph_ttc",
    "langgraph_ttc.policies",
    "langgraph_ttc.verifiers",
    "langgraph_ttc.strategies",
    "langgraph_ttc.types",
    "langgraph_ttc.events",
    "langgraph_ttc.errors",
    "langgraph_ttc.backends",
    "langgraph_ttc.eval",
    "langgraph_ttc.agents",
    "langgraph_ttc.server",
)
PROBLEM = "Tom has 12 apples and buys 7 more. How many now?"


# ---------------------------------------------------------------- algorithms.md sections


def algorithm_sections(text: str) -> dict[str, tuple[str, str]]:
    """{builder name: (heading, body)} for every `## ... (`create_x`)` section."""
    sections: dict[str, tuple[str, str]] = {}
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    for part in parts:
        heading, _, body = part.partition("\n")
        found = re.search(r"`(create_\w+)`", heading)
        if found:
            sections[found.group(1)] = (heading.strip(), body.strip("\n").rstrip())
    return sections


def relink(body: str) -> str:
    """Links of an algorithms.md section, made relative to strategies/<name>.md."""
    body = re.sub(r"\]\(#([\w-]+)\)", r"](../algorithms.md#\1)", body)
    return re.sub(r"\]\((?!https?:|\.\./|#)([\w/-]+\.md(?:#[\w-]+)?)\)", r"](../\1)", body)


def title_of(heading: str) -> str:
    """The heading without its builder: "Step-level beam search"."""
    return re.sub(r"\s*\(`create_\w+`\)", "", heading).strip()


# ---------------------------------------------------------------- events of one run


class _ScriptedPolicy:
    """Writes one arithmetic step, then a boxed answer; honours n and stop strings."""

    supports_prefix = True

    async def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Completion]]:
        return [[self._one(r) for _ in range(r.n)] for r in requests]

    @staticmethod
    def _one(request: GenerationRequest) -> Completion:
        text = "The answer is \\boxed{19}." if request.prefix else "12 + 7 = 19.\n\n"
        text += "" if request.prefix else "The answer is \\boxed{19}."
        for stop in request.stop:
            if stop in text:
                body = text[: text.index(stop) + len(stop)]
                return _confident(Completion(body, "stop", stop, len(body.split())), request)
        return _confident(Completion(text, "stop", None, len(text.split())), request)


def _confident(completion: Completion, request: GenerationRequest) -> Completion:
    """Token confidences when asked (top-k logprobs), as a real engine gives them."""
    if request.top_logprobs is None:
        return completion
    return replace(completion, token_confidences=(1.0,) * completion.num_tokens)


async def _events(info: StrategyInfo) -> list[str]:
    graph = info.create(_ScriptedPolicy(), ArithmeticVerifier(), {"n": 4, "max_tokens": 64})
    seen: list[str] = []
    async for _, event in graph.astream({"problem": PROBLEM}, stream_mode="custom", subgraphs=True):
        if event["type"] not in seen:
            seen.append(event["type"])
    return seen


def events_of(info: StrategyInfo) -> list[str]:
    """The event types one run of the strategy emits (a scripted policy, the arithmetic
    verifier); when it cannot run on those, the events its module names."""
    try:
        return asyncio.run(asyncio.wait_for(_events(info), timeout=60))
    except Exception as exc:  # the page still builds, from the module's own event calls
        log.info("strategy %s did not run on the scripted policy: %s", info.name, exc)
        source = inspect.getsource(inspect.getmodule(info.build))
        return sorted((set(re.findall(r"\bevents\.(\w+)\(", source)) - {"emit"}) | {"selected"})


# ---------------------------------------------------------------- pages


def import_line(builder: Any) -> str:
    """Where a user imports the builder from: the package, else the strategies subpackage."""
    for module in ("langgraph_ttc", "langgraph_ttc.strategies"):
        if builder.__name__ in getattr(importlib.import_module(module), "__all__", ()):
            return f"from {module} import {builder.__name__}"
    return f"from {builder.__module__} import {builder.__name__}"


def _default(value: Any, builder: Any) -> str:
    """A default as written: a function or a module constant by name, else its repr."""
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    text = repr(value)
    if "<" in text:  # an object repr: name the module-level constant it is, if any
        named = [k for k, v in vars(inspect.getmodule(builder)).items() if v is value]
        return named[0] if named else "..."
    return text


def signature(builder: Any) -> str:
    """The builder's signature, one parameter a line, annotations as written."""
    lines, star = [], False
    for p in inspect.signature(builder).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            lines.append("    *,")
            star = True
        text = p.name + (f": {p.annotation}" if p.annotation is not p.empty else "")
        if p.default is not p.empty:
            text += f" = {_default(p.default, builder)}"
        lines.append(f"    {text},")
    returns = inspect.signature(builder).return_annotation
    return f"def {builder.__name__}(\n" + "\n".join(lines) + f"\n) -> {returns}: ..."


def example(info: StrategyInfo) -> str:
    name = info.build.__name__
    params = inspect.signature(info.build).parameters
    settings = ", ".join(f"{k}={v}" for k, v in (("n", 4), ("seed", 0)) if k in params)
    return f'''```python
import asyncio

{import_line(info.build)}
from langgraph_ttc.policies import VLLMPolicy
from langgraph_ttc.verifiers import ArithmeticVerifier


async def main():
    async with VLLMPolicy() as policy:  # the embedded model on vLLM
        graph = {name}(policy, ArithmeticVerifier(), {settings})
        problem = {{"problem": "{PROBLEM}"}}
        out = {{}}
        stream = graph.astream(problem, stream_mode=["custom", "values"])
        async for mode, chunk in stream:
            if mode == "custom":  # progress events as they happen
                print(chunk["type"], chunk.get("iteration", ""))
            else:
                out = chunk  # the graph's state; the last one is the output
        print(out["answer"], out["usage"])


if __name__ == "__main__":  # vLLM spawns workers: guard the entry point
    asyncio.run(main())
```

The same from the command line: `ttc solve "What is 12 + 7?" --strategy {info.name}`.
'''


def strategy_page(info: StrategyInfo, heading: str, body: str) -> str:
    name = info.build.__name__
    table = model_table(info.settings).replace(f"## {info.settings.__name__}", "", 1).strip()
    table = table.replace(
        "All `StrategySettings` fields",
        "All [`StrategySettings`](../settings.md#strategysettings) fields",
    )
    fixed = ", ".join(f"`{f}`" for f in info.fixed) or "none"
    events = ", ".join(f"[`{e}`](../events.md#{e})" for e in events_of(info))
    return f"""# {title_of(heading)}

`{name}` · registry name `{info.name}` · needs a verifier: {"yes" if info.needs_prm else "no"}
· grows steps (the policy continues a prefix): {"yes" if info.steps else "no"}

## What it does

{relink(body)}

## Builder

```python
{signature(info.build)}
```

## Settings

`{info.settings.__name__}` (settings it fixes itself: {fixed}). Every setting is a keyword of
the builder and can be overridden per run ([how](../settings.md#setting-values)).

{table}

## Events

One run emits, in this order of first appearance: {events}.
The order within a run is in [Events](../events.md#order-within-a-run); policies that report
progress (`VLLMPolicy` does) add [`generation`](../events.md#generation) events during each
call.

## Example

{example(info)}"""


def index_page(rows: list[tuple[StrategyInfo, str]]) -> str:
    lines = [
        "# Strategies",
        "",
        "Every strategy is a compiled LangGraph graph with the same input and output",
        "([Concepts](../concepts.md)); build one by its builder, or by name with",
        "`create_strategy(name, policy, prm, settings)`. This list is generated from the",
        "registry, so a new strategy appears here when it is registered.",
        "",
        "| strategy | builder | needs a verifier | grows steps | settings |",
        "|---|---|---|---|---|",
    ]
    for info, heading in rows:
        lines.append(
            f"| [{title_of(heading)}]({info.name}.md) | `{info.build.__name__}` "
            f"| {'yes' if info.needs_prm else 'no'} | {'yes' if info.steps else 'no'} "
            f"| `{info.settings.__name__}` |"
        )
    return "\n".join(lines) + "\n"


def strategy_pages(algorithms: str) -> dict[str, str]:
    """{path under docs/: Markdown} for the index and every registered strategy."""
    sections = algorithm_sections(algorithms)
    pages: dict[str, str] = {}
    rows = []
    for info in STRATEGIES.values():
        builder = info.build.__name__
        if builder not in sections:
            log.warning(
                "strategy %r is registered but docs/algorithms.md has no section for it: "
                "add a '## <Title> (`%s`)' section saying what it does",
                info.name,
                builder,
            )
            continue
        heading, body = sections[builder]
        pages[f"strategies/{info.name}.md"] = strategy_page(info, heading, body)
        rows.append((info, heading))
    pages["strategies/index.md"] = index_page(rows)
    return pages


# ---------------------------------------------------------------- docstrings


def _public(module_name: str) -> list[tuple[str, Any]]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module_name
        ]
    return [(n, getattr(module, n)) for n in names]


def missing_docstrings() -> list[str]:
    """Public classes and functions of the API modules without a docstring of their own."""
    missing = []
    for module in API_MODULES:
        for name, obj in _public(module):
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            doc = (obj.__doc__ or "").strip()
            if not doc or doc.startswith(f"{obj.__name__}("):  # a dataclass's generated one
                missing.append(f"{module}.{name}")
    return missing


# ---------------------------------------------------------------- Markdown dialect


def indent_numbered_lists(text: str) -> str:
    """Numbered items written GitHub-style (content indented 3 spaces, as the pages read on
    GitHub) indented 4, as Python-Markdown needs for nested bullets and paragraphs."""
    out, in_list, fence = [], False, False
    for line in text.split("\n"):
        if line.startswith("```"):
            fence = not fence
        elif not fence:
            if re.match(r"\d+\. ", line):
                in_list = True
            elif line and not line.startswith(" "):
                in_list = False
            elif in_list and line.startswith("   "):
                line = " " + line
        out.append(line)
    return "\n".join(out)


# ---------------------------------------------------------------- MkDocs events


def on_config(config: Any) -> Any:
    """Fill the empty "Strategies" nav section with the generated pages."""
    nav = [
        "strategies/index.md",
        *(f"strategies/{name}.md" for name in STRATEGIES),
    ]
    for entry in config["nav"]:
        if isinstance(entry, dict) and "Strategies" in entry:
            entry["Strategies"] = nav
    return config


def on_files(files: Files, config: Any) -> Files:
    for name in missing_docstrings():
        log.warning("public name without a docstring: %s", name)
    algorithms = (Path(config["docs_dir"]) / "algorithms.md").read_text()
    for path, text in strategy_pages(algorithms).items():
        files.append(File.generated(config, path, content=text))
    return files


def on_page_markdown(markdown: str, **_: Any) -> str:
    return indent_numbered_lists(markdown)
