"""Every shell command in README.md runs as written, so the README cannot drift.

The fenced `sh` blocks run in README order with bash -eu, in a copy of the repository
and with a fresh RUNNER_HOME: a user following the README top to bottom gets job 1
from the quick start, and so does the Jobs section. The commands of the GitHub Actions
(`run:`) and GitLab CI (`script:`) snippets run the same way, each snippet in a fresh
copy of its own, as a pipeline does. None of them may leave a file in the user's copy.

What cannot run inside the test suite is stood in for: the quick start's virtual
environment (tests/test_install.py makes a real one) is a `.venv/bin/` whose `runner`
is the one installed for the tests, `python3 -m venv .venv` and `pip install .` accept
exactly those commands and do nothing, and `bash tests/run.sh` (this suite itself) is
checked with `bash -n`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.junit_xml import parse_junit

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PIP_STAND_IN = """#!/bin/sh
[ "$*" = "install ." ] || [ "$*" = "install runner[distributed]" ] ||
  { echo "README test: unexpected pip $*" >&2; exit 1; }
"""
# The "Scaling out" block names example servers; the test gives it real ones.
EXAMPLE_STORE = "postgresql://runner@db.example/runner"
EXAMPLE_BROKER = "redis://mq.example:6379/0"
PYTHON3_STAND_IN = """#!/bin/sh
[ "$*" = "-m venv .venv" ] && exit 0
exec {python} "$@"
"""
ACTIVATE_STAND_IN = """VIRTUAL_ENV={venv}
export VIRTUAL_ENV
PATH="$VIRTUAL_ENV/bin:$PATH"
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
    for expected in (
        "python3 -m venv .venv",
        ". .venv/bin/activate",
        "pip install .",
        "runner run",
        "runner job receive",
        "runner job wait",
        "runner job stop",
        "runner job remove",
        "--junit",
        "--format json",
        '--limit "@',
        "--check",
        "--diff",
        "--start-at-job",
        "--tags",
        "--skip-tags",
        "-f 2",
    ):
        assert expected in text, expected
    ci = [where for where, _ in commands if where.endswith("CI")]
    assert len(ci) >= 6  # both CI snippets were found and read
    for heading in ("## CI use", "## Fleet use", "## Jobs"):
        assert heading in README.read_text()


def copy_checkout(dest: Path) -> Path:
    """A copy of the repository as a clone has it, without this run's own files."""
    shutil.copytree(
        ROOT,
        dest,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "__pycache__",
            "*.egg-info",
            "results",
            "bench",
            "build",
            ".pytest_cache",
            ".ruff_cache",
            ".mypy_cache",
        ),
    )
    return dest


def files_under(directory: Path) -> set[str]:
    """Every file and directory under `directory`, relative, but `.venv/` and Python's
    bytecode caches: a background job's worker, `python -m runner.background`, imports
    the `runner/` of its working directory, so from a checkout it writes them there."""
    found = [p.relative_to(directory) for p in directory.rglob("*")]
    return {str(f) for f in found if f.parts[0] != ".venv" and "__pycache__" not in f.parts}


def write_script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def stand_in_venv(checkout: Path) -> None:
    """The quick start's `.venv`, its `runner` the one installed for this test run."""
    venv = checkout / ".venv"
    write_script(venv / "bin" / "pip", PIP_STAND_IN)
    (venv / "bin" / "activate").write_text(ACTIVATE_STAND_IN.format(venv=venv))
    (venv / "bin" / "runner").symlink_to(Path(sys.executable).parent / "runner")


def check_reports(junit: Path, document: Path) -> None:
    """A CI snippet's JUnit report is well-formed and its JSON document has the stats."""
    parse_junit(junit)
    assert "stats" in json.loads(document.read_text())


