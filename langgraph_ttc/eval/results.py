"""The append-only results log (`results.jsonl`): crash-safe appends and tolerant reading.

Rows are appended in one write per finished problem, then flushed and fsynced, so a killed run
loses at most the problem in flight. A partially written last line (the process died mid-write,
or the machine lost the tail) is dropped and cut off before the next append; any other bad
line is corruption and stops the run instead of being silently skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from langgraph_ttc.errors import TTCError

RowKey = tuple[str, int, str]  # (strategy, budget, problem id)


class ResultsCorrupted(TTCError, RuntimeError):
    """A results line other than the last one is not a JSON object."""


def row_key(row: Mapping[str, Any]) -> RowKey:
    return (str(row["strategy"]), int(row["budget"]), str(row["id"]))


EVAL_ROW_KEYS = ("strategy", "budget", "id")


class ResultsLog:
    """`required`: the keys every row has (a line without them is not a row)."""

    def __init__(self, path: str | os.PathLike[str], required: Iterable[str] = EVAL_ROW_KEYS):
        self.path = Path(path)
        self.required = frozenset(required)

    def read(self) -> tuple[list[dict[str, Any]], int]:
        """The complete rows, and the byte length of the file up to the last complete row.

        Bytes after the last newline are a torn write and are ignored; so is a last line that
        does not parse. An unparsable line followed by good ones raises ResultsCorrupted.
        """
        if not self.path.exists():
            return [], 0
        *complete, _torn_tail = self.path.read_bytes().split(b"\n")
        rows: list[dict[str, Any]] = []
        good_end = 0
        for number, line in enumerate(complete, start=1):
            if line.strip():
                row = _parse(line, self.required)
                if row is None:
                    if number == len(complete):
                        break  # a torn last line: dropped, cut before the next append
                    raise ResultsCorrupted(
                        f"{self.path}:{number} is not a results row; fix or remove that line"
                    )
                rows.append(row)
            good_end += len(line) + 1
        return rows, good_end

    def repair(self) -> list[dict[str, Any]]:
        """Read the rows and cut any torn tail off the file so appends start on a fresh line."""
        rows, good_end = self.read()
        if self.path.exists() and self.path.stat().st_size != good_end:
            with self.path.open("r+b") as file:
                file.truncate(good_end)
                file.flush()
                os.fsync(file.fileno())
        return rows

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append rows in one write, then flush and fsync."""
        # ASCII escapes: model text may hold lone surrogates, which UTF-8 cannot encode
        payload = "".join(json.dumps(row) + "\n" for row in rows)
        if not payload:
            return
        with self.path.open("a", encoding="utf-8") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())

    def rewrite(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the log with `rows` (atomically: a kill leaves the old or the new file)."""
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as file:
            file.write("".join(json.dumps(row) + "\n" for row in rows))  # ASCII: lone surrogates
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)


def _parse(line: bytes, required: frozenset[str]) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) and required <= set(row) else None
