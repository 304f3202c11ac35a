"""No one let in: injected values never run as shell, paths built from variables stay in
their directory, secrets appear in no artifact, and what the runner writes is private."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path

import pytest

from tests.cli import CliResult, run_runner
from tests.cli import runner_env as user_env
from tests.junit_xml import parse_junit

EVIL = 'x\'; touch PWNED1; echo "$(touch PWNED2)" `touch PWNED3` \\\n touch PWNED4 #'


def runner(work: Path, *args: str) -> CliResult:
    return runner_env(work, {}, *args)


def runner_env(work: Path, env: dict[str, str], *args: str) -> CliResult:
    """`runner ARGS` in `work` as a user starts it, with `env` added to the environment."""
    return run_runner(*args, cwd=work, env=user_env(work / "home", **env))


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    write(
        tmp_path / "hosts.yml",
        f"""
        all:
          hosts:
            web1:
              ansible_connection: local
              evil: {json.dumps(EVIL)}
        """,
    )
    return tmp_path


def _pwned(work: Path) -> list[str]:
    return sorted(p.name for p in work.rglob("PWNED*"))


# -- injection ----------------------------------------------------------------------------


def test_injected_inventory_and_extra_vars_never_run_when_quoted_or_in_env(work):
    (work / "vars.yml").write_text(json.dumps({"evil2": EVIL.replace("PWNED", "PWNEDX")}))
    play = write(
        work / "play.yml",
        """
        jobs:
          - name: safe
            targets: web1
            steps:
              - run: "printf '%s' {{ evil | quote }}"
              - run: printf '%s' "$EVIL"
                env: {EVIL: "{{ evil }}"}
              - run: "printf '%s' {{ evil2 | quote }}"
              - run: pwd
                cwd: "{{ dir }}"
        """,
    )
    weird_dir = work / "dir $(touch PWNED5) `x`"
    weird_dir.mkdir()
    proc = runner(
        work,
        "run",
        str(play),
        "-i",
        "hosts.yml",
        "-e",
        "@vars.yml",
        "-e",
        json.dumps({"dir": str(weird_dir)}),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _pwned(work) == []
    records = json.loads(runner(work, "job", "receive", "1", "--format", "json").stdout)
    by_step = {}
    for r in records:
        by_step[r["step"]] = by_step.get(r["step"], "") + r["data"]
    assert by_step[0] == EVIL and by_step[1] == EVIL
    assert by_step[2] == EVIL.replace("PWNED", "PWNEDX")
    assert by_step[3].strip() == str(weird_dir)


def test_a_value_cannot_reach_python_through_the_template_engine(work):
    play = write(
        work / "play.yml",
        """
        jobs:
          - name: j
            targets: web1
            steps:
              - run: "echo {{ payload }}"
        """,
    )
    payload = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    proc = runner(work, "run", str(play), "-i", "hosts.yml", "-e", json.dumps({"payload": payload}))
    assert proc.returncode == 4  # refused while planning: nothing runs
    assert "jobs[0].steps[0]: template error: access to attribute '__class__'" in proc.stderr
    assert "unsafe" in proc.stderr
    assert json.loads(runner(work, "job", "list", "--format", "json").stdout) == []


def test_only_an_unquoted_value_written_into_run_by_the_author_runs(work):
    """The one documented way a value becomes shell: the author wrote it into `run:`
    without `| quote`. This is what `| quote` is for."""
    play = write(
        work / "play.yml",
        """
        jobs:
          - name: j
            targets: web1
            steps:
              - run: "echo {{ value }}"
        """,
    )
    runner(
        work, "run", str(play), "-i", "hosts.yml", "-e", json.dumps({"value": "x; touch PWNED9"})
    )
    assert _pwned(work) == ["PWNED9"]


def _ssh_home(work: Path) -> dict[str, str]:
    """A HOME whose ~/.ssh/config has the `Match exec ... %h` line of a bastion set-up:
    paramiko's SSHConfig.lookup runs it through a shell with the host name as %h."""
    home = work / "userhome"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f'Match exec "true %h && touch {work}/looked-up"\n    User nobody\n'
    )
    return {"HOME": str(home)}


