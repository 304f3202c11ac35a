"""End-to-end helpers: run the `runner` command as a user would, against the sshd fleet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest


class Cli:
    """Runs `python -m runner ...` with its own RUNNER_HOME, in a scratch directory."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.env = {**os.environ, "RUNNER_HOME": str(home), "CI": "true"}
        self.env.pop("RUNNER_DEBUG", None)

    def __call__(self, *args: str, timeout: float = 120, check: bool = False) -> Any:
        proc = subprocess.run(  # noqa: PLW1510 - the caller checks, with the output shown
            [sys.executable, "-m", "runner", *args],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"runner {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`runner ...` in the background (a run to stop, kill or receive from)."""
        return subprocess.Popen(
            [sys.executable, "-m", "runner", *args],
            cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )

    def jobs(self, *extra: str) -> list[dict[str, Any]]:
        return json.loads(self("job", "list", "--format", "json", *extra, check=True).stdout)

    def job(self, job_id: int) -> dict[str, Any]:
        for job in self.jobs("--children"):
            if job["Id"] == job_id:
                return job
        raise AssertionError(f"job {job_id} is not listed")

    def receive(self, job_id: int, *extra: str) -> list[dict[str, Any]]:
        out = self("job", "receive", str(job_id), "--format", "json", *extra, check=True).stdout
        return json.loads(out)

    def playbook(self, text: str, name: str = "play.yml") -> str:
        path = self.cwd / name
        path.write_text(textwrap.dedent(text))
        return str(path)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    return Cli(home, work)


@pytest.fixture
def inventory(fleet: Any, tmp_path: Path) -> str:
    """An INI inventory of the whole fleet: group `fleet`, hosts host1..host5."""
    return str(fleet.write_inventory(tmp_path / "hosts.ini"))
