"""Fixtures for the fault tests: a fleet of their own (`cli` is in tests/conftest.py).

The faults here take hosts down, give them new host keys and fill their disks, so they
run against a small fleet of their own (module scope) and leave the shared one alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fleet import Fleet, sshd_available

FAULT_FLEET_SIZE = 3


@pytest.fixture(scope="module")
def faulty_fleet() -> Iterator[Fleet]:
    """Three real sshd hosts (fault1..fault3) that a test may break; stopped at the end."""
    if not sshd_available():
        pytest.skip("OpenSSH server not installed (/usr/sbin/sshd, ssh-keygen): run tests/run.sh")
    with Fleet(FAULT_FLEET_SIZE, prefix="fault") as running:
        yield running
