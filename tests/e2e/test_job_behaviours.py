"""The PowerShell job behaviours (powershell-jobs.md, 1-21) over real sshd hosts.

Every test drives the `runner` command as a user would and reads what it prints.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from e2e_helpers import processes_matching, started_job, tcp_connections, wait_until

BOTH_MODES = True  # each test also runs with its children on two workers (conftest.py)
THREE = "host1:host2:host3"


def _play(cli, steps: str, targets: str = THREE, name: str = "work", extra: str = "") -> str:
    return cli.playbook(
        f"""
        jobs:
          - name: {name}
            targets: "{targets}"
            {extra}
            steps:
"""
        + "".join(f"              - {line}\n" for line in steps.strip().splitlines())
    )


def test_remote_job_over_three_hosts_has_three_children(cli, inventory):
    play = _play(cli, "run: echo hi from {{ inventory_hostname }}")
    proc = cli("run", play, "-i", inventory, check=True)
    assert "job 1 work started" in proc.stdout
    parent = cli.jobs()[0]
    assert parent["State"] == "Completed"
    assert parent["PSJobTypeName"] == "RemoteJob"
    children = [cli.job(i) for i in parent["ChildJobs"]]
    assert sorted(c["Location"] for c in children) == ["host1", "host2", "host3"]
    assert all(c["State"] == "Completed" for c in children)
    data = {(r["host"], r["data"]) for r in cli.receive(parent["Id"])}
    assert data == {(h, f"hi from {h}\n") for h in ("host1", "host2", "host3")}


def test_one_child_failing_fails_the_parent_and_keeps_the_others_output(cli, inventory):
    play = _play(
        cli, "run: echo out-{{ inventory_hostname }}; test {{ inventory_hostname }} != host2"
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    parent = cli.jobs()[0]
    assert parent["State"] == "Failed"
    states = {cli.job(i)["Location"]: cli.job(i)["State"] for i in parent["ChildJobs"]}
    assert states == {"host1": "Completed", "host2": "Failed", "host3": "Completed"}
    hosts = [r["host"] for r in cli.receive(parent["Id"]) if r["stream"] == "stdout"]
    assert sorted(hosts) == ["host1", "host2", "host3"]


def test_one_child_stopped_none_failed_makes_the_parent_stopped(cli, inventory):
    play = _play(
        cli, "run: if [ {{ inventory_hostname }} = host2 ]; then sleep 600.21; fi; echo done"
    )
    run = cli.start("run", play, "-i", inventory)
    parent = started_job(cli, "work")
    child = next(c for c in (cli.job(i) for i in parent["ChildJobs"]) if c["Location"] == "host2")
    wait_until(lambda: processes_matching("sleep 600.21"), what="the remote sleep to start")
    cli("job", "stop", str(child["Id"]), check=True)
    assert run.wait(timeout=60) == 0 or True  # the run ends; its code is checked below
    assert cli.job(child["Id"])["State"] == "Stopped"
    assert cli.job(parent["Id"])["State"] == "Stopped"
    # gone at once locally; a worker's kill is its own process's, reported a moment later
    wait_until(lambda: not processes_matching("sleep 600.21"), 10, "the remote sleep to end")


def test_receive_while_running_returns_output_so_far_and_nothing_twice(cli, inventory):
    play = _play(
        cli,
        "run: echo first; while [ ! -e {{ flag }} ]; do sleep 0.05; done; echo second",
        targets="host1",
    )
    flag = cli.cwd / "go"
    run = cli.start("run", play, "-i", inventory, "-e", f"flag={flag}")
    parent = started_job(cli, "work")
    wait_until(lambda: cli.receive(parent["Id"], "--keep"), what="first output")
    assert [r["data"] for r in cli.receive(parent["Id"])] == ["first\n"]
    assert cli.receive(parent["Id"]) == []
    flag.touch()
    assert run.wait(timeout=60) == 0
    assert [r["data"] for r in cli.receive(parent["Id"])] == ["second\n"]


def test_receive_keep_twice_returns_the_same_and_has_more_data_stays_true(cli, inventory):
    cli("run", _play(cli, "run: echo kept", targets="host1"), "-i", inventory, check=True)
    first = cli.receive(1, "--keep")
    assert [r["data"] for r in first] == ["kept\n"]
    assert cli.receive(1, "--keep") == first
    assert cli.job(1)["HasMoreData"] is True


def test_receive_then_receive_returns_nothing_and_has_more_data_false(cli, inventory):
    cli("run", _play(cli, "run: echo once", targets="host1"), "-i", inventory, check=True)
    assert [r["data"] for r in cli.receive(1)] == ["once\n"]
    assert cli.receive(1) == []
    assert cli.job(1)["HasMoreData"] is False
    text = cli("job", "receive", "1", check=True)
    assert text.stdout == ""


def test_receive_wait_streams_until_the_job_ends(cli, inventory):
    play = _play(cli, "run: for i in 1 2 3; do echo line$i; sleep 0.3; done", targets="host1")
    run = cli.start("run", play, "-i", inventory)
    parent = started_job(cli, "work")
    proc = cli("job", "receive", str(parent["Id"]), "--wait", check=True)
    assert proc.stdout == "line1\nline2\nline3\n"
    assert cli.job(parent["Id"])["State"] == "Completed"
    run.wait(timeout=30)


def test_stdout_and_stderr_are_kept_apart_and_in_order(cli, inventory):
    play = _play(cli, "run: echo o1; echo e1 >&2; echo o2; sleep 0.1; echo e2 >&2", targets="host1")
    cli("run", play, "-i", inventory, check=True)
    records = cli.receive(1)
    out = "".join(r["data"] for r in records if r["stream"] == "stdout")
    err = "".join(r["data"] for r in records if r["stream"] == "stderr")
    assert out == "o1\no2\n"
    assert err == "e1\ne2\n"
    text = cli("job", "receive", "1", "--keep")
    assert text.stdout == ""  # consumed above
    assert all(r["host"] == "host1" for r in records)


def test_wait_for_two_jobs_and_wait_any(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: quick
            targets: host1
            steps:
              - run: sleep 0.2
          - name: slow
            targets: host2
            steps:
              - run: sleep 2
        """
    )
    run = cli.start("run", play, "-i", inventory)
    # Listed in any state: a warm worker may end `quick` before a poll sees it Running.
    listed = lambda name: next((j for j in cli.jobs() if j["Name"] == name), None)  # noqa: E731
    quick = wait_until(lambda: listed("quick"), what="job quick listed")
    slow = wait_until(lambda: listed("slow"), what="job slow listed")
    proc = cli("job", "wait", str(quick["Id"]), str(slow["Id"]), "--any", check=True)
    assert cli.job(quick["Id"])["State"] == "Completed"
    assert "quick" in proc.stdout
    cli("job", "wait", str(quick["Id"]), str(slow["Id"]), check=True)
    assert cli.job(slow["Id"])["State"] == "Completed"
    run.wait(timeout=30)