HOSTILE = "x;touch${IFS}%s;#"  # %s: the marker file that must never appear
HOSTILE_INVENTORIES = {
    "yaml host name": ("hosts.yml", 'all:\n  hosts:\n    "{evil}":\n', 3),
    "yaml ansible_host": (
        "hosts.yml",
        'all:\n  hosts:\n    web1:\n      ansible_host: "{evil}"\n',
        4,
    ),
    "ini host name": ("hosts.ini", "[web]\n{evil}\n", 2),
    "ini ansible_host": ("hosts.ini", "[web]\nweb1 ansible_host='{evil}'\n", 2),
    "host_vars ansible_host": ("hosts.ini", "[web]\nweb1\n", 1),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_INVENTORIES))
def test_a_hostile_host_name_never_reaches_ssh_config_match_exec(tmp_path, case):
    """CVE-2023-51385's shape: a host name with shell metacharacters is refused when the
    inventory loads (exit 4, file and line), so `Match exec` never runs it."""
    name, text, line = HOSTILE_INVENTORIES[case]
    marker = tmp_path / "PWNED"
    evil = HOSTILE % marker
    inventory = tmp_path / name
    inventory.write_text(text.format(evil=evil))
    if case == "host_vars ansible_host":
        (tmp_path / "host_vars").mkdir()
        (tmp_path / "host_vars" / "web1.yml").write_text(f"ansible_host: {json.dumps(evil)}\n")
        inventory = tmp_path / "host_vars" / "web1.yml"
    play = write(
        tmp_path / "play.yml",
        """
        jobs:
          - name: j
            targets: all
            steps:
              - run: "true"
        """,
    )
    home = _ssh_home(tmp_path)
    for args in (["inventory"], ["plan", str(play)], ["run", str(play)]):
        proc = runner_env(tmp_path, home, *args, "-i", str(tmp_path / name))
        assert proc.returncode == 4, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith(f"{inventory}:{line}:"), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_ssh_config_match_exec_runs_for_a_valid_host_name(tmp_path):
    """The control for the test above: the same ~/.ssh/config is read and its `Match
    exec` runs when `runner run` connects to a valid name, so a name that got through
    would have run."""
    write(
        tmp_path / "hosts.ini",
        """
        [web]
        good ansible_host=127.0.0.1 ansible_port=1
        """,
    )
    play = write(
        tmp_path / "play.yml",
        """
        jobs:
          - name: j
            targets: all
            steps:
              - run: "true"
        """,
    )
    proc = runner_env(tmp_path, _ssh_home(tmp_path), "run", str(play), "-i", "hosts.ini")
    assert proc.returncode == 3, proc.stdout + proc.stderr  # port 1 refuses: unreachable
    assert (tmp_path / "looked-up").exists()


# -- paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escaped", "a/../../escaped", "../out2/escaped"])
def test_results_path_built_from_a_variable_cannot_leave_its_directory(work, name):
    play = write(
        work / "play.yml",
        """
        jobs:
          - name: j
            targets: web1
            steps: [{run: "echo hi"}]
            results: {to: file, path: "out/{{ where }}.log"}
        """,
    )
    proc = runner(work, "run", str(play), "-i", "hosts.yml", "-e", f"where={name}")
    assert proc.returncode == 4
    line = proc.stderr.strip()
    assert line.startswith(f"{play}:2:5: jobs[0]: results.path") and "leaves 'out/'" in line
    assert "\n" not in line and "Traceback" not in proc.stderr
    assert not (work.parent / "escaped.log").exists() and not (work / "escaped.log").exists()
    assert not (work / "out2").exists()
    assert json.loads(runner(work, "job", "list", "--format", "json").stdout) == []


def test_results_path_from_a_host_name_cannot_climb(work):
    write(work / "hosts.ini", "../../climber ansible_connection=local\n")
    play = write(
        work / "play.yml",
        """
        jobs:
          - name: j
            targets: all
            steps: [{run: "echo hi"}]
            results: {to: file, path: "{{ inventory_hostname }}.log"}
        """,
    )
    proc = runner(work, "run", str(play), "-i", "hosts.ini")
    assert proc.returncode == 4
    assert "results.path '../../climber.log' leaves '.'" in proc.stderr
    assert not (work.parent.parent / "climber.log").exists()


