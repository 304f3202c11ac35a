"""The package's layering holds: read from the import graph of the source itself.

Allowed arrows (a layer may import itself, the shared base, and what is listed):
  planning     -> (nothing else): files in, a Plan out
  connections  -> planning (host name syntax)
  jobs         -> planning (the playbook's job types), connections (is a process alive)
  execution    -> planning, jobs, connections
  distributed  -> planning, jobs, execution, connections (a child runner on workers)
  api          -> planning, jobs, execution, connections, distributed
  cli          -> everything
The shared base (runner/__init__, errors, settings, signals) imports only itself.
Imports under `if TYPE_CHECKING:` count as arrows too; they do not close cycles.
"""

from __future__ import annotations

import re

import pytest

from tests.import_graph import cycles, modules

BASE = {"runner", "runner.errors", "runner.settings", "runner.signals"}
LAYERS = ("planning", "connections", "jobs", "execution", "distributed", "api", "cli")
ALLOWED = {
    "base": set(),
    "planning": set(),
    "connections": {"planning"},
    "jobs": {"planning", "connections"},
    "execution": {"planning", "jobs", "connections"},
    "distributed": {"planning", "jobs", "execution", "connections"},
    "api": {"planning", "jobs", "execution", "connections", "distributed"},
    "cli": {"planning", "jobs", "execution", "connections", "distributed", "api"},
}
GRAPH = modules()


def layer(name: str) -> str:
    if name in BASE:
        return "base"
    if name == "runner.__main__":
        return "cli"
    part = name.split(".")[1]
    assert part in LAYERS, f"{name} is in no layer: put it in one of {LAYERS}"
    return part


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_each_module_imports_only_what_its_layer_may(name: str) -> None:
    own = layer(name)
    wrong = sorted(
        other for other in GRAPH[name].every if layer(other) not in ALLOWED[own] | {own, "base"}
    )
    assert not wrong, f"{name} ({own}) must not import {wrong}"


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


def test_no_module_imports_runner_by_a_name_in_a_string() -> None:
    """`importlib.import_module("runner.x")`, `__import__` or `exec("import ...")` would
    hide an arrow from the graph above: runner's own modules are imported by statements."""
    hidden = re.compile(r"""(import_module|__import__|exec)\(\s*f?["']\s*(from |import )?runner""")
    found = [
        f"{module.path}:{number}"
        for module in GRAPH.values()
        for number, line in enumerate(module.path.read_text().splitlines(), 1)
        if hidden.search(line)
    ]
    assert not found, found


def test_the_rules_are_checked_on_the_real_package() -> None:
    """The graph is read, not empty: a broken reader would pass every rule above."""
    assert len(GRAPH) > 40
    assert "runner.planning.planner" in GRAPH["runner.execution.executor"].runtime
    assert "runner.api.plans" in GRAPH["runner.cli.main"].lazy
