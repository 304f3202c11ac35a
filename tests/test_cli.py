"""The command line as a user meets it: validate, plan, inventory, and every bad input.

Each bad input must give the right exit code and exactly one line on stderr naming the
file, line and key, never a traceback.
"""

from __future__ import annotations

import json
import os
import resource
import textwrap
from pathlib import Path

import pytest

from tests.cli import CliResult, run_runner

MERGED_OUTPUT = ("sh", "-c", 'exec "$@" 2>&1', "sh")  # `under`: stderr into stdout

ROOT = Path(__file__).resolve().parent.parent
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml"))
LOCAL_INVENTORY = ROOT / "inventory" / "local.ini"


def runner(*args: str, cwd: Path | None = None, home: Path | None = None) -> CliResult:
    """`runner ARGS` in `cwd` (default: this checkout), with RUNNER_HOME `home` if given."""
    return run_runner(*args, home=home, cwd=cwd or ROOT)


def _local_inventory_in(directory: Path) -> str:
    """inventory/local.ini whose hosts keep detached jobs under `directory`, not ~/.runner."""
    path = directory / "local.ini"
    jobs = f"\n[all:vars]\nrunner_job_dir={directory / 'jobs'}\n"
    path.write_text(LOCAL_INVENTORY.read_text() + jobs)
    return str(path)


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def one_error_line(proc: CliResult) -> str:
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


# -- the examples ------------------------------------------------------------------------


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_every_example_validates(playbook):
    proc = runner("validate", str(playbook), "-i", str(LOCAL_INVENTORY))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{playbook}: ok"


# Examples that declare a host's packages and services are run on hosts made for them
# (tests/e2e/test_service_systemd.py), not on this machine.
RUN_HERE = [p for p in PLAYBOOKS if p.name != "webserver.yml"]


