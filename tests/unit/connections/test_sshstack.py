"""The SSH stack imports without unittest.mock and a second PyYAML, and leaves both usable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import json, sys
from runner.connections.sshstack import load
fabric, paramiko = load()
loaded = {name: name in sys.modules for name in ("unittest.mock", "asyncio")}
import yaml, invoke.util
import unittest.mock
print(json.dumps({
    "loaded": loaded,
    "same_yaml": invoke.util.yaml is yaml,
    "real_mock": unittest.mock.Mock.__module__ == "unittest.mock",
    "fabric": hasattr(fabric, "Connection"),
    "paramiko": hasattr(paramiko, "SSHClient"),
}))
"""


def test_the_ssh_stack_loads_lean_and_a_later_unittest_mock_is_the_real_one():
    # A fresh interpreter: this one has imported unittest.mock already (pytest does).
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert json.loads(done.stdout) == {
        "loaded": {"unittest.mock": False, "asyncio": False},
        "same_yaml": True,
        "real_mock": True,
        "fabric": True,
        "paramiko": True,
    }
