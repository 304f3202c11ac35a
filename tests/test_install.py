"""The README's quick start, for real, as a user on a fresh Debian machine runs it.

Its first command, taken from README.md as written, runs as root in a clean copy of the
repository with nothing of this test run's environment: `env -i` with Debian's own PATH,
so `python3` is Debian's /usr/bin/python3 (pip refuses to install into it: the command
has to make its virtual environment). Then the README's next lines (activate, `runner
job list`, `runner job receive 1 --keep`) run in one shell, as the user types them. This
is what proves the package installs from a checkout with its schema and console script,
and without the `distributed` extra's libraries (Celery, redis-py, psycopg).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
DISTRIBUTED_ONLY = ("celery", "redis", "psycopg")  # the `distributed` extra's imports
FENCE = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not SYSTEM_PYTHON.is_file(),
    reason="the README's quick start is for root on Debian with its /usr/bin/python3",
)


def quick_start_blocks() -> tuple[str, str]:
    """The quick start's first command and the block that follows it, from README.md."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    blocks = FENCE.findall(section)
    assert len(blocks) >= 2, "the README's quick start lost its commands"
    first = blocks[0].strip()
    assert "\n" not in first, "the quick start's first command is one line"
    return first, blocks[1]


def clean_env(home: Path) -> list[str]:
    """`env -i` with Debian's PATH: none of this test run's variables or virtualenv."""
    return ["env", "-i", f"PATH={DEBIAN_PATH}", f"HOME={home}"]


def test_the_readme_quick_start_installs_and_runs_on_debian_python(tmp_path):
    first, follow_up = quick_start_blocks()
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "build", "results", ".pytest_cache"
        ),
    )
    home = tmp_path / "home"
    home.mkdir()

    run = subprocess.run(
        [*clean_env(home), "bash", "-c", first],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "job 1 hello started" in run.stdout
    assert "RECAP" in run.stdout and "web1" in run.stdout

    # `command -v runner` after the README's lines: which runner those lines ran
    after = subprocess.run(
        [*clean_env(home), "bash", "-c", f"{follow_up}\ncommand -v runner"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert after.returncode == 0, after.stdout + after.stderr
    listing, _, which = after.stdout.rstrip("\n").rpartition("\n")
    assert which == str(checkout / ".venv" / "bin" / "runner")
    assert re.search(r"^\s*1\s+hello\s.*\bCompleted\b", listing, re.MULTILINE), listing
    for host in ("localhost", "web1", "web2", "db1"):
        assert f"hello from {host} (Linux)" in listing, host

    # the package ran from the environment, not from the checkout it was installed from,
    # with every subpackage and the schema shipped
    module = subprocess.run(
        [
            *clean_env(home),
            str(checkout / ".venv" / "bin" / "python"),
            "-c",
            "import runner, runner.cli.main, runner.execution.executor, "
            "runner.planning.schema as s; assert s.SCHEMA_PATH.is_file(); "
            "print(runner.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert module.stdout.startswith(str(checkout / ".venv" / "lib")), module.stdout

    # the distributed mode's libraries come only with the `distributed` extra
    for name in DISTRIBUTED_ONLY:
        found = subprocess.run(
            [*clean_env(home), str(checkout / ".venv" / "bin" / "python"), "-c", f"import {name}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert found.returncode != 0, f"a plain install brought {name}"
        assert "ModuleNotFoundError" in found.stderr, found.stderr
