"""`runner run` as CI calls it: the JSON document, the JUnit XML, exit codes, plain
output in a log, the retry file, check mode and diffs.

Every run here uses local-connection hosts (no SSH server needed) and reads what the
command prints or writes, with real JSON and XML parsers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.cli import RUNNER, CliResult, run_runner, runner_env, start_runner, wait_until
from tests.junit_xml import parse_junit

INVENTORY = """\
alpha ansible_connection=local
beta ansible_connection=local
gamma ansible_connection=local

[web]
alpha
beta
"""

# beta fails its second step; alpha and gamma complete; the third step is skipped on gamma.
MIXED = """\
name: mixed
jobs:
  - name: build
    targets: all
    steps:
      - name: hello
        run: echo hello from {{ inventory_hostname }}
      - name: check
        run: |
          if [ {{ inventory_hostname }} = beta ]; then echo broken beta >&2; exit 7; fi
      - name: web only
        run: echo web
        when: "'web' in group_names"
"""


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.env = runner_env(tmp_path / "home")
        (tmp_path / "hosts.ini").write_text(INVENTORY)

    def write(self, name: str, text: str) -> str:
        path = self.dir / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> CliResult:
        return run_runner(*args, cwd=self.dir, env=env or self.env)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return start_runner(*args, cwd=self.dir, env=self.env)

    def play(self, *args: str, playbook: str = MIXED):
        path = self.write("play.yml", playbook)
        return self("run", path, "-i", "hosts.ini", *args)


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


def _steps(document: dict, job: str) -> dict[str, list[tuple[str, str]]]:
    """host -> [(step name, status)] of one job of a run document."""
    (found,) = [j for j in document["jobs"] if j["Name"] == job]
    return {c["host"]: [(s["name"], s["status"]) for s in c["steps"]] for c in found["children"]}


# -- the JSON document ---------------------------------------------------------------------


def test_json_document_is_all_of_stdout_and_matches_the_run(run):
    proc = run.play("--format", "json")
    assert proc.returncode == 2
    document = json.loads(proc.stdout)  # nothing but the document on stdout
    assert "RECAP" in proc.stderr and "RECAP" not in proc.stdout
    (job,) = document["jobs"]
    assert job["Name"] == "build" and job["State"] == "Failed" and isinstance(job["Id"], int)
    assert {c["host"]: c["State"] for c in job["children"]} == {
        "alpha": "Completed",
        "beta": "Failed",
        "gamma": "Completed",
    }
    assert _steps(document, "build") == {
        "alpha": [("hello", "changed"), ("check", "changed"), ("web only", "changed")],
        "beta": [("hello", "changed"), ("check", "failed")],
        "gamma": [("hello", "changed"), ("check", "changed"), ("web only", "skipped")],
    }
    beta = next(c for c in job["children"] if c["host"] == "beta")
    assert beta["steps"][1]["rc"] == 7
    assert all(s["duration"] >= 0 for c in job["children"] for s in c["steps"])
    stats = document["stats"]
    assert stats["alpha"]["changed"] == 3 and stats["alpha"]["failed"] == 0
    assert stats["beta"]["failed"] == 1 and stats["beta"]["changed"] == 1
    assert stats["gamma"]["skipped"] == 1
    assert {s["unreachable"] for s in stats.values()} == {0}
    assert document["exit_code"] == 2 and document["interrupted"] is False


def test_json_ids_are_the_ids_job_commands_take(run):
    document = json.loads(run.play("--format", "json").stdout)
    job = document["jobs"][0]
    listed = json.loads(run("job", "list", "--format", "json").stdout)
    assert [(j["Id"], j["State"]) for j in listed] == [(job["Id"], job["State"])]
    assert listed[0]["ChildJobs"] == [c["Id"] for c in job["children"]]


# -- JUnit -----------------------------------------------------------------------------------


def test_junit_has_a_testcase_per_job_host_step_and_counts_that_add_up(run, tmp_path):
    proc = run.play("--junit", "reports/junit.xml")
    assert proc.returncode == 2
    root = parse_junit(tmp_path / "reports" / "junit.xml")
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "build"
    cases = suite.findall("testcase")
    assert sorted(c.get("name") for c in cases) == sorted(
        [
            "alpha: hello",
            "alpha: check",
            "alpha: web only",
            "beta: hello",
            "beta: check",
            "gamma: hello",
            "gamma: check",
            "gamma: web only",
        ]
    )
    assert {c.get("classname") for c in cases} == {"build"}
    failed = [c for c in cases if c.find("failure") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert [c.get("name") for c in failed] == ["beta: check"]
    assert [c.get("name") for c in skipped] == ["gamma: web only"]
    failure = failed[0].find("failure")
    assert "7" in failure.get("message")
    assert "broken beta" in failure.text  # the step's stderr tail
    for element in (suite, root):
        assert element.get("tests") == "8"
        assert element.get("failures") == "1"
        assert element.get("skipped") == "1"
        assert element.get("errors") == "0"
        float(element.get("time"))


def test_junit_and_json_together_agree(run, tmp_path):
    proc = run.play("--format", "json", "--junit", "junit.xml")
    document = json.loads(proc.stdout)
    root = parse_junit(tmp_path / "junit.xml")
    steps = [s for j in document["jobs"] for c in j["children"] for s in c["steps"]]
    assert int(root.get("tests")) == len(steps)
    assert int(root.get("failures")) == sum(s["status"] == "failed" for s in steps)


def test_junit_ignored_failure_is_not_a_failure(run, tmp_path):
    proc = run.play(
        "--junit",
        "j.xml",
        "--format",
        "json",
        playbook="""\
        jobs:
          - name: tolerant
            targets: alpha
            steps:
              - {name: may fail, run: "exit 1", ignore_errors: true}
              - {name: after, run: "true"}
        """,
    )
    assert proc.returncode == 0
    root = parse_junit(tmp_path / "j.xml")
    assert root.get("tests") == "2" and root.get("failures") == "0"
    step = json.loads(proc.stdout)["jobs"][0]["children"][0]["steps"][0]
    assert step["status"] == "failed" and step["ignored"] is True


def test_junit_is_well_formed_with_control_characters_anywhere(run, tmp_path):
    """Coloured stderr (what test tools print), control characters in output and in a
    reason: colour sequences are dropped, the rest shown escaped. (Names cannot hold
    control characters: validate refuses them.)"""
    run.write(
        "ctl.yml",
        """\
        all:
          hosts:
            bell:
              ansible_connection: local
        """,
    )
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "log\x01").symlink_to(tmp_path / "victim")
    proc = run(
        "run",
        run.write(
            "ctl-play.yml",
            """\
        jobs:
          - name: "tests job"
            targets: all
            steps:
              - name: "unit tests"
                run: "printf 'out\\\\001\\\\n'
                  ; printf '\\\\033[31mFAIL\\\\033[0m\\\\002\\\\n' >&2; exit 1"
          - name: logged
            targets: all
            steps: [{run: "true"}]
            results: {to: file, path: "out/log\\x01"}
        """,
        ),
        "-i",
        "ctl.yml",
        "--junit",
        "ctl.xml",
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    root = parse_junit(tmp_path / "ctl.xml")
    cases = {(case.get("classname"), case.get("name")): case for case in root.iter("testcase")}
    assert set(cases) == {("tests job", "bell: unit tests"), ("logged", "bell: (host)")}
    failure = cases["tests job", "bell: unit tests"].find("failure")
    assert failure.text == "FAIL\\x02"
    reason = cases["logged", "bell: (host)"].find("failure").get("message")
    assert "out/log\\x01 is a symbolic link" in reason


# -- exit codes ------------------------------------------------------------------------------


def test_exit_0_when_all_ok(run):
    proc = run.play(playbook="jobs: [{name: fine, targets: all, steps: [{run: 'true'}]}]\n")
    assert proc.returncode == 0, proc.stderr


def test_exit_2_when_a_host_failed(run):
    assert run.play().returncode == 2


def test_exit_3_when_a_host_is_unreachable_outranks_failed(run, tmp_path):
    (tmp_path / "hosts.ini").write_text(
        INVENTORY + "ghost ansible_host=127.0.0.1 ansible_port=1 ansible_user=nobody\n"
    )
    proc = run.play("--format", "json")
    assert proc.returncode == 3, proc.stderr
    document = json.loads(proc.stdout)
    ghost = next(c for c in document["jobs"][0]["children"] if c["host"] == "ghost")
    assert ghost["unreachable"] is True and ghost["State"] == "Failed"
    assert document["stats"]["ghost"]["unreachable"] == 1
    assert document["stats"]["beta"]["failed"] == 1  # the failed host is still reported


def test_exit_4_when_the_playbook_is_invalid_and_nothing_on_stdout(run):
    proc = run.play(
        "--format", "json", playbook="jobs: [{name: x, targets: all, steps: [{rnu: ls}]}]\n"
    )
    assert proc.returncode == 4
    assert proc.stdout == ""
    assert "rnu" in proc.stderr


def test_exit_5_on_a_bad_option(run):
    proc = run.play("--format", "xml")
    assert proc.returncode == 5
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_exit_99_when_interrupted_and_the_document_says_so(run, sig):
    path = run.write(
        "slow.yml", "jobs: [{name: slow, targets: alpha, steps: [{run: sleep 300}]}]\n"
    )
    proc = run.start("run", path, "-i", "hosts.ini", "--format", "json")
    wait_until(lambda: _running(run, "slow"), timeout=60, what="the job slow to be Running")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 99, err
    document = json.loads(out)
    assert document["interrupted"] is True and document["exit_code"] == 99
    assert document["jobs"][0]["State"] == "Stopped"


def _running(run: Run, name: str) -> bool:
    listed = json.loads(run("job", "list", "--format", "json").stdout or "[]")
    return any(j["Name"] == name and j["State"] == "Running" for j in listed)


# -- text output -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags", [[], ["-v"], ["-vv"], ["--diff"]], ids=["plain", "v", "vv", "diff"]
)
def test_piped_output_has_no_terminal_control_characters(run, flags):
    env = {k: v for k, v in run.env.items() if k != "CI"}  # not a TTY is enough
    path = run.write("play.yml", MIXED)
    proc = run("run", path, "-i", "hosts.ini", *flags, env=env)
    assert proc.returncode == 2
    for text in (proc.stdout, proc.stderr):
        assert "\x1b" not in text and "\r" not in text
    assert "job 1 build started" in proc.stdout
    assert "failed" in proc.stdout and "beta" in proc.stdout


def test_recap_table_counts_each_host(run):
    lines = run.play().stdout.splitlines()
    recap = lines[lines.index("RECAP") + 1 :]
    assert recap[0].split() == [
        "host",
        "ok",
        "changed",
        "failed",
        "skipped",
        "unreachable",
        "stopped",
        "rescued",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in recap[2:]}
    assert rows == {
        "alpha": ["0", "3", "0", "0", "0", "0", "0"],
        "beta": ["0", "1", "1", "0", "0", "0", "0"],
        "gamma": ["0", "2", "0", "1", "0", "0", "0"],
    }


def test_quiet_prints_only_the_recap(run):
    out = run.play("-q").stdout
    assert out.lstrip().startswith("RECAP")
    assert "started" not in out and "hello" not in out


def test_verbose_shows_commands_and_output_vv_renders_them(run):
    one = run.play("-v").stdout
    assert "alpha $ echo hello from {{ inventory_hostname }}" in one
    assert "alpha | hello from alpha" in one
    assert "beta ! broken beta" in one
    two = run.play("-vv").stdout
    assert "alpha $ echo hello from alpha" in two
    assert "alpha: build connecting" in two


def test_quiet_and_verbose_together_is_a_usage_error(run):
    assert run.play("-q", "-v").returncode == 5


# -- retry file, tags, start-at-job ----------------------------------------------------------


def test_retry_file_lists_failed_hosts_and_limit_at_file_reruns_only_them(run, tmp_path):
    first = run.play("--retry-file", "play.retry")
    assert first.returncode == 2
    assert (tmp_path / "play.retry").read_text() == "beta\n"
    assert "--limit @play.retry" in first.stdout
    again = run.play("--limit", "@play.retry", "--format", "json")
    assert list(_steps(json.loads(again.stdout), "build")) == ["beta"]


def test_retry_file_is_empty_after_a_clean_run(run, tmp_path):
    (tmp_path / "play.retry").write_text("beta\n")
    proc = run.play("--retry-file", "play.retry", "--limit", "alpha")
    assert proc.returncode == 0
    assert (tmp_path / "play.retry").read_text() == ""


TAGGED = """\
jobs:
  - name: first
    targets: alpha
    steps:
      - {name: a, run: "true", tags: [setup]}
      - {name: b, run: "true", tags: [deploy]}
      - {name: c, run: "true"}
  - name: second
    targets: alpha
    needs: [first]
    steps:
      - {name: d, run: "true", tags: [deploy]}
