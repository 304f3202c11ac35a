"""The README's quick-start command, for real: `pip install .` into a new virtual
environment, then the example playbook, from a clean copy of the repository. This is
what proves the package ships its schema and its console script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_command() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^pip install \. && runner run .*$", text, re.MULTILINE)
    assert match, "the README's quick start command is missing"
    return match.group(0)


def test_quick_start_installs_and_runs_the_example(tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT, checkout, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "results", ".pytest_cache"))
    venv = tmp_path / "venv"
    # The dependencies come from this interpreter's site-packages: the test needs no network.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
           "RUNNER_HOME": str(tmp_path / "home"), "CI": "true", "PIP_NO_INPUT": "1"}
    proc = subprocess.run(["bash", "-ec", quick_start_command()], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "job 1 hello started" in proc.stdout
    assert "RECAP" in proc.stdout
    installed = subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import runner.planning.schema, runner; print(runner.__file__)"],
                               cwd=tmp_path, capture_output=True, text=True, check=True)
    assert str(venv) in installed.stdout  # the installed copy ran, not the checkout
