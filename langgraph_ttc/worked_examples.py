"""Worked examples for few-shot prompting: (problem, solution) pairs read from JSON Lines.

The strategies take them as the `examples` setting (shown as earlier chat turns before the
problem). The package ships a default set (`langgraph_ttc/data/examples.jsonl`): short
grade-school word problems, each solved in the system prompt's format (steps separated by a
blank line, the final answer in `\\boxed{}`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

from langgraph_ttc.errors import TTCError
from langgraph_ttc.files import FileError, read_text

# Worked examples `ttc solve` / `ttc eval` show when --few-shot is not given: on 20 MAWPS
# SingleOp problems with the embedded model, the share of candidates that state an answer went
# 40% / 92.5% / 97.5% and strict pass@4 15% / 60% / 75% with 0 / 2 / 4 examples (README).
DEFAULT_FEW_SHOT = 4

Example = tuple[str, str]
MAX_EXAMPLES_BYTES = 4 << 20


class ExamplesError(TTCError, ValueError):
    """An examples file that cannot be read, or more examples asked for than it holds."""


def default_examples_text() -> str:
    return resources.files("langgraph_ttc").joinpath("data/examples.jsonl").read_text("utf-8")


def parse_examples(text: str, source: str = "examples") -> list[Example]:
    """Every row of a JSON Lines text with string `problem` and `solution` fields."""
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ExamplesError(f"{source}:{number} is not JSON: {error}") from None
        if not isinstance(row, dict) or not all(
            isinstance(row.get(field), str) and row[field].strip()
            for field in ("problem", "solution")
        ):
            raise ExamplesError(
                f"{source}:{number} needs non-empty string fields 'problem' and 'solution'"
            )
        examples.append((row["problem"], row["solution"]))
    return examples


def load_examples(path: str | os.PathLike[str] | None = None) -> list[Example]:
    """The examples in `path`, or the packaged default set."""
    if path is None:
        return parse_examples(default_examples_text(), "langgraph_ttc/data/examples.jsonl")
    try:  # a regular file of bounded size: a FIFO or a device never blocks the run
        text = read_text(path, max_bytes=MAX_EXAMPLES_BYTES)
    except FileError as error:
        raise ExamplesError(f"examples file: {error}") from None
    return parse_examples(text, str(path))


def select_examples(
    few_shot: int | None, path: str | os.PathLike[str] | None = None
) -> list[Example]:
    """The first `few_shot` examples of `path` (or of the default set). `few_shot` None: all of
    `path` when given, else `DEFAULT_FEW_SHOT` of the default set."""
    if few_shot is not None and few_shot < 0:
        raise ExamplesError(f"--few-shot must be >= 0, got {few_shot}")
    if few_shot is None:
        few_shot = None if path is not None else DEFAULT_FEW_SHOT
    if path is None and few_shot == 0:
        return []
    examples = load_examples(path)  # a bad file fails even with --few-shot 0
    if few_shot is not None and few_shot > len(examples):
        raise ExamplesError(
            f"--few-shot {few_shot} asks for more examples than the "
            f"{len(examples)} in {path or 'the default set'}"
        )
    return examples[:few_shot]


def examples_for_run(
    few_shot: int | None,
    path: str | os.PathLike[str] | None,
    earlier_config: Mapping[str, Any] | None = None,
) -> list[Example]:
    """`select_examples`, except that a resumed run given neither option keeps the examples
    of the earlier run (`earlier_config`, its config.json; none for a run made before worked
    examples were an option)."""
    if few_shot is None and path is None and earlier_config is not None:
        settings = earlier_config.get("settings") or {}
        return [(str(p), str(s)) for p, s in settings.get("examples", [])]
    return select_examples(few_shot, path)
