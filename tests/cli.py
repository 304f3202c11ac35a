"""The `runner` command line as the tests start it: one place for the subprocess, its
environment and its time limit, and one place for polling (`wait_until`).

Every test that runs `python -m runner` goes through `run_runner` (or `start_runner` for a
run in the background), so a change to how the command is started is made once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
RUNNER = (sys.executable, "-m", "runner")
TIMEOUT = 120.0  # a bound for a hung command, never reached by one that works
POLL_INTERVAL = 0.05

T = TypeVar("T")


@dataclass(frozen=True)
class CliResult:
    """What one `runner` command left: its exit code and everything it wrote."""

    returncode: int
    stdout: Any  # str, or bytes when run with text=False
    stderr: Any

    @property
    def output(self) -> Any:
        """stdout then stderr, for an assertion's message."""
        return self.stdout + self.stderr


def runner_env(home: Path | str | None = None, **extra: str) -> dict[str, str]:
    """The environment a user's shell gives `runner`: this checkout, CI output (no status
    line), no debug tracebacks, and RUNNER_HOME when `home` is given."""
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)}
    env.pop("RUNNER_DEBUG", None)
    if home is not None:
        env["RUNNER_HOME"] = str(home)
    env.update(extra)
    return env


def run_runner(
    *args: str,
    home: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    input: str | bytes | None = None,
    timeout: float = TIMEOUT,
    text: bool = True,
    preexec_fn: Callable[[], None] | None = None,
    under: Sequence[str] = (),
) -> CliResult:
    """Run `runner ARGS` to its end and return its exit code and output.

    `env` is the whole environment (default: `runner_env(home)`); `home` sets RUNNER_HOME in
    it; `under` is a command to start it with (`unshare ...`). The caller checks the exit
    code, so a failing command is a result, not an error.
    """
    proc = subprocess.run(  # noqa: PLW1510 - the caller checks the exit code
        [*under, *RUNNER, *args],
        cwd=cwd,
        env=_environment(home, env),
        input=input,
        capture_output=True,
        text=text,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def start_runner(
    *args: str,
    home: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    text: bool = True,
) -> subprocess.Popen[Any]:
    """`runner ARGS` in the background, stdout and stderr piped: a run to stop, kill or
    read from while it works. It gets Ctrl-C's default disposition, as from a terminal,
    whatever the suite inherited (a shell starts a background job with SIGINT ignored,
    and Python then keeps ignoring it: a test sending SIGINT would wait in vain)."""
    return subprocess.Popen(
        [*RUNNER, *args],
        cwd=cwd,
        env=_environment(home, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
        preexec_fn=_interruptible,
    )


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _environment(home: Path | str | None, env: Mapping[str, str] | None) -> dict[str, str]:
    if env is None:
        return runner_env(home)
    return {**env, "RUNNER_HOME": str(home)} if home is not None else dict(env)


def wait_until(
    predicate: Callable[[], T], timeout: float = 30, what: str = "", interval: float = POLL_INTERVAL
) -> T:
    """Poll until `predicate()` is truthy and return its value; fail the test naming `what`
    was awaited once `timeout` seconds pass. The bound is generous: the machine is shared
    and slow, and a condition that holds ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class Cli:
    """`runner` with its own RUNNER_HOME, in a scratch directory, as a user in a shell."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        self.env = runner_env(home)
        self.workers: list[Any] = []  # `runner worker` processes taking its children

    def __call__(
        self, *args: str, timeout: float = TIMEOUT, check: bool = False, input: str | None = None
    ) -> CliResult:
        result = run_runner(*args, env=self.env, cwd=self.cwd, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(
                f"runner {' '.join(args)} exited {result.returncode}\n{result.output}"
            )
        return result

    def start(self, *args: str, text: bool = True) -> subprocess.Popen[Any]:
        """`runner ...` in the background (a run to stop, kill or receive from)."""
        return start_runner(*args, env=self.env, cwd=self.cwd, text=text)

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
