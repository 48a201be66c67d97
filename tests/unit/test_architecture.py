"""The package keeps its shape (docs/architecture.md): no import cycles between rooms or
modules, in-function imports only for heavy or optional dependencies, capabilities checked
with protocols instead of probed, every exception under TTCError."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def figures() -> dict:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "code_health.py"), "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


def test_the_rooms_keep_their_shape():
    found = figures()
    assert found["room_cycles"] == [] and found["room_cycles_with_in_function_imports"] == []
    assert found["module_cycles"] == []
    assert found["module_cycles_with_in_function_imports"] == []
    assert found["backend_probe_sites"] == []
    assert found["exception_classes_outside_TTCError"] == []
    assert found["exception_classes"] >= 20  # the count sees the classes


def test_every_in_function_import_says_why():
    found = figures()
    for path, lines in found["in_function_imports_by_file"].items():
        text = (ROOT / path).read_text().splitlines()
        for number in lines:
            line, before = text[number - 1], text[number - 2].strip()
            grouped = number - 1 in lines  # a group's first line carries the comment
            assert grouped or "#" in line or before.startswith("#"), f"{path}:{number} {line}"


def test_nothing_imports_the_cli():
    for path in (ROOT / "langgraph_ttc").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "langgraph_ttc").parts:
            continue
        assert "langgraph_ttc.cli" not in path.read_text(), path
