"""Shared fixtures: the real sshd fleet (one per test session) and a fresh RUNNER_HOME."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `from tests.fleet import ...` from any test module
    sys.path.insert(0, str(ROOT))

from tests.fleet import Fleet, sshd_available

FLEET_SIZE = 5


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    """Five real sshd hosts on 127.0.0.2-6, stopped (with their children) at the end."""
    if not sshd_available():
        pytest.skip("OpenSSH server not installed (/usr/sbin/sshd, ssh-keygen): run tests/run.sh")
    with Fleet(FLEET_SIZE) as running:
        yield running


@pytest.fixture
def runner_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty RUNNER_HOME for this test only (job store, known_hosts...)."""
    home = tmp_path / "runner-home"
    home.mkdir()
    monkeypatch.setenv("RUNNER_HOME", str(home))
    return home
