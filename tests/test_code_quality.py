"""Lint, formatting and types, as CI checks them: `ruff check`, `ruff format --check` and
`mypy`, each with the project's configuration in pyproject.toml, run from the
repository's root. A failure shows the tool's own report."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("runner", "tests", "bench")


def _run(module: str, *args: str) -> None:
    """Run `python -m module args` at the root; fail with its output unless it exits 0."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{module} {' '.join(args)}:\n{proc.stdout}{proc.stderr}"


def test_ruff_finds_nothing() -> None:
    _run("ruff", "check", "--no-cache", *SOURCES)


def test_the_code_is_formatted() -> None:
    _run("ruff", "format", "--check", "--no-cache", *SOURCES)


def test_mypy_finds_nothing() -> None:
    _run("mypy")
