"""What `runner run` shows is what an Ansible user expects: a failed step's stderr, every
step line on a terminal, background jobs' lines, rendered step labels, check mode's
loops, `tojson` of any variable, every error of `validate`, and controller-only jobs.

Every run here is `python -m runner` on local-connection hosts, read as a user reads it:
through a pipe, or through a real pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests import test_ci_output as ci_output
from tests.cli import RUNNER
from tests.terminal import run_on_pty

_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Run(ci_output.Run):
    """`python -m runner` in a scratch directory with its own RUNNER_HOME; hosts alpha,
    beta (group web) and gamma, all local."""

    def play(  # type: ignore[override]
        self, playbook: str, *args: str
    ) -> subprocess.CompletedProcess[str]:
        return super().play(*args, playbook=playbook)

    def on_terminal(self, playbook: str, *args: str) -> tuple[int, list[str]]:
        """Run on a real pseudo-terminal; the exit code and the lines a user sees there
        (the status line, redrawn in place, taken out)."""
        env = {k: v for k, v in self.env.items() if k != "CI"}
        path = self.write("play.yml", playbook)
        argv = [*RUNNER, "run", path, "-i", "hosts.ini", *args]
        code, screen = run_on_pty(argv, self.dir, env)
        lines = []
        for raw in screen.replace("\r\n", "\n").split("\n"):
            seen = _ESCAPES.sub("", raw.split("\r")[-1])  # what is left after each \r
            if seen.strip() and "in flight" not in seen:
                lines.append(seen)
        return code, lines


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


def _line(lines: list[str], *words: str) -> str:
    """The one line holding every word (in order of the words, split on whitespace)."""
    found = [line for line in lines if all(word in line.split() for word in words)]
    assert len(found) == 1, (words, lines)
    return found[0]


# -- a failed step's stderr ------------------------------------------------------------

NOISY = """\
jobs:
  - name: build
    targets: all
    steps:
      - name: hello
        run: echo hello from {{ inventory_hostname }}
      - name: check
        run: |
          for i in $(seq 1 15); do echo "err line $i" >&2; done
          if [ {{ inventory_hostname }} = beta ]; then exit 7; fi
"""


def test_a_failed_step_shows_the_last_lines_of_its_stderr(run):
    proc = run.play(NOISY)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stdout.splitlines()
    at = lines.index(_line(lines, "failed", "beta", "check", "rc=7"))
    assert lines[at + 1 : at + 11] == [f"    beta ! err line {i}" for i in range(6, 16)]
    assert "err line 5" not in proc.stdout
    assert "gamma ! err line" not in proc.stdout  # a step that succeeded shows none


# -- on a terminal ---------------------------------------------------------------------


def test_on_a_terminal_every_step_result_line_is_shown(run):
    code, lines = run.on_terminal(NOISY)
    assert code == 2
    for host in ("alpha", "beta", "gamma"):
        assert _line(lines, "changed", host, "build", "hello")
    assert _line(lines, "changed", "gamma", "build", "check")
    assert _line(lines, "failed", "beta", "build", "check", "rc=7")
    assert "    beta ! err line 15" in lines
    assert "RECAP" in lines


# -- tojson / to_json ------------------------------------------------------------------


def test_tojson_and_to_json_serialize_any_variable(run):
    proc = run.play(
        """\
        vars:
          since: 2024-01-02
          url: "http://{{ inventory_hostname }}"
        jobs:
          - name: dump
            targets: alpha
            steps:
              - run: >-
                  echo '{{ hostvars[inventory_hostname] | tojson }}' | python3 -c
                  'import json, sys; v = json.load(sys.stdin); print(v["url"], v["since"])'
              - run: echo '{{ hostvars | to_json }}' | python3 -c
                  'import json, sys; print(sorted(json.load(sys.stdin)))'
              - run: echo {{ since | to_json | quote }} {{ groups.web | tojson | quote }}
        """,
        "-v",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alpha | http://alpha 2024-01-02" in proc.stdout
    assert "alpha | ['alpha', 'beta', 'gamma']" in proc.stdout
    assert 'alpha | "2024-01-02" ["alpha", "beta"]' in proc.stdout


def test_hostvars_hold_each_hosts_variables_and_not_the_jobs_name(run):
    """`job` names the running job, as Ansible's `ansible_play_name` names the play; like
    it (and like a job's `vars`, as a play's), it is not one of a host's `hostvars`."""
    proc = run.play(
        """\
        vars: {pv: from-playbook}
        jobs:
          - name: build
            targets: alpha
            vars: {jv: from-job}
            steps:
              - run: >-
                  echo job={{ job }} own={{ hostvars[inventory_hostname].job | default('none') }}
                  beta={{ hostvars.beta.job | default('none') }}
                  jv={{ hostvars[inventory_hostname].jv | default('none') }}
                  pv={{ hostvars.beta.pv }}
              - run: >-
                  echo '{{ hostvars[inventory_hostname] | tojson }}' | python3 -c
                  'import json, sys; print("keys:", "job" in json.load(sys.stdin))'
        """,
        "-v",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alpha | job=build own=none beta=none jv=none pv=from-playbook" in proc.stdout
    assert "alpha | keys: False" in proc.stdout


# -- runner validate -------------------------------------------------------------------

ANSIBLE_HABITS = """\
jobs:
  - name: one
    hosts: all
    tasks:
      - run: uptime
  - name: two
    targets: all
    steps:
      - shell: uptime
        become: true
      - command: ls
  - name: three
    targets: all
    timeout: ten
    steps:
      - run: uptime
"""


def test_validate_reports_every_error_of_a_file_by_line_with_ansible_words(run):
    path = run.write("play.yml", ANSIBLE_HABITS)
    proc = run("validate", path)
    assert proc.returncode == 4
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"{path}:3:5: jobs[0]: unknown key 'hosts' (did you mean 'targets'?)",
        f"{path}:4:5: jobs[0]: unknown key 'tasks' (did you mean 'steps'?)",
        f"{path}:9:9: jobs[1].steps[0]: unknown key 'shell' (did you mean 'run'?)",
        f"{path}:10:9: jobs[1].steps[0]: unknown key 'become' (did you mean 'sudo'?)",
        f"{path}:11:9: jobs[1].steps[1]: unknown key 'command' (did you mean 'run'?)",
        f"{path}:14:5: jobs[2].timeout: expected a number, got the string 'ten'",
    ]
    ran = run("run", path, "-i", "hosts.ini")  # a run names the first and starts nothing
    assert ran.returncode == 4
    assert ran.stderr.splitlines() == [proc.stderr.splitlines()[0]]


