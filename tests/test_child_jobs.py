"""Every kind of child job behaves alike where a user can tell: a `background` job sees the
values earlier jobs registered (and later jobs see its own), shows `--diff` and its step
lines as a thread job does, and a job whose output stays on its target leaves no empty
result file behind.

Every run is `python -m runner` with the repository's inventory/local.ini (local
connections, no SSH server), in a scratch directory with its own RUNNER_HOME.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.cli import CliResult, run_runner, start_runner, wait_until

INVENTORY = str(Path(__file__).resolve().parent.parent / "inventory" / "local.ini")


class Run:
    """`runner ...` in `directory`, with a RUNNER_HOME of its own, and inventory/local.ini
    whose hosts keep detached jobs' directories there too."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.inventory = directory / "local.ini"
        self.inventory.write_text(
            Path(INVENTORY).read_text() + f"\n[all:vars]\nrunner_job_dir={directory / 'jobs'}\n"
        )

    def __call__(self, *args: str) -> CliResult:
        return run_runner(*args, home=self.dir / "home", cwd=self.dir, timeout=120)

    def play(self, playbook: str, *args: str) -> CliResult:
        path = self.dir / "play.yml"
        path.write_text(textwrap.dedent(playbook))
        return self("run", str(path), "-i", str(self.inventory), *args)

    def received(self, job: str) -> str:
        proc = self("job", "receive", job, "--keep", "--format", "json")
        assert proc.returncode == 0, proc.stderr
        return "".join(record["data"] for record in json.loads(proc.stdout))


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


def _lines(proc: CliResult, *words: str) -> list[str]:
    """The lines of stdout holding every word."""
    return [line for line in proc.stdout.splitlines() if all(w in line.split() for w in words)]


REGISTERED = """\
secrets: [token]
jobs:
  - name: first
    type: thread
    targets: web1
    steps:
      - run: echo hello-from-first
        register: greeting
      - run: echo s3cr3t-value
        register: token
  - name: bg
    type: background
    targets: web1
    needs: [first]
    steps:
      - run: echo got {{ greeting.stdout }}
        register: echoed
      - run: echo the token is {{ token.stdout }}
  - name: after
    type: thread
    targets: web1
    needs: [bg]
    steps:
      - run: echo after {{ echoed.stdout }}
"""