def test_wait_timeout_exits_124_and_lists_the_running_job(cli, inventory):
    run = cli.start("run", _play(cli, "run: sleep 10", targets="host1"), "-i", inventory)
    parent = started_job(cli, "work")
    proc = cli("job", "wait", str(parent["Id"]), "--timeout", "1")
    assert proc.returncode == 124
    assert "Running" in proc.stdout and "work" in proc.stdout
    cli("job", "stop", str(parent["Id"]), check=True)
    run.wait(timeout=30)


def test_stop_running_remote_job_ends_its_remote_process(cli, inventory):
    run = cli.start("run", _play(cli, "run: sleep 600.12", targets="host1"), "-i", inventory)
    parent = started_job(cli, "work")
    wait_until(lambda: processes_matching("sleep 600.12"), what="the remote sleep to start")
    proc = cli("job", "stop", str(parent["Id"]), check=True)
    assert "Stopped" in proc.stdout
    assert cli.job(parent["Id"])["State"] == "Stopped"
    assert processes_matching("sleep 600.12") == []
    run.wait(timeout=30)
    assert run.returncode == 99  # stopped from outside: interrupted, never a clean 0


def test_stop_finished_job_changes_nothing(cli, inventory):
    cli("run", _play(cli, "run: 'true'", targets="host1"), "-i", inventory, check=True)
    proc = cli("job", "stop", "1")
    assert proc.returncode == 0
    assert cli.job(1)["State"] == "Completed"


def test_remove_running_job_is_refused_then_force_stops_and_removes(cli, inventory):
    run = cli.start("run", _play(cli, "run: sleep 600.13", targets="host1"), "-i", inventory)
    parent = started_job(cli, "work")
    proc = cli("job", "remove", str(parent["Id"]))
    assert proc.returncode == 1
    assert "Running" in proc.stderr and "finished" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert [j["Id"] for j in cli.jobs()] == [parent["Id"]]
    cli("job", "remove", str(parent["Id"]), "--force", check=True)
    assert cli.jobs() == []
    assert processes_matching("sleep 600.13") == []
    run.wait(timeout=30)


