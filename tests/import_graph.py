"""runner's own import graph, read from the source: which module imports which, and how.

`python -m tests.import_graph` prints it with its cycles; tests/test_import_rules.py
checks the layering rules on it. An import is *runtime* at module level, *lazy* inside a
function, *typing* under `if TYPE_CHECKING:` (never executed, so it closes no cycle).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "runner"


@dataclass
class Module:
    name: str
    path: Path
    runtime: set[str] = field(default_factory=set)
    lazy: set[str] = field(default_factory=set)
    typing: set[str] = field(default_factory=set)

    @property
    def executed(self) -> set[str]:
        """What importing and running this module can import."""
        return self.runtime | self.lazy

    @property
    def every(self) -> set[str]:
        return self.runtime | self.lazy | self.typing


def modules(package: Path = PACKAGE) -> dict[str, Module]:
    """Every module of the package, with the runner modules each one imports."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = Module(name, path)
    for module in found.values():
        _read_imports(module, found)
    return found


def _read_imports(module: Module, known: dict[str, Module]) -> None:
    tree = ast.parse(module.path.read_text(), str(module.path))
    _walk(tree, module, known, kind="runtime")


def _walk(node: ast.AST, module: Module, known: dict[str, Module], kind: str) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            _walk(child, module, known, "lazy" if kind == "runtime" else kind)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                _walk(ast.Module(body=[stmt], type_ignores=[]), module, known, "typing")
            for stmt in child.orelse:
                _walk(ast.Module(body=[stmt], type_ignores=[]), module, known, kind)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            targets = {t for t in _targets(child, module, known) if t != module.name}
            getattr(module, kind).update(targets)
        else:
            _walk(child, module, known, kind)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module: Module, known: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [
            _known_prefix(alias.name, known)
            for alias in node.names
            if alias.name.split(".")[0] == "runner"
        ]
    base = node.module or ""
    if node.level:
        package = module.name.split(".")
        if module.path.name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    if base.split(".")[0] != "runner":
        return []
    return [
        f"{base}.{a.name}" if f"{base}.{a.name}" in known else _known_prefix(base, known)
        for a in node.names
    ]


def _known_prefix(name: str, known: dict) -> str:
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def cycles(graph: dict[str, Module]) -> list[list[str]]:  # noqa: C901 - Tarjan reads best whole
    """Groups of modules that import each other, through imports that execute."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for other in sorted(graph[name].executed):
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in on_stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            group = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                group.append(other)
                if other == name:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return groups


def main() -> None:
    graph = modules()
    lazy = sum(len(m.lazy) for m in graph.values())
    print(f"{len(graph)} modules; {lazy} imports inside functions")
    found = cycles(graph)
    print(f"{len(found)} import cycles")
    for group in found:
        print("  " + " <-> ".join(group))
    for name, module in sorted(graph.items()):
        line = f"{name}: {' '.join(sorted(module.runtime))}"
        if module.lazy:
            line += f" | lazy: {' '.join(sorted(module.lazy))}"
        if module.typing:
            line += f" | typing: {' '.join(sorted(module.typing))}"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