def test_background_job_uses_values_registered_before_it_and_later_jobs_use_its_own(run):
    proc = run.play(REGISTERED, "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # its step line names the step as rendered on the host, as any job's does
    assert _lines(proc, "changed", "web1", "bg", "|", "run:", "echo", "got", "hello-from-first")
    assert "    web1 | got hello-from-first" in proc.stdout.splitlines()
    assert run.received("bg").splitlines() == ["got hello-from-first", "the token is ********"]
    assert run.received("after") == "after got hello-from-first\n"
    shown_by_bg = proc.stdout.split("bg started", 1)[1]
    assert "    web1 | the token is ********" in shown_by_bg.splitlines()
    assert "s3cr3t-value" not in shown_by_bg  # a secret registered earlier stays masked


FILES = """\
jobs:
  - name: bg
    type: background
    targets: web1
    steps:
      - template: {src: conf.j2, dest: "{{ playbook_dir }}/out/conf"}
      - put: {src: plain.txt, dest: "{{ playbook_dir }}/out/plain"}
"""


def test_diff_shows_what_template_and_put_change_in_a_background_job(run):
    (run.dir / "conf.j2").write_text("port={{ http_port }}\n")
    (run.dir / "plain.txt").write_text("new plain\n")
    (run.dir / "out").mkdir()
    (run.dir / "out" / "conf").write_text("port=1\n")
    (run.dir / "out" / "plain").write_text("old plain\n")
    check = run.play(FILES, "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert _lines(check, "---", "diff", "web1", "bg", "|", "template:")
    assert _lines(check, "---", "diff", "web1", "bg", "|", "put:")
    changed = [x for x in check.stdout.splitlines() if x[:5] in ("    -", "    +")]
    changed = [x for x in changed if x[:7] not in ("    ---", "    +++")]
    assert changed == ["    -port=1", "    +port=8080", "    -old plain", "    +new plain"]
    assert (run.dir / "out" / "conf").read_text() == "port=1\n"  # check mode wrote nothing
    real = run.play(FILES, "--diff")
    assert real.returncode == 0, real.stdout + real.stderr
    assert "    +port=8080" in real.stdout.splitlines()
    assert (run.dir / "out" / "conf").read_text() == "port=8080\n"
    assert "+port=8080" in run.received("bg")  # the diff is kept in the job's output too


DETACHED = """\
jobs:
  - name: far
    targets: web1
    detach: true
    results: {to: file, path: "results/far-{{ inventory_hostname }}.log"}
    steps:
      - run: echo far away on {{ inventory_hostname }}
  - name: bgd
    type: background
    targets: web2
    detach: true
    results: {to: file, path: "results/bgd-{{ inventory_hostname }}.log"}
    steps:
      - run: echo in the background on {{ inventory_hostname }}
"""


def test_detached_job_with_results_to_file_leaves_no_empty_file(run):
    proc = run.play(DETACHED)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    waited = run("job", "wait", "far", "bgd", "--timeout", "60")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    # kept on its target: the output is fetched into the store, no result file is made
    assert not (run.dir / "results" / "far-web1.log").exists()
    assert run.received("far") == "far away on web1\n"
    # a detached background worker writes its result file itself, all of the output
    result = run.dir / "results" / "bgd-web2.log"
    assert result.read_text() == "in the background on web2\n"
    assert result.stat().st_mode & 0o777 == 0o600


def test_a_background_job_refuses_a_playbook_edited_after_the_run_planned_it(run):
    """The worker plans again from the file: it must run what its run validated, never
    what someone wrote into the file meanwhile."""
    marker = run.dir / "first-started"
    playbook = f"""\
jobs:
  - name: first
    type: thread
    targets: web1
    steps:
      - run: touch {marker}; sleep 3
  - name: bg
    type: background
    targets: web1
    needs: [first]
    steps:
      - run: echo ORIGINAL
"""
    path = run.dir / "play.yml"
    path.write_text(playbook)
    proc = start_runner(
        "run", str(path), "-i", str(run.inventory), "-v", home=run.dir / "home", cwd=run.dir
    )
    try:
        wait_until(marker.exists, timeout=60, what="the first job's step to start")
        path.write_text(playbook.replace("echo ORIGINAL", "echo SWAPPED"))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, out + err
    assert "web1 | SWAPPED" not in out and "web1 | ORIGINAL" not in out  # -v shows output
    assert "the playbook changed after the run planned it" in out
    assert "SWAPPED" not in run.received("bg")


KEPT_IN_CHECK_MODE = """\
jobs:
  - name: det
    targets: localhost
    detach: true
    steps:
      - run: touch {{ playbook_dir }}/det.marker
  - name: kept
    targets: localhost
    results: {to: remote}
    steps:
      - run: touch {{ playbook_dir }}/kept.marker
  - name: bgdet
    type: background
    targets: localhost
    detach: true
    steps:
      - run: touch {{ playbook_dir }}/bgdet.marker
"""


def test_check_mode_starts_nothing_on_the_target_for_jobs_kept_there(run):
    proc = run.play(KEPT_IN_CHECK_MODE, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    waited = run("job", "wait", "det", "kept", "bgdet", "--timeout", "60")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    for job in ("det", "kept", "bgdet"):
        assert not (run.dir / f"{job}.marker").exists(), proc.stdout
        (line,) = _lines(proc, "skipped", "localhost", job, "|")
        assert f"check mode: not run (run: touch {run.dir}/{job}.marker)" in line
    assert not (run.dir / "jobs").exists()  # no job directory was made on the target
    listed = run("job", "list", "--format", "json")
    states = {job["Name"]: job["State"] for job in json.loads(listed.stdout)}
    assert states == {"det": "Completed", "kept": "Completed", "bgdet": "Completed"}
    recap = proc.stdout.split("RECAP (check mode: nothing ran)", 1)[1]
    (row,) = [line.split() for line in recap.splitlines() if line.startswith("localhost")]
    assert row[1:] == ["0", "0", "0", "3", "0", "0", "0"]  # ok changed failed skipped ...


NEEDS_DETACHED_BACKGROUND = """\
jobs:
  - name: slowbg
    type: background
    targets: localhost
    detach: true
    steps:
      - run: sleep 2; echo done > {{ playbook_dir }}/marker
  - name: after
    targets: localhost
    needs: [slowbg]
    steps:
      - run: cat {{ playbook_dir }}/marker
"""


def test_a_job_that_needs_a_detached_background_job_waits_for_it_to_finish(run):
    proc = run.play(NEEDS_DETACHED_BACKGROUND)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert run.received("after") == "done\n"


REGISTER_KEPT = """\
jobs:
  - name: far
    targets: localhost
    {kept}
    steps:
      - run: echo hello
        register: r
  - name: later
    targets: localhost
    needs: [far]
    steps:
      - run: echo {{{{ r.stdout }}}}
"""


@pytest.mark.parametrize("kept", ["detach: true", "results: {to: remote}"])
def test_register_in_a_job_kept_on_its_target_is_refused_at_load_time(run, kept):
    path = run.dir / "play.yml"
    path.write_text(REGISTER_KEPT.format(kept=kept))
    for command in ("validate", "plan", "run"):
        args = [str(path)] if command == "validate" else [str(path), "-i", str(run.inventory)]
        proc = run(command, *args)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith(f"{path}:7:"), line
        assert "register" in line and "stays on the target" in line, line
    assert not (run.dir / "jobs").exists()
