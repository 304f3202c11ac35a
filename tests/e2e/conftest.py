"""End-to-end fixtures: the fleet's inventory (`cli`, the `runner` command, is in
tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def inventory(fleet: Any, tmp_path: Path) -> str:
    """An INI inventory of the whole fleet: group `fleet`, hosts host1..host5."""
    return str(fleet.write_inventory(tmp_path / "hosts.ini"))
