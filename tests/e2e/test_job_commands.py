"""The job commands as PowerShell's job cmdlets behave, over real sshd hosts: HasMoreData,
names with wildcards selecting every job, receive --wait on an unreachable host and
--auto-remove, wait --any, the Get-Job filters, and where a fanned-out thread or
background job's children say they run."""

from __future__ import annotations

import json
import subprocess

from e2e_helpers import processes_matching, started_job, wait_until

BOTH_MODES = True  # each test also runs with its children on two workers (conftest.py)


def _names(jobs: list[dict]) -> list[str]:
    return [j["Name"] for j in jobs]


def _error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _stdout_lines(records: list[dict]) -> list[str]:
    return "".join(r["data"] for r in records if r["stream"] == "stdout").splitlines()


def _end(cli, run, *names: str) -> None:
    """Stop what a test left running and let its `runner run` end (killed if it will not)."""
    for name in names:
        cli("job", "stop", name)
    try:
        run.wait(timeout=60)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait(timeout=10)


# -- HasMoreData ---------------------------------------------------------------------------


def test_has_more_data_is_true_while_a_job_runs_with_nothing_unread(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: busy
            targets: host1
            steps: [{run: "sleep 600.51"}]
        """
    )
    run = cli.start("run", play, "-i", inventory)
    try:
        job = started_job(cli, "busy")
        assert cli.job(job["Id"])["HasMoreData"] is True  # nothing unread, but it runs
        assert _names(cli.jobs("--has-more-data")) == ["busy"]
        assert _names(cli.jobs("--has-more-data", "true")) == ["busy"]
        assert cli.jobs("--has-more-data", "false") == []
    finally:
        _end(cli, run, "busy")
    assert cli.receive(job["Id"]) == []
    assert cli.job(job["Id"])["HasMoreData"] is False  # finished, everything received
    assert _names(cli.jobs("--has-more-data", "false")) == ["busy"]


def test_a_detached_job_has_more_data_before_any_refresh(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: far
            targets: host2
            detach: true
            steps: [{run: "sleep 600.52"}]
        """
    )
    cli("run", play, "-i", inventory, check=True)
    try:
        listed = cli.jobs()  # no --refresh: nobody has reconnected
        assert listed[0]["State"] == "Disconnected"
        assert listed[0]["HasMoreData"] is True
        assert _names(cli.jobs("--has-more-data")) == ["far"]
    finally:
        cli("job", "stop", "far", check=True)
    assert processes_matching("sleep 600.52") == []


# -- receive --wait on a Disconnected job ----------------------------------------------------