def _readme_env(tmp_path: Path, checkout: Path) -> dict[str, str]:
    """The environment the README's commands run in: stand-ins for pip and python3's
    venv, a fresh RUNNER_HOME, HOME and temp directories of their own."""
    stand_in_venv(checkout)
    bin_dir = tmp_path / "bin"
    write_script(bin_dir / "pip", PIP_STAND_IN)
    write_script(
        bin_dir / "python3",
        PYTHON3_STAND_IN.format(python=shutil.which("python3") or sys.executable),
    )
    runner_temp, tmp = tmp_path / "runner-temp", tmp_path / "tmp"
    runner_temp.mkdir()
    tmp.mkdir()
    user_home = tmp_path / "user"  # detached jobs' directories default to ~/.runner/jobs
    user_home.mkdir()
    env = {
        **os.environ,
        "HOME": str(user_home),
        "RUNNER_HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp),
        "RUNNER_TEMP": str(runner_temp),
        "PATH": os.pathsep.join(
            [str(bin_dir), str(checkout / ".venv" / "bin"), os.environ["PATH"]]
        ),
    }
    env.pop("CI", None)
    env.pop("RUNNER_DEBUG", None)
    return env


def test_the_scaling_out_commands_run_as_written(tmp_path, pg_url, redis_url):
    """The "Scaling out" block, on a real PostgreSQL and Redis in place of the example
    hosts: a worker in the background, the hello playbook's children on it."""
    (block,) = [script for _, script in readme_commands() if EXAMPLE_BROKER in script]
    checkout = copy_checkout(tmp_path / "repo")
    env = _readme_env(tmp_path, checkout)
    script = block.replace(EXAMPLE_STORE, pg_url).replace(EXAMPLE_BROKER, redis_url)
    script += "\nrunner job list --format json > jobs.json\nkill $! && wait $! || true\n"
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "runner: error" not in proc.stderr
    assert [job["State"] for job in json.loads((checkout / "jobs.json").read_text())] == [
        "Completed"
    ]
    assert "hello from web1" in proc.stdout  # received from the store, as run on the worker


def test_every_readme_command_runs_as_written(tmp_path):
    checkout = copy_checkout(tmp_path / "repo")
    before = files_under(checkout)
    env = _readme_env(tmp_path, checkout)
    runner_temp = Path(env["RUNNER_TEMP"])
    pipelines: dict[str, Path] = {}
    ran = 0
    commands = [(w, s) for w, s in readme_commands() if EXAMPLE_BROKER not in s]
    for where, script in commands:  # "Scaling out" needs servers: its own test, above
        script = script.replace("bash tests/run.sh", "bash -n tests/run.sh")
        cwd = checkout
        if where.endswith("CI"):
            if where not in pipelines:
                pipelines[where] = copy_checkout(tmp_path / f"pipeline{len(pipelines)}")
            cwd = pipelines[where]
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"{where}:\n{script}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr and "runner: error" not in proc.stderr, where
        ran += 1
    assert ran == len(commands) == len(readme_commands()) - 1 > 10
    # the user's checkout stays as cloned, but for the per-host files diagnostics.yml's
    # `results.path` writes (the feature it shows; /results/ is git-ignored)
    assert {f for f in files_under(checkout) - before if f.split("/")[0] != "results"} == set()
    # what the CI snippets promise a pipeline gets: GitHub's reports in $RUNNER_TEMP,
    # GitLab's in its project directory (it takes artifacts from nowhere else) and no more
    assert {p.name for p in runner_temp.iterdir()} == {"run.json", "runner.xml", "failed.retry"}
    check_reports(runner_temp / "runner.xml", runner_temp / "run.json")
    written = {where: files_under(copy) - before for where, copy in pipelines.items()}
    assert sorted(written.values(), key=len) == [
        set(),
        {"reports", "reports/runner.xml", "run.json"},
    ], written
    gitlab = next(copy for where, copy in pipelines.items() if written[where])
    check_reports(gitlab / "reports" / "runner.xml", gitlab / "run.json")