@pytest.mark.parametrize("action", ["put", "template", "get"])
def test_transfer_destinations_built_from_variables_stay_in_their_directory(work, action):
    (work / "src.txt").write_text("content {{ inventory_hostname }}\n")
    (work / "dest").mkdir()
    src = str(work / "src.txt")
    play = write(
        work / "play.yml",
        f"""
        jobs:
          - name: j
            targets: web1
            steps:
              - {action}: {{src: "{src}", dest: "{work}/dest/{{{{ name }}}}"}}
        """,
    )
    for name, ok in (("fine.txt", True), ("../escaped.txt", False), ("a/../../escaped.txt", False)):
        proc = runner(work, "run", str(play), "-i", "hosts.yml", "-e", f"name={name}")
        assert (proc.returncode == 0) is ok, proc.stdout + proc.stderr
        if not ok:
            assert "leaves" in proc.stdout and "escaped.txt" in proc.stdout
    assert (work / "dest" / "fine.txt").exists()
    assert not (work / "escaped.txt").exists()


def test_a_nul_byte_in_a_path_is_refused(work):
    write(work / "vars.yml", 'name: "a\\0b"\n')
    play = write(
        work / "play.yml",
        """
        jobs:
          - name: j
            targets: web1
            steps: [{run: "true"}]
            results: {to: file, path: "out/{{ name }}"}
        """,
    )
    proc = runner(work, "run", str(play), "-i", "hosts.yml", "-e", "@vars.yml")
    assert proc.returncode == 4
    assert "NUL" in proc.stderr


# -- secrets --------------------------------------------------------------------------------

SECRET = "Sup3r-S3cret-Pa55"
TOKEN = "tok-9f8e7d6c5b4a"
NO_LOG = "NoLogValue-1234"