def test_receive_wait_returns_at_disconnected_naming_the_unreachable_host(cli, inventory, fleet):
    play = cli.playbook(
        """
        jobs:
          - name: far
            targets: host5
            detach: true
            steps: [{run: "echo begun; sleep 4; echo done"}]
        """
    )
    cli("run", play, "-i", inventory, check=True)
    child = cli.jobs()[0]["ChildJobs"][0]
    wait_until(lambda: _stdout_lines(cli.receive(1, "--keep")) == ["begun"], what="first line")
    fleet.stop_host(4)
    try:
        proc = cli("job", "receive", "1", "--wait", timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "begun\n"
        line = _error_line(proc)
        assert "host5" in line and "Disconnected" in line
        reason = cli.job(child)["Reason"]
        assert "host5" in reason and "reach" in reason
        forced = cli("job", "receive", "1", "--wait", "--force", "--timeout", "1", timeout=60)
        assert forced.returncode == 124
        assert "host5" in forced.stderr
    finally:
        fleet.start_host(4)
    followed = cli("job", "receive", "1", "--wait", "--force", "--timeout", "60", timeout=90)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout == "done\n"
    assert cli.job(1)["State"] == "Completed"


# -- names select every job, with wildcards --------------------------------------------------


def test_a_name_selects_every_job_of_that_name_and_takes_wildcards(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: greet
            targets: host1
            steps: [{run: "echo hello from {{ inventory_hostname }}"}]
        """
    )
    cli("run", play, "-i", inventory, check=True)
    cli("run", play, "-i", inventory, check=True)  # a second job called greet
    show = cli("job", "show", "gr*", check=True).stdout
    assert show.count("greet") >= 2 and "Id            : 1" in show and "Id            : 3" in show
    waited = cli("job", "wait", "GREET", check=True).stdout
    assert waited.count("greet") == 2
    received = cli("job", "receive", "gr?et", "--format", "json", "--keep", check=True).stdout
    assert sorted(r["job"] for r in json.loads(received)) == [2, 4]
    several = json.loads(cli("job", "receive", "1", "3", "--format", "json", check=True).stdout)
    assert _stdout_lines(several) == ["hello from host1", "hello from host1"]
    for action in ("receive", "show", "wait", "stop", "remove"):
        proc = cli("job", action, "nothing*")
        assert proc.returncode == 1, (action, proc.stderr)
        assert "nothing*" in _error_line(proc)
    cli("job", "remove", "greet", check=True)
    assert cli.jobs() == []


def test_stop_by_wildcard_stops_every_matching_job(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: web-a
            targets: host1
            steps: [{run: "sleep 600.61"}]
          - name: web-b
            targets: host2
            steps: [{run: "sleep 600.62"}]
          - name: db
            targets: host3
            steps: [{run: "sleep 600.63"}]
        """
    )
    run = cli.start("run", play, "-i", inventory)
    try:
        for name in ("web-a", "web-b", "db"):
            started_job(cli, name)
        proc = cli("job", "stop", "web*")
        assert proc.returncode == 0, proc.stderr
        states = {j["Name"]: j["State"] for j in cli.jobs()}
        assert states == {"web-a": "Stopped", "web-b": "Stopped", "db": "Running"}
        assert processes_matching("sleep 600.61") == processes_matching("sleep 600.62") == []
    finally:
        _end(cli, run, "db", "web-a", "web-b")


# -- receive --wait --auto-remove ------------------------------------------------------------


def test_receive_wait_auto_remove_removes_the_job_after_its_output(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: counted
            targets: host1
            steps: [{run: "for i in 1 2 3; do echo line$i; sleep 0.3; done"}]
          - name: other
            targets: host2
            steps: [{run: "echo stays"}]
        """
    )
    refused = cli("job", "receive", "1", "--auto-remove")
    assert refused.returncode == 5 and "--wait" in _error_line(refused)
    run = cli.start("run", play, "-i", inventory)
    try:
        job = started_job(cli, "counted")
        proc = cli("job", "receive", "counted", "--wait", "--auto-remove", check=True)
        assert proc.stdout == "line1\nline2\nline3\n"
    finally:
        _end(cli, run)
    assert _names(cli.jobs()) == ["other"]
    assert job["Id"] not in [j["Id"] for j in cli.jobs("--children")]


# -- wait --any ----------------------------------------------------------------------------


def test_wait_any_prints_only_the_job_that_finished(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: quick
            targets: host1
            steps: [{run: "sleep 0.2"}]
          - name: lingering
            targets: host2
            steps: [{run: "sleep 600.71"}]
        """
    )
    run = cli.start("run", play, "-i", inventory)
    try:
        slow = started_job(cli, "lingering")
        jobs = {j["Name"]: j["Id"] for j in cli.jobs()}
        quick = jobs["quick"]
        proc = cli("job", "wait", str(quick), str(slow["Id"]), "--any", "--timeout", "60")
        assert proc.returncode == 0, proc.stderr
        assert "quick" in proc.stdout and "lingering" not in proc.stdout
    finally:
        _end(cli, run, "lingering")


# -- job list filters ----------------------------------------------------------------------


def test_job_list_filters_child_state_command_has_more_data_state_case_and_newest(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: slow-first
            targets: host1
            steps: [{run: "sleep 2; echo slept"}]
          - name: mixed
            targets: "host2:host3"
            steps: [{run: "echo mixed; test {{ inventory_hostname }} = host2"}]
        """
    )
    cli("run", play, "-i", inventory)
    jobs = {j["Name"]: j for j in cli.jobs()}
    assert jobs["mixed"]["State"] == "Failed" and jobs["slow-first"]["State"] == "Completed"
    # -ChildJobState: parents with a child in that state; with --children, those children
    assert _names(cli.jobs("--child-state", "Completed")) == ["slow-first", "mixed"]
    assert _names(cli.jobs("--child-state", "failed")) == ["mixed"]
    with_children = cli.jobs("--child-state", "Failed", "--children")
    assert [j["Location"] for j in with_children] == ["host2,host3", "host3"]
    # -Command: wildcards on the command
    assert _names(cli.jobs("--command", "*SLEEP*")) == ["slow-first"]
    assert _names(cli.jobs("--command", "echo mixed*")) == ["mixed"]
    # states in any case
    assert _names(cli.jobs("--state", "completed")) == ["slow-first"]
    # -Newest: by end time, so the job created first but ended last
    assert _names(cli.jobs("--newest", "1")) == ["slow-first"]
    # -HasMoreData true|false, and the bare flag meaning true
    cli.receive(jobs["mixed"]["Id"])
    assert _names(cli.jobs("--has-more-data", "false")) == ["mixed"]
    assert _names(cli.jobs("--has-more-data", "TRUE")) == ["slow-first"]
    assert _names(cli.jobs("--has-more-data")) == ["slow-first"]
    bad = cli("job", "list", "--has-more-data", "maybe")
    assert bad.returncode == 5 and "maybe" in _error_line(bad)
    bad = cli("job", "list", "--child-state", "Bogus")
    assert bad.returncode == 5 and "Bogus" in _error_line(bad)


# -- thread and background children: Location is the target -------------------------------


def test_fanned_out_thread_and_background_children_are_located_on_their_targets(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: threaded
            type: thread
            targets: "host1:host2"
            steps: [{run: "echo t-{{ inventory_hostname }}"}]
          - name: forked
            type: background
            targets: "host1:host2"
            steps: [{run: "echo b-{{ inventory_hostname }}"}]
        """
    )
    cli("run", play, "-i", inventory, check=True)
    for job in cli.jobs():
        children = [cli.job(i) for i in job["ChildJobs"]]
        assert [c["Location"] for c in children] == ["host1", "host2"]
        records = cli.receive(job["Id"], "--host", "host2")
        assert {r["host"] for r in records} == {"host2"}
        prefix = "t" if job["Name"] == "threaded" else "b"
        assert _stdout_lines(records) == [f"{prefix}-host2"]
        text = cli("job", "receive", str(job["Id"]), check=True).stdout
        assert text == f"[host1] {prefix}-host1\n"
