"""Structure figures of the package: what a newcomer trips over, counted the same way each time.

    python bench/code_health.py            # a table
    python bench/code_health.py --json     # the same figures as JSON

- room cycles: import cycles between rooms (top-level modules and subpackages of
  `langgraph_ttc`), counting module-level imports only;
- in-function imports: `import` statements inside a function body (each one should defer a
  heavy optional dependency, with a comment saying so);
- backend probes: `getattr(x, "name", ...)` / `hasattr(x, "name")` where `name` is a backend
  capability (a lifecycle method, a load figure, a continuation flag);
- exception classes outside the hierarchy: classes deriving from an exception that do not
  derive from `TTCError`;
- the longest functions (lines), and how many are over 50 lines.
"""

from __future__ import annotations

import argparse
import ast
import json
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "langgraph_ttc"
CAPABILITIES = {
    "start",
    "shutdown",
    "aclose",
    "startup_seconds",
    "supports_prefix",
    "no_prefix_reason",
    "next_token_logprobs",
    "capacity",
    "sequences_in_flight",
    "engine_counts",
    "engine_tokens",
    "model_ref",
    "handle",
    "base_url",
    "generate",
    "score",
}
BUILTIN_EXCEPTIONS = {
    name for name in dir(__builtins__) if isinstance(getattr(__builtins__, name, None), type)
} | {"Exception", "BaseException"}


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The modules an import statement loads (`from pkg import mod` names `pkg.mod`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        target = resolve(node, module, is_package)
        if not target:
            return []
        submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
        return submodules if len(submodules) == len(node.names) else [target, *submodules]
    return []


def in_function_imports(tree: ast.AST) -> list[int]:
    lines = []
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    lines.append(node.lineno)
    return sorted(set(lines))


def top_level_imports(tree: ast.Module) -> list[ast.AST]:
    """Imports that run at import time: module level, including `if`/`try` blocks, not
    `if TYPE_CHECKING:`."""
    found: list[ast.AST] = []

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                found.append(stmt)
            elif isinstance(stmt, ast.If):
                if "TYPE_CHECKING" in ast.unparse(stmt.test):
                    continue
                visit(stmt.body)
                visit(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                visit(stmt.body)
                for handler in stmt.handlers:
                    visit(handler.body)

    visit(tree.body)
    return found


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one room (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in list(edges):
        if v not in index:
            connect(v)
    return components


def measure() -> dict:
    room_edges: dict[str, set[str]] = defaultdict(set)
    all_room_edges: dict[str, set[str]] = defaultdict(set)  # in-function imports too
    all_module_edges: dict[str, set[str]] = defaultdict(set)
    module_edges: dict[str, set[str]] = defaultdict(set)
    in_function: dict[str, list[int]] = {}
    probes: list[str] = []
    exceptions: dict[str, list[str]] = {}
    bases_of: dict[str, list[str]] = {}
    functions: list[tuple[int, str]] = []
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        modules[module_name(path)] = path
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        module_level = top_level_imports(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in imported_modules(node, name, is_package, set(modules)):
                if not target.startswith("langgraph_ttc.") or "." not in name:
                    continue  # the package root re-exports; importing a room loads it first
                source_room, target_room = room_of(name), room_of(target)
                all_module_edges[name].add(target)
                if node in module_level:
                    module_edges[name].add(target)
                if source_room == target_room:
                    continue
                all_room_edges[source_room].add(target_room)
                if node in module_level:
                    room_edges[source_room].add(target_room)
        lines = in_function_imports(tree)
        if lines:
            in_function[str(path.relative_to(PACKAGE.parent))] = lines
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in ("getattr", "hasattr") and len(node.args) >= 2:
                    attribute = node.args[1]
                    if isinstance(attribute, ast.Constant) and attribute.value in CAPABILITIES:
                        probes.append(
                            f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {attribute.value}"
                        )
            if isinstance(node, ast.ClassDef):
                bases_of[node.name] = [ast.unparse(b).split(".")[-1] for b in node.bases]
                exceptions.setdefault(node.name, []).append(str(path.relative_to(PACKAGE.parent)))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                functions.append((length, f"{path.relative_to(PACKAGE.parent)}:{node.name}"))

    def is_exception(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name in BUILTIN_EXCEPTIONS and name.endswith(("Error", "Exception", "Exit")):
            return True
        if name in seen or name not in bases_of:
            return name.endswith("Error")
        return any(is_exception(b, seen | {name}) for b in bases_of[name])

    def under_base(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name == "TTCError":
            return True
        if name in seen or name not in bases_of:
            return False
        return any(under_base(b, seen | {name}) for b in bases_of[name])

    exception_classes = sorted(
        name for name in bases_of if name != "TTCError" and is_exception(name)
    )
    outside = [name for name in exception_classes if not under_base(name)]
    functions.sort(reverse=True)
    # cycles between rooms: packages and top-level modules (langgraph_ttc.X)
    return {
        "room_cycles": find_cycles(room_edges),
        "room_cycles_with_in_function_imports": find_cycles(all_room_edges),
        "module_cycles": find_cycles(module_edges),
        "module_cycles_with_in_function_imports": find_cycles(all_module_edges),
        "in_function_imports": sum(len(v) for v in in_function.values()),
        "in_function_imports_by_file": in_function,
        "backend_probes": len(probes),
        "backend_probe_sites": probes,
        "exception_classes": len(exception_classes),
        "exception_classes_outside_TTCError": outside,
        "longest_functions": [f"{n} {where}" for n, where in functions[:8]],
        "functions_over_50_lines": sum(1 for n, _ in functions if n > 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure()
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"room-level import cycles: {len(figures['room_cycles'])} {figures['room_cycles']}")
    hidden = figures["room_cycles_with_in_function_imports"]
    print(f"  counting in-function imports too: {len(hidden)} {hidden}")
    print(f"module-level import cycles: {len(figures['module_cycles'])}")
    for cycle in figures["module_cycles"]:
        print(f"  {' <-> '.join(cycle)}")
    hidden = figures["module_cycles_with_in_function_imports"]
    print(f"  counting in-function imports too: {len(hidden)}")
    for cycle in hidden:
        print(f"  {' <-> '.join(cycle)}")
    print(f"in-function imports: {figures['in_function_imports']}")
    print(f"getattr/hasattr probes of backend capabilities: {figures['backend_probes']}")
    for site in figures["backend_probe_sites"]:
        print(f"  {site}")
    outside = figures["exception_classes_outside_TTCError"]
    print(
        f"exception classes: {figures['exception_classes']}, "
        f"outside TTCError: {len(outside)} {outside}"
    )
    print(f"functions over 50 lines: {figures['functions_over_50_lines']}; longest:")
    for line in figures["longest_functions"]:
        print(f"  {line}")


if __name__ == "__main__":
    main()