def test_secrets_and_no_log_output_appear_in_no_artifact(work):
    write(work / "hosts.ini", f"web1 ansible_connection=local db_password={SECRET}\n")
    play = write(
        work / "play.yml",
        f"""
        secrets: [db_password, api_token]
        jobs:
          - name: uses-secrets
            targets: web1
            steps:
              - run: "echo password is {{{{ db_password }}}} and token {{{{ api_token }}}}"
              - run: printf '%s\\n' "$PW"
                env: {{PW: "{{{{ db_password }}}}"}}
              - run: echo {NO_LOG}; echo {NO_LOG} >&2
                no_log: true
              - run: "echo bad {{{{ db_password }}}} >&2; exit 3"
          - name: to-file
            targets: web1
            steps: [{{run: "echo file {{{{ api_token }}}}"}}]
            results: {{to: file, path: "results/{{{{ job }}}}.log"}}
        """,
    )
    plan = runner(work, "plan", str(play), "-i", "hosts.ini", "-e", f"api_token={TOKEN}")
    run = runner(
        work,
        "run",
        str(play),
        "-i",
        "hosts.ini",
        "-e",
        f"api_token={TOKEN}",
        "-vv",
        "--junit",
        "report.xml",
        "--format",
        "json",
    )
    assert run.returncode == 2, run.stderr
    parse_junit(work / "report.xml")
    received = runner(work, "job", "receive", "1", "--keep", "--format", "json")
    show = runner(work, "job", "show", "2")
    listing = runner(work, "job", "list", "--children", "--format", "json")
    assert "password is ******** and token ********" in received.stdout
    assert "bad ********" in received.stdout
    artifacts = {
        "plan": plan.stdout + plan.stderr,
        "run": run.stdout + run.stderr,
        "receive": received.stdout + received.stderr,
        "show": show.stdout,
        "list": listing.stdout,
    }
    for path in [work / "report.xml", *work.glob("results/**/*"), *(work / "home").glob("*")]:
        if path.is_file():
            artifacts[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    assert any(name.endswith("jobs.db") for name in artifacts)
    for name, text in artifacts.items():
        for secret in (SECRET, TOKEN, NO_LOG):
            assert secret not in text, f"{secret} leaked into {name}"
    assert "file ********" in (work / "results" / "to-file.log").read_text()


def test_a_detached_job_may_not_use_a_secret_without_no_log(work):
    play = write(
        work / "play.yml",
        """
        secrets: [pw]
        vars: {pw: hidden-value}
        jobs:
          - name: j
            targets: web1
            detach: true
            steps: [{run: "echo {{ pw }}"}]
        """,
    )
    proc = runner(work, "validate", str(play))
    assert proc.returncode == 4
    assert "uses secret 'pw' without no_log" in proc.stderr


# -- permissions ----------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_known_hosts_and_result_files_are_private(work, fleet):
    inventory = fleet.write_inventory(work / "fleet.ini")
    play = write(
        work / "play.yml",
        """
        jobs:
          - name: j
            targets: host1
            steps: [{run: "echo hi"}]
            results: {to: file, path: "results/deep/{{ inventory_hostname }}.log"}
        """,
    )
    old = os.umask(0o022)
    try:
        proc = runner(work, "run", str(play), "-i", str(inventory))
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    home = work / "home"
    assert _mode(home) == 0o700
    assert _mode(home / "jobs.db") == 0o600
    assert _mode(home / "known_hosts") == 0o600
    assert _mode(work / "results" / "deep" / "host1.log") == 0o600
    assert _mode(work / "results" / "deep") == 0o700


# -- secrets in every form, on every path ----------------------------------------------------

LONG_SECRET = "s3cr3t-VALUE-0123456789abcdef"


@pytest.mark.parametrize("first", [1, 10, 20])
def test_a_secret_cut_by_the_record_boundary_is_still_masked(work, first):
    # Output without a newline is cut into records once 64 KiB are pending. The step
    # writes 64 KiB less `first` bytes and the secret's first characters at once, then
    # the rest later: the cut falls inside the secret unless the stream holds it back.
    play = write(
        work / "play.yml",
        f"""
        secrets: [pw]
        vars: {{pw: {LONG_SECRET}}}
        jobs:
          - name: long
            targets: web1
            steps:
              - run: >-
                  printf '%s%s' "$(head -c {65536 - first} /dev/zero | tr '\\0' x)"
                  "$(printf '%s' "$PW" | cut -c1-{first})"; sleep 0.5;
                  printf '%s' "$PW" | cut -c{first + 1}-
                env: {{PW: "{{{{ pw }}}}"}}
        """,
    )
    run = runner(work, "run", str(play), "-i", "hosts.yml", "-v")
    assert run.returncode == 0, run.stderr
    received = runner(work, "job", "receive", "1", "--keep", "--format", "json")
    records = json.loads(received.stdout)
    assert len(records) > 1  # the output really was cut into records
    assert "".join(r["data"] for r in records) == "x" * (65536 - first) + "********\n"
    for shown in (received.stdout, run.stdout + run.stderr):
        assert LONG_SECRET[first:] not in shown and "xxx" + LONG_SECRET[:first] not in shown


def test_a_quoted_secret_holding_a_quote_is_masked_in_plan_and_run(work):
    value = "it's-a-s3cret"
    play = write(
        work / "play.yml",
        """
        secrets: [pw]
        jobs:
          - name: q
            targets: web1
            steps:
              - run: "printf '%s' {{ pw | quote }} >/dev/null; echo {{ pw | to_json }}"
        """,
    )
    extra = ("-e", json.dumps({"pw": value}))
    outputs = {
        "plan": runner(work, "plan", str(play), "-i", "hosts.yml", *extra),
        "plan json": runner(work, "plan", str(play), "-i", "hosts.yml", "--format", "json", *extra),
        "run -vv": runner(work, "run", str(play), "-i", "hosts.yml", "-vv", *extra),
    }
    for name, proc in outputs.items():
        assert proc.returncode == 0, (name, proc.stderr)
        shown = proc.stdout + proc.stderr
        assert "********" in shown, name
        for piece in ("s3cret", "it'\"'\"'s"):
            assert piece not in shown, f"{piece!r} shown by {name}:\n{shown}"


def test_a_registered_secret_is_masked_from_the_moment_it_is_registered(work):
    play = write(
        work / "play.yml",
        """
        secrets: [token]
        jobs:
          - name: reg
            targets: web1
            steps:
              - run: echo gen-tok-424242
                register: token
                no_log: true
              - run: "echo using {{ token.stdout }}; echo again {{ token.stdout }} >&2"
              - run: "echo failing {{ token.stdout }}; exit 3"
        """,
    )
    run = runner(
        work,
        "run",
        str(play),
        "-i",
        "hosts.yml",
        "-vv",
        "--format",
        "json",
        "--junit",
        "report.xml",
    )
    assert run.returncode == 2, run.stderr
    received = runner(work, "job", "receive", "1", "--keep")
    show = runner(work, "job", "show", "1")
    assert "using ********" in received.stdout and "again ********" in received.stderr
    for name, text in {
        "run": run.stdout + run.stderr,
        "receive": received.stdout + received.stderr,
        "show": show.stdout,
        "junit": (work / "report.xml").read_text(),
    }.items():
        assert "gen-tok-424242" not in text, f"the registered secret leaked into {name}"


def test_everything_under_runner_home_is_owner_only(work, fleet):
    """After a run (over SSH, so known_hosts is written), a plan and a validate under
    umask 022, every file under RUNNER_HOME is 0600 and every directory 0700."""
    inventory = fleet.write_inventory(work / "fleet.ini")
    play = write(
        work / "play.yml",
        """
        jobs:
          - name: j
            targets: host1
            steps: [{run: "echo hi"}]
        """,
    )
    old = os.umask(0o022)
    try:
        procs = [
            runner(work, "run", str(play), "-i", str(inventory)),
            runner(work, "plan", str(play), "-i", str(inventory)),
            runner(work, "validate", str(play)),
        ]
    finally:
        os.umask(old)
    assert [p.returncode for p in procs] == [0, 0, 0], [p.stderr for p in procs]
    home = work / "home"
    found = {str(p.relative_to(home)): _mode(p) for p in [home, *home.rglob("*")]}
    assert any(name.startswith("cache/valid-") for name in found)
    wrong = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (home / name).is_dir() else 0o600)
    }
    assert wrong == {}