"""


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], {"first": ["a", "b", "c"], "second": ["d"]}),
        (["--tags", "deploy"], {"first": ["b"], "second": ["d"]}),
        (["--skip-tags", "deploy"], {"first": ["a", "c"]}),
        (["--tags", "setup,deploy", "--skip-tags", "setup"], {"first": ["b"], "second": ["d"]}),
        (["--start-at-job", "second"], {"second": ["d"]}),
    ],
    ids=["all", "tags", "skip-tags", "skip-beats-tags", "start-at-job"],
)
def test_tags_skip_tags_and_start_at_job_choose_what_runs(run, flags, expected):
    proc = run.play("--format", "json", *flags, playbook=TAGGED)
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    ran = {j["Name"]: [s["name"] for s in j["children"][0]["steps"]] for j in document["jobs"]}
    assert ran == expected


def test_start_at_an_unknown_job_is_an_error(run):
    proc = run.play("--start-at-job", "nope", playbook=TAGGED)
    assert proc.returncode in (4, 5)
    assert "nope" in proc.stderr and "Traceback" not in proc.stderr


# -- check and diff ----------------------------------------------------------------------------


def _writer(tmp_path: Path) -> str:
    (tmp_path / "motd.j2").write_text("welcome to {{ inventory_hostname }}\nline two\n")
    return f"""\
