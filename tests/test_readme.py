"""Every shell command in README.md runs as written, so the README cannot drift.

The fenced `sh` blocks, and the commands of the GitHub Actions (`run:`) and GitLab CI
(`script:`) snippets, run in README order with bash -eu, in a copy of the repository
and with a fresh RUNNER_HOME: a user following the README top to bottom gets job 1
from the quick start, and so does the Jobs section. Two commands cannot run inside the
test suite and are stood in for: `pip install .` (the package is already installed for
the tests; a stand-in `pip` accepts exactly that command) and `bash tests/run.sh` (this
suite itself: checked with `bash -n`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.junit_xml import parse_junit

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PIP_STAND_IN = """#!/bin/sh
[ "$*" = "install ." ] || { echo "README test: unexpected pip $*" >&2; exit 1; }
"""


def readme_commands() -> list[tuple[str, str]]:
    """(where, script) for every sh block and CI snippet command, in README order."""
    found = []
    for match in FENCE.finditer(README.read_text()):
        lang, body = match.group(1), match.group(2)
        line = README.read_text()[: match.start()].count("\n") + 1
        if lang == "sh":
            found.append((f"README.md:{line} sh", body))
        elif lang == "yaml":
            for command in _ci_commands(yaml.safe_load(body)):
                found.append((f"README.md:{line} CI", command))
    return found


def _ci_commands(data: object) -> list[str]:
    """GitHub Actions `jobs.*.steps[].run` and GitLab CI `*.script` commands."""
    if not isinstance(data, dict):
        return []
    commands: list[str] = []
    for value in data.values():
        if not isinstance(value, dict):
            continue
        commands += [c for c in value.get("script", []) if isinstance(c, str)]
        for job in value.values() if "steps" not in value else [value]:
            if isinstance(job, dict):
                commands += [s["run"] for s in job.get("steps", []) if "run" in s]
    return commands


def test_the_readme_has_the_sections_and_commands_it_promises():
    commands = readme_commands()
    text = "\n".join(script for _, script in commands)
    for expected in ("pip install .", "runner run", "runner job receive", "runner job wait",
                     "runner job stop", "runner job remove", "--junit", "--format json",
                     "--limit @", "--check", "--diff", "--start-at-job", "--tags",
                     "--skip-tags", "-f 2"):
        assert expected in text, expected
    ci = [where for where, _ in commands if where.endswith("CI")]
    assert len(ci) >= 6  # both CI snippets were found and read
    for heading in ("## CI use", "## Fleet use", "## Jobs"):
        assert heading in README.read_text()


@pytest.fixture
def readme_checkout(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(
        ROOT, copy, symlinks=True,
        ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "results", "bench",
                                      ".pytest_cache", ".ruff_cache", ".mypy_cache"),
    )
    return copy


def test_every_readme_command_runs_as_written(readme_checkout, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pip").write_text(PIP_STAND_IN)
    (bin_dir / "pip").chmod(0o755)
    env = {**os.environ, "RUNNER_HOME": str(tmp_path / "home"),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CI", None)
    env.pop("RUNNER_DEBUG", None)
    ran = 0
    for where, script in readme_commands():
        script = script.replace("bash tests/run.sh", "bash -n tests/run.sh")
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=readme_checkout, env=env,
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert proc.returncode == 0, f"{where}:\n{script}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr and "runner: error" not in proc.stderr, where
        ran += 1
    assert ran == len(readme_commands()) > 10
    # what the CI snippets promise a pipeline gets
    parse_junit(readme_checkout / "reports" / "runner.xml")
    assert (readme_checkout / "run.json").is_file()