def test_a_link_planted_at_a_result_file_or_a_get_dest_is_not_written_through(work):
    """A result file that is a link is refused, naming it; a fetched file replaces the
    link. The link's target is untouched either way, and what is written is 0600."""
    victim = work / "victim.txt"
    victim.write_text("precious\n")
    (work / "out").mkdir()
    (work / "out" / "web1.log").symlink_to(victim)
    (work / "fetched.txt").symlink_to(victim)
    (work / "source.txt").write_text("fetched\n")
    play = write(
        work / "play.yml",
        f"""
        jobs:
          - name: logged
            targets: web1
            steps: [{{run: "echo overwritten"}}]
            results: {{to: file, path: "out/{{{{ inventory_hostname }}}}.log"}}
          - name: fetch
            targets: web1
            steps:
              - get: {{src: "{work}/source.txt", dest: "{work}/fetched.txt"}}
        """,
    )
    proc = runner(work, "run", str(play), "-i", "hosts.yml")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "logged: result file out/web1.log is a symbolic link" in proc.stdout
    assert victim.read_text() == "precious\n"
    fetched = work / "fetched.txt"
    assert not fetched.is_symlink()
    assert (fetched.read_text(), _mode(fetched)) == ("fetched\n", 0o600)


def test_a_secret_in_a_jobs_vars_and_in_a_plan_time_error_is_masked(work):
    play = write(
        work / "play.yml",
        """
        secrets: [pw, jv]
        vars: {pw: Hunter2Pass, d: {}}
        jobs:
          - name: j
            targets: web1
            vars: {jv: JobVarSecret}
            steps: [{run: 'echo "jobvar {{ jv }}"'}]
        """,
    )
    run = runner(work, "run", str(play), "-i", "hosts.yml", "-vv")
    plan = runner(work, "plan", str(play), "-i", "hosts.yml", "--format", "json")
    received = runner(work, "job", "receive", "1", "--keep")
    assert run.returncode == 0, run.stderr
    assert "jobvar ********" in received.stdout
    for text in (run.stdout + run.stderr, plan.stdout, received.stdout):
        assert "JobVarSecret" not in text
    bad = write(
        work / "bad.yml",
        """
        secrets: [pw]
        vars: {pw: Hunter2Pass, d: {}}
        jobs:
          - name: k
            targets: web1
            steps: [{run: "echo {{ d[pw] }}"}]
        """,
    )
    for command in ("plan", "run"):
        proc = runner(work, command, str(bad), "-i", "hosts.yml")
        assert proc.returncode == 4, proc.stderr
        assert "Hunter2Pass" not in proc.stdout + proc.stderr
        assert "********" in proc.stderr