jobs:
  - name: configure
    targets: alpha
    steps:
      - name: motd
        template: {{src: motd.j2, dest: "{tmp_path}/motd-{{{{ inventory_hostname }}}}"}}
      - name: touch
        run: touch {tmp_path}/touched
"""


def test_check_runs_nothing_and_reports_what_would_run(run, tmp_path):
    proc = run.play("--check", "--format", "json", playbook=_writer(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "touched").exists()
    assert not (tmp_path / "motd-alpha").exists()
    document = json.loads(proc.stdout)
    assert document["check"] is True
    motd, touch = document["jobs"][0]["children"][0]["steps"]
    assert motd["status"] == "changed"  # the file would change
    assert touch["status"] == "skipped"
    assert f"touch {tmp_path}/touched" in touch["error"]
    assert "check mode" in proc.stderr


def test_check_says_ok_when_the_file_is_already_right(run, tmp_path):
    (tmp_path / "motd-alpha").write_text("welcome to alpha\nline two\n")
    proc = run.play("--check", "--format", "json", playbook=_writer(tmp_path))
    motd = json.loads(proc.stdout)["jobs"][0]["children"][0]["steps"][0]
    assert motd["status"] == "ok"


def test_diff_shows_a_unified_diff_then_writes(run, tmp_path):
    (tmp_path / "motd-alpha").write_text("welcome to nowhere\nline two\n")
    proc = run.play("--diff", playbook=_writer(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"--- alpha:{tmp_path}/motd-alpha (before)" in proc.stdout
    assert "-welcome to nowhere" in proc.stdout
    assert "+welcome to alpha" in proc.stdout
    assert " line two" in proc.stdout
    assert (tmp_path / "motd-alpha").read_text() == "welcome to alpha\nline two\n"


def test_check_with_diff_shows_the_diff_and_leaves_the_file(run, tmp_path):
    (tmp_path / "motd-alpha").write_text("old\n")
    proc = run.play("--check", "--diff", playbook=_writer(tmp_path))
    assert "-old" in proc.stdout and "+welcome to alpha" in proc.stdout
    assert (tmp_path / "motd-alpha").read_text() == "old\n"


def test_diff_of_put_against_a_missing_file_shows_it_all_added(run, tmp_path):
    (tmp_path / "app.conf").write_text("port=80\n")
    proc = run.play(
        "--diff",
        playbook=f"""\
        jobs:
          - name: ship
            targets: alpha
            steps:
              - put: {{src: app.conf, dest: {tmp_path}/deployed.conf}}
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert "+port=80" in proc.stdout
    assert (tmp_path / "deployed.conf").read_text() == "port=80\n"


def test_on_a_terminal_a_live_status_line_shows_hosts_in_flight(run):
    """The other side of the plain-output test: a TTY does get the live display."""
    from tests.terminal import run_on_pty

    path = run.write("play.yml", MIXED)
    env = {k: v for k, v in run.env.items() if k != "CI"}
    code, screen = run_on_pty([*RUNNER, "run", path, "-i", "hosts.ini"], run.dir, env)
    assert code == 2
    assert "in flight" in screen and "\x1b[K" in screen
    assert "RECAP" in screen


def test_extra_vars_from_a_file_and_key_value_later_wins(run, tmp_path):
    (tmp_path / "vars.yml").write_text("greeting: from-file\nname: file\n")
    proc = run.play(
        "-e",
        "@vars.yml",
        "-e",
        "name=cli",
        "-v",
        playbook="""\
        jobs:
          - name: greet
            targets: alpha
            steps:
              - run: echo {{ greeting }} {{ name }}
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert "alpha | from-file cli" in proc.stdout