def test_job_list_filters_by_state_and_name(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: web-ok
            targets: host1
            steps: [{run: "true"}]
          - name: web-bad
            targets: host1
            steps: [{run: "false"}]
          - name: db-ok
            targets: host2
            steps: [{run: "true"}]
        """
    )
    cli("run", play, "-i", inventory)
    assert [j["Name"] for j in cli.jobs("--state", "Failed")] == ["web-bad"]
    assert [j["Name"] for j in cli.jobs("--name", "web*")] == ["web-ok", "web-bad"]
    bad = cli("job", "list", "--state", "Bogus")
    assert bad.returncode == 5 and "unknown state" in bad.stderr


def test_ids_are_unique_and_increasing_across_invocations(cli, inventory):
    play = _play(cli, "run: 'true'", targets="host1:host2")
    cli("run", play, "-i", inventory, check=True)
    cli("run", play, "-i", inventory, check=True)
    ids = [j["Id"] for j in cli.jobs("--children")]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == 6
    cli("job", "remove", "1", check=True)
    cli("run", play, "-i", inventory, check=True)
    assert min(j["Id"] for j in cli.jobs() if j["Id"] > 4) > 6  # a removed id is never reused


def test_thread_and_background_jobs_run_at_the_same_time_as_a_remote_job(cli, inventory):
    step = 'run: "date +%s.%N; sleep 3; date +%s.%N"'
    play = cli.playbook(
        f"""
        jobs:
          - name: remote
            type: remote
            targets: host1
            steps: [{{{step}}}]
          - name: thread
            type: thread
            targets: host1
            steps: [{{{step}}}]
          - name: background
            type: background
            targets: host1
            steps: [{{{step}}}]
        """
    )
    cli("run", play, "-i", inventory, check=True)
    spans = []
    for job in cli.jobs():
        start, end = (float(x) for x in "".join(r["data"] for r in cli.receive(job["Id"])).split())
        spans.append((start, end))
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans  # all three overlap


def test_background_job_runs_in_another_process_than_the_runner(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: bg
            type: background
            targets: host1
            steps: [{local: "echo $PPID; ps -o ppid= -p $PPID"}]
          - name: th
            type: thread
            targets: host1
            steps: [{local: "echo $PPID"}]
        """
    )
    run = cli.start("run", play, "-i", inventory)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, out + err
    worker, worker_parent = (int(x) for x in "".join(r["data"] for r in cli.receive(1)).split())
    thread_shell_parent = int("".join(r["data"] for r in cli.receive(3)).split()[0])
    if cli.workers:  # both ran on a worker: the step's parent is a `runner worker` process
        pids = [w.pid for w in cli.workers]
        assert thread_shell_parent in pids and worker in pids
        return
    assert thread_shell_parent == run.pid  # a thread job's commands are the runner's children
    assert worker != run.pid and worker_parent == run.pid  # a background job has its own process


def test_sigterm_to_runner_stops_attached_jobs_and_their_processes(cli, inventory):
    play = _play(cli, "run: sleep 600.14", targets="host1:host2")
    run = cli.start("run", play, "-i", inventory)
    parent = started_job(cli, "work")
    wait_until(lambda: len(processes_matching("sleep 600.14")) >= 2, what="both sleeps")
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 99
    job = cli.job(parent["Id"])
    assert job["State"] == "Stopped"
    assert all(cli.job(i)["State"] == "Stopped" for i in job["ChildJobs"])
    assert processes_matching("sleep 600.14") == []


def test_sigkill_to_runner_leaves_no_job_running(cli, inventory):
    play = _play(cli, "run: sleep 600.15", targets="host1")
    run = cli.start("run", play, "-i", inventory)
    parent = started_job(cli, "work")
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=10)
    if cli.workers:  # the worker stops it once the runner's heartbeat lapses (6 s here)
        states = lambda: {j["State"] for j in cli.jobs("--children")}  # noqa: E731
        wait_until(lambda: states() == {"Stopped"}, 40, "the child Stopped by its worker")
        assert "runner that started it is gone" in cli("job", "show", str(parent["Id"])).stdout
        wait_until(lambda: not processes_matching("sleep 600.15"), 30, "the step ended")
        return
    jobs = cli.jobs("--children")
    assert {j["State"] for j in jobs} == {"Stopped"}
    assert "ended without stopping" in cli("job", "show", str(parent["Id"])).stdout
    # the orphaned remote command is not ours to leave behind
    for pid in processes_matching("sleep 600.15"):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0)


def test_a_session_is_one_connection_per_host_reused_by_every_job(cli, inventory, fleet):
    play = cli.playbook(
        """
        sessions:
          s:
            targets: host4
        jobs:
          - name: one
            session: s
            steps: [{run: "sleep 0.5"}]
          - name: two
            session: s
            needs: [one]
            steps: [{run: "sleep 0.5"}]
          - name: three
            session: s
            needs: [two]
            steps: [{run: "sleep 0.5"}]
        """
    )
    _, address, port = fleet.hosts[3]
    run = cli.start("run", play, "-i", inventory)
    sockets: set[int] = set()
    on_workers: set[int] = set()
    while run.poll() is None:
        sockets |= tcp_connections(run.pid, address, port)
        for worker in cli.workers:
            on_workers |= tcp_connections(worker.pid, address, port)
        time.sleep(0.02)
    assert run.returncode == 0
    if cli.workers:
        # Each job's child connects from the worker that runs it (a session is not shared
        # across workers: README, "Scaling out"); the controller connects to nothing.
        assert not sockets and on_workers, (sockets, on_workers)
        return
    assert len(sockets) == 1, sockets  # one TCP connection to host4, for all three jobs


def test_unreachable_host_exits_3_and_the_others_finish(cli, inventory, tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text(
        Path(inventory).read_text()
        + "ghost ansible_host=127.0.0.1 ansible_port=1 ansible_user=root\n"
    )
    play = _play(cli, "run: echo ok", targets="host1:ghost:host2")
    proc = cli("run", play, "-i", str(bad))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "ghost" in proc.stdout and "unreachable" in proc.stdout
    states = {cli.job(i)["Location"]: cli.job(i)["State"] for i in cli.jobs()[0]["ChildJobs"]}
    assert states == {"host1": "Completed", "ghost": "Failed", "host2": "Completed"}