ANSIBLE_HABITS_AT_OTHER_LEVELS = """\
hosts: all
jobs:
  - name: one
    targets: all
    become: true
    steps:
      - run: uptime
"""


def test_validate_suggests_the_key_an_ansible_word_stands_for_and_where_it_goes(run):
    path = run.write("play.yml", ANSIBLE_HABITS_AT_OTHER_LEVELS)
    proc = run("validate", path)
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        f"{path}:1:1: unknown key 'hosts' (did you mean 'targets'? a job holds it)",
        f"{path}:5:5: jobs[0]: unknown key 'become' (did you mean 'sudo'? a step holds it)",
    ]


def test_validate_reports_every_error_of_the_checks_after_the_schema(run):
    path = run.write(
        "play.yml",
        """\
        jobs:
          - name: a
            targets: all
            needs: [zz]
            steps:
              - run: "{{ x"
          - name: a
            targets: all
            steps:
              - run: ok
                when: "{{ y"
        """,
    )
    proc = run("validate", path)
    assert proc.returncode == 4
    lines = proc.stderr.splitlines()
    assert [line.split(": ")[0:2] for line in lines] == [
        [f"{path}:4:13", "jobs[0].needs[0]"],
        [f"{path}:6:9", "jobs[0].steps[0].run"],
        [f"{path}:7:5", "jobs[1].name"],
        [f"{path}:11:9", "jobs[1].steps[0].when"],
    ]
    assert "needs unknown job 'zz'" in lines[0]
    assert "duplicate job name 'a'" in lines[2]


# -- thread and background jobs without targets ---------------------------------------

ON_THE_CONTROLLER = """\
jobs:
  - name: in-thread
    type: thread
    steps:
      - run: echo thread on {{ inventory_hostname }} in $PPID
  - name: in-background
    type: background
    steps:
      - run: echo background on {{ inventory_hostname }}
"""


