"""The compute-optimal router's routing table: its schema, and where a table may come from.

- At build time, `create_compute_optimal(table=...)` takes a `RoutingTable`, a mapping, a JSON
  file path (the caller's own choice of file), or None (the shipped default table).
- Per run, the `table` setting is a file name inside the directory the graph was built with
  (`table_dir=`): relative, no `..`, no symlink out of it, a regular file of at most
  `MAX_TABLE_BYTES`. A graph built without `table_dir` accepts no per-run table file (except
  the build-time table's own name). The file is read afresh on every run that names it (no
  cache: an edited file routes by its new content).

A table that fails its schema is a `SettingsError` naming the field (`routes.4.1.strategy`),
never the file's contents.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langgraph_ttc.errors import SettingsError
from langgraph_ttc.files import FileError, describe_fields, read_text
from langgraph_ttc.strategies.catalog import ROUTABLE

DEFAULT_TABLE = Path(__file__).with_name("default_table.json")
MAX_TABLE_BYTES = 1 << 20


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str
    settings: dict[str, Any] = Field(default_factory=dict)


class RoutingTable(BaseModel):
    """Per budget (in samples of max_tokens), one route per difficulty bin.

    `bins` are ascending edges on the probe signal: bin 0 is below the first edge (hardest),
    the last bin at or above the last one (easiest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe_n: int = Field(4, ge=1)
    bins: list[float]
    routes: dict[int, list[Route]]
    source: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> RoutingTable:
        if self.bins != sorted(self.bins) or not all(0 <= b <= 1 for b in self.bins):
            raise ValueError("bins must be ascending edges in [0, 1]")
        if not self.routes:
            raise ValueError("the table has no routes")
        for budget, row in self.routes.items():
            if budget < 1:
                raise ValueError(f"table budget {budget}: a budget is a number of samples >= 1")
            if len(row) != len(self.bins) + 1:
                raise ValueError(
                    f"table budget {budget}: needs one route per bin ({len(self.bins) + 1}), "
                    f"got {len(row)}"
                )
            for index, route in enumerate(row):
                if route.strategy not in ROUTABLE:
                    raise ValueError(
                        f"table budget {budget}, bin {index}: cannot route to "
                        f"{route.strategy[:40]!r}; routable: {', '.join(sorted(ROUTABLE))}"
                    )
        return self

    def lookup(self, budget_samples: int, signal: float) -> tuple[int, int, Route]:
        """(table budget, bin, route) for a run that can pay for `budget_samples` samples."""
        budgets = sorted(self.routes)
        covered = [b for b in budgets if b <= budget_samples]
        budget = covered[-1] if covered else budgets[0]
        bin_index = bisect.bisect_right(self.bins, signal)
        return budget, bin_index, self.routes[budget][bin_index]


def parse_table(data: Any, source: str) -> RoutingTable:
    """A validated table from decoded JSON (or a mapping); SettingsError naming the field."""
    if not isinstance(data, Mapping):
        raise SettingsError(f"table {source}: a routing table is a JSON object")
    try:
        return RoutingTable.model_validate(dict(data))
    except ValidationError as error:
        raise SettingsError(f"table {source}: {describe_fields(error)}") from None


def read_table_file(path: str | Path, root: str | Path | None = None) -> RoutingTable:
    """The table in a JSON file (with `root`: a name resolved inside it)."""
    source = repr(str(path))
    try:
        text = read_text(path, root=root, max_bytes=MAX_TABLE_BYTES)
    except FileError as error:
        raise SettingsError(f"table: {error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:  # its position, not its text
        raise SettingsError(
            f"table {source} is not JSON: {error.msg} at line {error.lineno}"
        ) from None
    return parse_table(data, source)


def load_table(table: RoutingTable | Mapping[str, Any] | str | Path | None) -> RoutingTable:
    """A build-time table: a table, a mapping, a JSON file, or None (the default table)."""
    if isinstance(table, RoutingTable):
        return table
    if isinstance(table, Mapping):
        return parse_table(table, "(mapping)")
    if table is not None and not isinstance(table, str | Path):
        raise SettingsError(
            f"table: a routing table, a mapping or a JSON file path, got {type(table).__name__}"
        )
    return read_table_file(table if table is not None else DEFAULT_TABLE)


def run_table(name: str, table_dir: Path | None) -> RoutingTable:
    """A run's `table` setting: a file name inside the build-time `table_dir`."""
    if table_dir is None:
        raise SettingsError(
            "table: this graph takes no per-run table file; build it with "
            "create_compute_optimal(..., table_dir=DIR) to allow files in DIR"
        )
    return read_table_file(name, root=table_dir)
