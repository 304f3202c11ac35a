"""The converging actions by name: each builds its target script and reads its result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.execution.actions import file, line
from runner.execution.actions.target import Converged

Script = Callable[[dict[str, Any], bool, bool], str]  # (args, check, diff) -> /bin/sh text
Result = Callable[[dict[str, Any], dict[str, bytes]], Converged]

ACTIONS: dict[str, tuple[Script, Result]] = {
    "file": (file.script, file.result),
    "line": (line.script, line.result),
}