@pytest.mark.parametrize("playbook", RUN_HERE, ids=lambda p: p.name)
def test_every_example_plans_and_runs_on_the_local_inventory(playbook, tmp_path):
    plan = runner("plan", str(playbook), "-i", str(LOCAL_INVENTORY), "--format", "json")
    assert plan.returncode == 0, plan.stderr
    rows = json.loads(plan.stdout)["steps"]
    assert rows and all(r["command"] for r in rows)
    run = runner(
        "run",
        str(playbook),
        "-i",
        _local_inventory_in(tmp_path),
        cwd=tmp_path,
        home=tmp_path / "home",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "RECAP" in run.stdout
    listed = json.loads(runner("job", "list", "--format", "json", home=tmp_path / "home").stdout)
    ids = [str(j["Id"]) for j in listed]
    waited = runner("job", "wait", *ids, "--force", "--timeout", "60", home=tmp_path / "home")
    assert waited.returncode == 0, waited.stdout + waited.stderr  # detached ones too
    listed = json.loads(runner("job", "list", "--format", "json", home=tmp_path / "home").stdout)
    assert listed and {j["State"] for j in listed} == {"Completed"}


def test_readme_quick_start_hello_prints_each_host(tmp_path):
    run = runner("run", "playbooks/hello.yml", "-i", "inventory/local.ini", home=tmp_path)
    assert run.returncode == 0
    received = runner("job", "receive", "1", home=tmp_path).stdout
    for host in ("localhost", "web1", "web2", "db1"):
        assert f"[{host}] hello from {host}" in received


def test_plan_renders_variables_and_quotes(tmp_path):
    play = write(
        tmp_path / "p.yml",
        """
        vars:
          who: "it's me"
        jobs:
          - name: greet
            targets: webservers
            steps:
              - run: echo {{ who | quote }} {{ http_port }}
        """,
    )
    proc = runner("plan", play, "-i", str(LOCAL_INVENTORY), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    commands = {r["host"]: r["command"] for r in json.loads(proc.stdout)["steps"]}
    assert commands == {"web1": "echo 'it'\"'\"'s me' 8080", "web2": "echo 'it'\"'\"'s me' 8081"}


def test_extra_vars_beat_playbook_vars(tmp_path):
    play = write(
        tmp_path / "p.yml",
        """
        vars: {x: play}
        jobs:
          - name: j
            targets: localhost
            steps: [{run: "echo {{ x }}"}]
        """,
    )
    proc = runner("plan", play, "-e", "x=cli", "--format", "json")
    assert json.loads(proc.stdout)["steps"][0]["command"] == "echo cli"


def test_inventory_json_and_patterns():
    proc = runner("inventory", "-i", str(LOCAL_INVENTORY), "prod:!web2", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["hosts"] == ["web1", "db1"]
    assert data["groups"]["webservers"] == ["web1"]


def test_pattern_selecting_no_host_is_a_warning_not_an_error(tmp_path):
    play = write(
        tmp_path / "p.yml",
        """
        jobs:
          - name: j
            targets: nosuchgroup
            steps: [{run: "true"}]
        """,
    )
    proc = runner("plan", play, "-i", str(LOCAL_INVENTORY))
    assert proc.returncode == 0
    assert f"warning: {play}:2:5: jobs[0]: pattern 'nosuchgroup' selects no hosts" in proc.stderr


@pytest.mark.parametrize("command", ["run", "plan", "inventory"])
def test_limit_selecting_no_host_is_a_bad_option_exit_5(command, tmp_path):
    """A typo in --limit must not run nothing and pass CI green (ansible-playbook refuses it)."""
    args = [command] + ([] if command == "inventory" else ["playbooks/hello.yml"])
    proc = runner(*args, "-i", str(LOCAL_INVENTORY), "--limit", "nosuch", home=tmp_path)
    assert proc.returncode == 5, proc.output
    assert "'nosuch'" in one_error_line(proc)
    assert "RECAP" not in proc.stdout


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_limit_at_an_empty_retry_file_selects_no_host_exit_5(content, tmp_path):
    """The README's loop `run --retry-file F || run --limit @F`: a first run that failed
    without a failed host leaves F empty; the second must neither take every host nor
    exit 0, hiding the failure."""
    retry = tmp_path / "play.retry"
    retry.write_text(content)
    args = ("run", "playbooks/hello.yml", "-i", str(LOCAL_INVENTORY), "--limit", f"@{retry}")
    proc = runner(*args, home=tmp_path)
    assert proc.returncode == 5, proc.output
    assert f"@{retry}" in one_error_line(proc)
    assert json.loads(runner("job", "list", "--format", "json", home=tmp_path).stdout) == []


@pytest.mark.parametrize("name", ["fifo", "/dev/zero", "large"])
def test_limit_at_a_file_that_is_no_host_list_is_one_line_exit_5(name, tmp_path):
    """A FIFO would wait for ever, /dev/zero fill the memory (here bounded to 2 GB), a
    huge file be read whole: each is a bad --limit, named, before anything runs."""
    path = Path(name) if name.startswith("/") else tmp_path / name
    if name == "fifo":
        os.mkfifo(path)
    elif name == "large":
        path.write_bytes(b"web1\n" * (1 << 20))  # 5 MB of host names
    args = ("run", "playbooks/hello.yml", "-i", str(LOCAL_INVENTORY), "--limit", f"@{path}")
    proc = run_runner(*args, home=tmp_path, cwd=ROOT, timeout=60, preexec_fn=at_most_2_gb)
    assert proc.returncode == 5, proc.output
    assert f"@{path}" in one_error_line(proc)
    assert json.loads(runner("job", "list", "--format", "json", home=tmp_path).stdout) == []


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
@pytest.mark.parametrize("given", ["playbook", "inventory", "extra vars"])
def test_a_fifo_or_device_as_an_input_file_is_one_line_not_a_hang(given, special, tmp_path):
    """Opening a FIFO waits for a writer and /dev/zero never ends: named as what they
    are, with the exit code of where they were given, before anything runs."""
    path = Path(special) if special.startswith("/") else tmp_path / special
    if special == "fifo":
        os.mkfifo(path)
    args, code = {
        "playbook": (("validate", str(path)), 4),
        "inventory": (("inventory", "-i", str(path)), 4),
        "extra vars": (("plan", "playbooks/hello.yml", "-e", f"@{path}"), 5),
    }[given]
    proc = run_runner(*args, home=tmp_path, cwd=ROOT, timeout=60, preexec_fn=at_most_2_gb)
    assert proc.returncode == code, proc.output
    line = one_error_line(proc)
    assert str(path) in line and "not a regular file" in line, line


def at_most_2_gb() -> None:
    """A `preexec_fn`: a command that fills the memory fails instead of swapping."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


UNUSED_VARS_INVENTORY = """
[web]
w1 ansible_connection=local ansible_foo_bar=1
w2 ansible_connection=local

[db]
d1 ansible_connection=local ansible_ssh_common_args='-o ServerAliveInterval=5'

[all:vars]
ansible_python_interpreter=/usr/bin/python3
"""
UNUSED_VARS_WARNINGS = {  # what is said, where: FILE:LINE and the host or group
    "ansible_python_interpreter": ":9: group all: ",
    "ansible_foo_bar": ":2: host w1: ",
    "ServerAliveInterval=5": ":6: host d1: ansible_ssh_common_args: ",
}


def _warnings_in(text: str, inv: str) -> dict[str, str]:
    """Each expected warning's line in `text`, checked to be there exactly once."""
    found = {}
    for what, where in UNUSED_VARS_WARNINGS.items():
        lines = [line for line in text.splitlines() if what in line]
        assert len(lines) == 1, (what, text)
        assert lines[0].startswith(f"warning: {inv}{where}"), lines[0]
        found[what] = lines[0]
    return found


def test_inventory_warnings_come_first_on_stderr_once_naming_where(tmp_path):
    inv = write(tmp_path / "inv.ini", UNUSED_VARS_INVENTORY)
    play = str(ROOT / "playbooks" / "hello.yml")
    run = runner("run", play, "-i", inv, home=tmp_path)
    assert run.returncode == 0, run.output
    _warnings_in(run.stderr, inv)
    assert "warning" not in run.stdout
    # One stream for both: every warning is said before the first job starts.
    merged = run_runner("run", play, "-i", inv, home=tmp_path, under=MERGED_OUTPUT).stdout
    first_job = merged.index("started")
    assert all(merged.index(line) < first_job for line in _warnings_in(merged, inv).values())
    for args in (["plan", play], ["inventory"]):
        proc = runner(*args, "-i", inv, home=tmp_path)
        assert proc.returncode == 0, proc.output
        _warnings_in(proc.stderr, inv)


def test_inventory_warnings_skip_the_hosts_a_limit_leaves_out(tmp_path):
    inv = write(tmp_path / "inv.ini", UNUSED_VARS_INVENTORY)
    play = str(ROOT / "playbooks" / "hello.yml")
    for args in (["run", play], ["plan", play], ["inventory"]):
        proc = runner(*args, "-i", inv, "--limit", "w2", home=tmp_path)
        assert proc.returncode == 0, proc.output
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "ansible_python_interpreter" in warnings[0], proc.stderr


def test_validate_reports_every_bad_file_not_only_the_first(tmp_path):
    bad1 = write(tmp_path / "a.yml", "jobs: []\n")
    bad2 = write(tmp_path / "b.yml", "jobz: 1\n")
    proc = runner("validate", bad1, str(PLAYBOOKS[0]), bad2)
    assert proc.returncode == 4
    assert proc.stderr.count("\n") == 2
    assert bad1 in proc.stderr and bad2 in proc.stderr
    assert f"{PLAYBOOKS[0]}: ok" in proc.stdout


# -- bad inputs --------------------------------------------------------------------------

STEP_JOB = """
jobs:
  - name: j
    targets: all
    steps:
      - {step}
"""

BAD_PLAYBOOK_RUNS = {
    "undefined variable in run": (
        STEP_JOB.format(step='run: "echo {{ nope }}"'),
        ":5:9: jobs[0].steps[0]",
        "'nope'",
    ),
    "undefined variable in when": (
        STEP_JOB.format(step='{run: "true", when: "missing_flag"}'),
        ":5:9: jobs[0].steps[0]",
        "'missing_flag'",
    ),
    "undefined attribute": (
        STEP_JOB.format(step='run: "echo {{ groups.nosuch }}"'),
        ":5:9: jobs[0].steps[0]",
        "nosuch",
    ),
    "template syntax error": (
        STEP_JOB.format(step='run: "echo {{ x"'),
        ":5:9: jobs[0].steps[0]",
        "syntax error",
    ),
    "loop that is not a list": (
        STEP_JOB.format(step='{run: "echo {{ item }}", loop: "{{ 5 }}"}'),
        ":5:9: jobs[0].steps[0]",
        "loop must be a list",
    ),
    "undefined variable in results path": (
        """
        jobs:
          - name: j
            targets: all
            steps: [{run: "true"}]
            results: {to: file, path: "out/{{ nothere }}.log"}
        """,
        ":2:5: jobs[0]",
        "'nothere'",
    ),
    "bad host pattern": (
        """
        jobs:
          - name: j
            targets: "webservers[7]"
            steps: [{run: "true"}]
        """,
        ":2:5: jobs[0].targets",
        "webservers[7]",
    ),
    "misspelt step key": (STEP_JOB.format(step='rnu: "true"'), ":5:9: jobs[0].steps[0]", "'run'"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLAYBOOK_RUNS))
def test_bad_playbook_gives_exit_4_and_one_located_line(case, tmp_path):
    text, where, what = BAD_PLAYBOOK_RUNS[case]
    play = write(tmp_path / "bad.yml", text)
    for command in (["plan", play], ["run", play], ["validate", play]):
        proc = runner(*command, "-i", str(LOCAL_INVENTORY), home=tmp_path / "home")
        assert proc.returncode == 4, (command, proc.stdout, proc.stderr)
        line = one_error_line(proc)
        assert line.startswith(play + where), line
        assert what in line
    jobs = runner("job", "list", "--format", "json", home=tmp_path / "home")
    assert json.loads(jobs.stdout) == []  # an invalid playbook starts nothing


def test_missing_inventory_file_exit_4(tmp_path):
    proc = runner("plan", str(PLAYBOOKS[0]), "-i", str(tmp_path / "nope.ini"))
    assert proc.returncode == 4
    assert str(tmp_path / "nope.ini") in one_error_line(proc)


def test_bad_inventory_line_exit_4_with_file_and_line(tmp_path):
    inv = write(tmp_path / "inv.ini", "[web]\nweb1\n[web:vars\nx=1\n")
    proc = runner("inventory", "-i", inv)
    assert proc.returncode == 4
    assert one_error_line(proc).startswith(f"{inv}:3")


@pytest.mark.parametrize("name", ["vars.yml", "", "adir"])
def test_extra_vars_file_that_cannot_be_read_is_a_bad_option_exit_5(name, tmp_path):
    (tmp_path / "adir").mkdir()
    proc = runner("plan", str(PLAYBOOKS[0]), "-e", f"@{tmp_path}/{name}")
    assert proc.returncode == 5, proc.stderr
    assert one_error_line(proc).startswith(f"runner: error: -e @{tmp_path}/{name}: ")


def test_extra_vars_file_with_bad_content_exit_4_at_its_line(tmp_path):
    extra = write(tmp_path / "vars.yml", "a: 1\nb: [\n")
    proc = runner("plan", str(PLAYBOOKS[0]), "-e", f"@{extra}")
    assert proc.returncode == 4, proc.stderr
    assert one_error_line(proc).startswith(f"{extra}:3")


@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("command", ["plan", "run", "validate", "inventory"])
def test_empty_inventory_option_is_a_bad_option_exit_5(command, value, tmp_path):
    """`-i ''` would otherwise read the current directory (playbooks and all) as one."""
    args = [command] + ([] if command == "inventory" else [str(PLAYBOOKS[0])])
    proc = runner(*args, "-i", value, home=tmp_path)
    assert proc.returncode == 5, proc.output
    assert "-i/--inventory" in one_error_line(proc)


@pytest.mark.parametrize(
    "args, prefix",
    [
        (["run", "playbooks/hello.yml", "--vars"], "runner run: error: "),
        (["job", "list", "--zz"], "runner job list: error: "),
        (["inventory", "a", "b"], "runner inventory: error: "),
        (["--bogus"], "runner: error: "),
    ],
)
def test_argument_errors_carry_one_prefix_naming_the_command(args, prefix, tmp_path):
    proc = runner(*args, home=tmp_path)
    assert proc.returncode == 5
    line = one_error_line(proc)
    assert line.startswith(prefix), line
    assert line.count("runner") == 2 and "error:" not in line[len(prefix) :], line


@pytest.mark.parametrize("section", ["vars", "hosts", "children"])
@pytest.mark.parametrize("value", ["5", "true", "[a]"])
def test_yaml_group_section_that_is_no_mapping_exit_4_at_its_line(section, value, tmp_path):
    inv = write(tmp_path / "hosts.yml", f"all:\n  children:\n    web:\n      {section}: {value}\n")
    proc = runner("inventory", "-i", inv)
    assert proc.returncode == 4, proc.output
    line = one_error_line(proc)
    assert line.startswith(f"{inv}:4: web.{section}: "), line


SU_INVENTORIES = {
    "hosts.ini": (
        "[web]\nb1 ansible_become=true\nb2 ansible_become=true ansible_become_method=su\n",
        3,
    ),
    "hosts.yml": ("web:\n  hosts:\n    b1:\n  vars:\n    ansible_become_method: doas\n", 5),
}


@pytest.mark.parametrize("name", sorted(SU_INVENTORIES))
def test_become_method_other_than_sudo_is_refused_alike_by_every_command(name, tmp_path):
    text, number = SU_INVENTORIES[name]
    inv = write(tmp_path / name, text)
    play = str(ROOT / "playbooks" / "hello.yml")
    for args in (["inventory"], ["plan", play], ["run", play], ["validate", play]):
        proc = runner(*args, "-i", inv, home=tmp_path / "home")
        assert proc.returncode == 4, (args, proc.output)
        line = one_error_line(proc)
        assert line.startswith(f"{inv}:{number}: ") and "ansible_become_method" in line, line


def test_a_directory_as_playbook_exit_4(tmp_path):
    proc = runner("validate", str(tmp_path))
    assert proc.returncode == 4
    assert str(tmp_path) in one_error_line(proc)


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        [],
        ["run"],
        ["run", "x.yml", "--forks", "0"],
        ["run", "x.yml", "--forks", "many"],
        ["plan", "x.yml", "-e", "not a pair"],
        ["job", "wait"],
        ["job", "list", "--format", "xml"],
        ["job", "receive"],
        ["plan", "playbooks/hello.yml", "--start-at-job", "nosuchjob"],
    ],
    ids=lambda a: " ".join(a) or "(nothing)",
)
def test_bad_command_line_exits_5_not_argparse_2(args, tmp_path):
    proc = runner(*args, home=tmp_path)
    assert proc.returncode == 5, proc.stderr
    one_error_line(proc)


def test_unknown_job_id_is_a_one_line_error(tmp_path):
    for command in (
        ["job", "show", "42"],
        ["job", "receive", "42"],
        ["job", "stop", "42"],
        ["job", "remove", "42"],
        ["job", "wait", "42"],
    ):
        proc = runner(*command, home=tmp_path)
        assert proc.returncode == 1
        assert "no job with id 42" in one_error_line(proc)


def test_a_job_can_be_named_instead_of_numbered(tmp_path):
    run = runner("run", "playbooks/hello.yml", "-i", "inventory/local.ini", home=tmp_path)
    assert run.returncode == 0
    again = runner("run", "playbooks/hello.yml", "-i", "inventory/local.ini", home=tmp_path)
    newest = json.loads(runner("job", "list", "--format", "json", home=tmp_path).stdout)[-1]
    shown = runner("job", "show", "hello", home=tmp_path)
    assert again.returncode == 0 and f"Id            : {newest['Id']}" in shown.stdout
    missing = runner("job", "receive", "nosuch", home=tmp_path)
    assert missing.returncode == 1
    assert "no job with id or name 'nosuch'" in one_error_line(missing)


def test_version_and_help():
    assert runner("--version").stdout.strip().startswith("runner ")
    proc = runner("--help")
    assert proc.returncode == 0
    for command in ("validate", "plan", "run", "inventory", "job"):
        assert command in proc.stdout
