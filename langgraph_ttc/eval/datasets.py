"""Evaluation problems from JSON Lines files or Hugging Face datasets (`hf:NAME[:CONFIG]`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph_ttc.errors import TTCError

HF_PREFIX = "hf:"


class DatasetError(TTCError, ValueError):
    """The dataset cannot be read, or its rows lack the fields an evaluation needs."""


@dataclass(frozen=True)
class Problem:
    """One evaluation problem: its id, its text and the reference final answer."""

    id: str
    problem: str
    answer: str  # the reference final answer


@dataclass(frozen=True)
class Fields:
    """The field names a dataset's rows use for the problem, the answer and the id."""

    problem: str = "problem"
    answer: str = "answer"
    id: str = "id"  # rows without it are numbered by position


def load_problems(
    spec: str,
    *,
    split: str = "test",
    fields: Fields = Fields(),
    limit: int | None = None,
) -> list[Problem]:
    """The first `limit` problems of a JSON Lines path or an `hf:NAME[:CONFIG]` dataset."""
    if limit is not None and limit < 1:
        raise DatasetError(f"--limit must be >= 1, got {limit}")
    if spec.startswith(HF_PREFIX):
        rows: Iterable[Mapping[str, Any]] = _hf_rows(spec[len(HF_PREFIX) :], split)
        source = spec
    else:
        rows = _jsonl_rows(Path(spec))
        source = spec
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if limit is not None and len(problems) >= limit:
            break
        problem = _to_problem(row, index, fields, source)
        if problem.id in seen:
            raise DatasetError(
                f"{source}: duplicate id {problem.id!r} (row {index + 1}); results are keyed by "
                f"id, so ids must be unique (choose another --id-field)"
            )
        seen.add(problem.id)
        problems.append(problem)
    if not problems:
        raise DatasetError(f"{source}: no problems found")
    return problems


def _to_problem(row: Mapping[str, Any], index: int, fields: Fields, source: str) -> Problem:
    missing = [name for name in (fields.problem, fields.answer) if row.get(name) is None]
    if missing:
        raise DatasetError(
            f"{source}: row {index + 1} has no {' / '.join(map(repr, missing))} field "
            f"(it has {sorted(row)}); set --problem-field / --answer-field"
        )
    problem = str(row[fields.problem]).strip()
    if not problem:
        raise DatasetError(f"{source}: row {index + 1} has an empty {fields.problem!r}")
    raw_id = row.get(fields.id)
    return Problem(
        id=str(raw_id) if raw_id is not None else str(index),
        problem=problem,
        answer=reference_answer(row[fields.answer]),
    )


def reference_answer(value: Any) -> str:
    """The reference as a string; GSM8K-style "reasoning #### 42" keeps what follows ####."""
    text = str(value).strip()
    if "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    return text


def _jsonl_rows(path: Path) -> Iterable[Mapping[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"dataset {str(path)!r} not found (a JSON Lines file, or hf:NAME)")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object per line")
            yield row


def _hf_rows(name: str, split: str) -> Iterable[Mapping[str, Any]]:
    try:
        import datasets  # optional dependency
    except ImportError as exc:
        raise DatasetError(
            f"hf:{name} needs the optional `datasets` package: pip install datasets "
            "(or use a JSON Lines file)"
        ) from exc
    path, _, config = name.partition(":")
    if not path:
        raise DatasetError("hf: needs a dataset name, e.g. hf:HuggingFaceH4/MATH-500")
    try:
        return datasets.load_dataset(path, config or None, split=split)
    except Exception as exc:  # hub unreachable, unknown name or split: all end the same way
        raise DatasetError(
            f"could not load hf:{name} (split {split!r}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {exc}. Without hub access, export the dataset to JSON Lines "
            "where the hub is reachable and pass the file; a cached copy loads with "
            "HF_HUB_OFFLINE=1."
        ) from exc