def test_thread_and_background_jobs_without_targets_run_once_on_the_controller(run):
    proc = run.play(ON_THE_CONTROLLER, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    jobs = {job["Name"]: job for job in json.loads(proc.stdout)["jobs"]}
    for name in ("in-thread", "in-background"):
        (child,) = jobs[name]["children"]
        assert (child["host"], child["State"]) == ("localhost", "Completed")
    listed = json.loads(run("job", "list", "--children", "--format", "json").stdout)
    assert sorted(job["Location"] for job in listed) == ["localhost"] * 4
    received = json.loads(run("job", "receive", "in-background", "--format", "json").stdout)
    assert [r["data"] for r in received] == ["background on localhost\n"]
    needs_targets = run.play(ON_THE_CONTROLLER.replace("type: thread", "type: remote"))
    assert needs_targets.returncode == 4
    assert "jobs[0]: a job needs 'session' (a named session) or 'targets'" in needs_targets.stderr


# -- background jobs -------------------------------------------------------------------

IN_BACKGROUND = """\
jobs:
  - name: bg
    type: background
    targets: web
    steps:
      - name: greet
        run: echo background on {{ inventory_hostname }}
      - name: break
        run: echo it broke on {{ inventory_hostname }} >&2; exit 3
"""


def test_background_jobs_print_their_step_lines_and_with_v_their_output(run):
    proc = run.play(IN_BACKGROUND)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stdout.splitlines()
    for host in ("alpha", "beta"):
        assert _line(lines, "changed", host, "bg", "|", "greet")
        at = lines.index(_line(lines, "failed", host, "bg", "|", "break", "rc=3"))
        assert lines[at + 1] == f"    {host} ! it broke on {host}"
    verbose = run.play(IN_BACKGROUND, "-v").stdout.splitlines()
    for host in ("alpha", "beta"):
        assert f"    {host} $ echo background on {{{{ inventory_hostname }}}}" in verbose
        assert f"    {host} | background on {host}" in verbose
        assert f"    {host} ! it broke on {host}" in verbose
        assert _line(verbose, "failed", host, "bg", "|", "break", "rc=3")


# -- step labels and check mode --------------------------------------------------------

LABELS = """\
jobs:
  - name: build
    targets: alpha
    steps:
      - run: echo {{ item }} on {{ inventory_hostname }}
        loop: [one, two, three]
      - run: hostname
        register: name
      - run: echo got {{ name.stdout }} on {{ inventory_hostname }}
      - name: greet {{ inventory_hostname }}
        run: "true"
"""


def test_step_labels_show_the_command_as_rendered_for_each_host(run):
    proc = run.play(LABELS, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    for item in ("one", "two", "three"):
        assert _line(
            lines,
            "changed",
            "alpha",
            "build",
            "|",
            "run:",
            "echo",
            item,
            "on",
            "alpha",
            f"(item={item})",
        )
    assert _line(
        lines, "changed", "alpha", "build", "|", "run:", "echo", "{{", "item", "}}", "on", "alpha"
    )
    got = _line(lines, "changed", "alpha", "build", "|", "run:", "echo", "got")
    assert got.split("| ")[1].split(" (")[0] == f"run: echo got {os.uname().nodename} on alpha"
    assert _line(lines, "changed", "alpha", "build", "|", "greet", "alpha")
    assert "inventory_hostname" not in proc.stderr
    (child,) = json.loads(proc.stdout)["jobs"][0]["children"]
    assert child["steps"][3]["name"] == "greet alpha"  # the store keeps the name shown


def test_check_mode_shows_every_item_of_a_loop_and_registered_values_as_written(run):
    proc = run.play(LABELS, "--check")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for item in ("one", "two", "three"):
        line = _line(lines, "skipped", "alpha", f"(item={item})")
        assert f"check mode: not run (run: echo {item} on alpha)" in line
    line = _line(lines, "skipped", "alpha", "build", "|", "run:", "echo", "got")
    written = "run: echo got {{ name.stdout }} on {{ inventory_hostname }}"
    assert f"check mode: not run ({written})" in line  # as written, as `plan` shows it


NO_LOG_LOOP = """\
jobs:
  - name: build
    targets: alpha
    steps:
      - name: use a token
        run: echo {{ item }}
        loop: [tok-AAA, tok-BBB]
        no_log: true
      - run: echo {{ item }}
        loop: [one, two, three]
        when: item != 'two'
"""


def test_a_no_log_loop_never_shows_its_items(run):
    plan = run("plan", run.write("play.yml", NO_LOG_LOOP), "-i", "hosts.ini")
    assert plan.returncode == 0 and "tok-" not in plan.stdout, plan.stdout
    for args in ((), ("-v",), ("-vv",)):
        proc = run.play(NO_LOG_LOOP, *args)
        assert proc.returncode == 0, proc.stderr
        assert "tok-" not in proc.stdout + proc.stderr, proc.stdout
        # the step still shows a line per item, named as written
        assert len([x for x in proc.stdout.splitlines() if "| use a token" in x]) == 3


def test_a_loop_item_whose_when_is_false_is_shown_skipped_as_plan_shows_it(run):
    plan = run("plan", run.write("play.yml", NO_LOG_LOOP), "-i", "hosts.ini")
    assert _line(plan.stdout.splitlines(), "alpha", "(skipped:", "when", "is", "false)")
    proc = run.play(NO_LOG_LOOP)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert _line(lines, "skipped", "alpha", "build", "(item=two)")
    for item in ("one", "three"):
        assert _line(lines, "changed", "alpha", "build", f"(item={item})")
    # The recap counts steps, as Ansible's does: a loop is skipped when all its items are.
    recap = proc.stdout.split("RECAP", 1)[1]
    (row,) = [line.split() for line in recap.splitlines() if line.startswith("alpha")]
    assert row[1:3] == ["0", "2"] and row[4] == "0"
