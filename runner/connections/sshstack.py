"""Importing the SSH stack (paramiko, Invoke, Fabric) without what runner never uses.

paramiko imports Invoke (for `Match exec` in ssh_config files) and Fabric is built on
it. Two of Invoke's own imports cost a good part of the stack's import time, on every
`runner run`, and do nothing here (BENCHMARKS.md, "Figures behind design choices"):

- `invoke.context` does `from unittest.mock import Mock` for its `MockContext` test
  helper, and `unittest.mock` imports asyncio and ssl;
- `invoke.util` imports Invoke's vendored copy of PyYAML to read Invoke's
  config files; runner gives Fabric its configuration in code, and the PyYAML it has
  already loaded for playbooks serves should Invoke ever read one.

The stand-in for `unittest.mock` is in place only while the stack imports, so a later
`import unittest.mock` (a test, a user's callback) gets the real module.
"""

from __future__ import annotations

import sys
import types
from typing import Any

_MOCK = "unittest.mock"
_VENDORED_YAML = "invoke.vendor.yaml"


class _NoMock:
    """What Invoke's `MockContext` gets in place of `unittest.mock.Mock` inside runner."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("invoke.MockContext is not available inside runner")


def load() -> tuple[types.ModuleType, types.ModuleType]:
    """`(fabric, paramiko)`, imported lean the first time."""
    if "fabric" not in sys.modules:
        import yaml

        stand_in = None
        if _MOCK not in sys.modules:
            stand_in = types.ModuleType(_MOCK, "unittest.mock, unused by Invoke here")
            stand_in.Mock = _NoMock  # type: ignore[attr-defined]
            sys.modules[_MOCK] = stand_in
        sys.modules.setdefault(_VENDORED_YAML, yaml)
        try:
            import fabric  # noqa: F401 - imports paramiko and Invoke
        finally:
            if stand_in is not None and sys.modules.get(_MOCK) is stand_in:
                del sys.modules[_MOCK]
    return sys.modules["fabric"], sys.modules["paramiko"]
