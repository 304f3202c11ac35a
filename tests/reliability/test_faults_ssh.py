"""Faults injected for real over loopback sshd: each is reported by host, never eaten.

A host's sshd killed mid-step, a host that accepts TCP and never speaks, a key the host
does not accept, a host key that changed, a step past its timeout, a full disk under a
detached job, and two hosts down in twenty. Each test checks what a user sees: the exit
code, the one-line reason, the job states and output from `runner job ... --format json`.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.e2e_helpers import processes_matching, wait_until
from tests.fleet import Fleet, sshd_available

EXIT_FAILED = 2
EXIT_UNREACHABLE = 3


def _play(cli, targets: str, *steps: dict, **job_keys: object) -> str:
    """A playbook of one job `work` over `targets` (JSON is YAML)."""
    job = {"name": "work", "targets": targets, **job_keys, "steps": list(steps)}
    return cli.playbook(json.dumps({"jobs": [job]}))


def _children(cli) -> dict[str, dict]:
    """The child jobs by host."""
    return {j["Location"]: j for j in cli.jobs("--children") if not j["ChildJobs"]}


def _hosts_saying(cli, text: str) -> set[str]:
    """Hosts whose output so far holds `text` (read with --keep: nothing is consumed)."""
    jobs = cli.jobs()
    if not jobs:
        return set()
    return {r["host"] for r in cli.receive(jobs[0]["Id"], "--keep") if text in r["data"]}


def _host_line(fleet: Fleet, i: int, **overrides: str) -> str:
    name, address, port = fleet.hosts[i]
    fields = {
        "ansible_host": address,
        "ansible_port": str(port),
        "ansible_user": fleet.user,
        "ansible_ssh_private_key_file": str(fleet.client_key),
        **overrides,
    }
    return name + "".join(f" {k}={v}" for k, v in fields.items())


def _inventory(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(["[fleet]", *lines]) + "\n")
    return str(path)


def test_sshd_killed_mid_step_fails_that_host_unreachable_and_the_others_finish(
    cli, faulty_fleet, tmp_path
):
    pauses = ["0.2", "30.37", "0.2"]  # fault2 is still in its step when its sshd dies
    inventory = _inventory(
        tmp_path / "hosts.ini", [_host_line(faulty_fleet, i, pause=p) for i, p in enumerate(pauses)]
    )
    play = _play(cli, "fleet", {"run": "echo begun; sleep {{ pause }}; echo finished"})
    run = cli.start("run", play, "-i", inventory)
    try:
        wait_until(lambda: "fault2" in _hosts_saying(cli, "begun"), what="fault2 in its step")
        faulty_fleet.stop_host(1)  # its listener and every process it forked, by PID
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        faulty_fleet.start_host(1)
    assert run.returncode == EXIT_UNREACHABLE, stdout + stderr
    children = _children(cli)
    assert children["fault2"]["State"] == "Failed"
    assert "lost while a step ran" in children["fault2"]["Reason"]
    said = next(x for x in stdout.splitlines() if "Failed" in x and "fault2" in x)
    assert "unreachable" in said, stdout
    assert [children[h]["State"] for h in ("fault1", "fault3")] == ["Completed", "Completed"]
    assert not [j for j in cli.jobs("--children") if j["State"] == "Running"]
    lines = {(r["host"], r["data"]) for r in cli.receive(1)}
    assert {("fault1", "finished\n"), ("fault3", "finished\n")} <= lines


def test_host_that_accepts_and_never_answers_times_out_by_name(cli, faulty_fleet, tmp_path):
    address = "127.0.0.250"
    with socket.socket() as silent:
        silent.bind((address, 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever speaks
        port = silent.getsockname()[1]
        line = f"mute1 ansible_host={address} ansible_port={port}"  # no user, no key: defaults
        inventory = _inventory(tmp_path / "hosts.ini", [line])
        play = cli.playbook(
            """
            sessions:
              s: {targets: mute1, connect_timeout: 1}
            jobs:
              - name: work
                session: s
                steps: [{run: "true"}]
            """
        )
        proc = cli("run", play, "-i", inventory, timeout=60)
    assert proc.returncode == EXIT_UNREACHABLE, proc.stdout + proc.stderr
    said = next(x for x in proc.stdout.splitlines() if "Failed" in x and "mute1" in x)
    assert f"{address}:{port} timed out after 1 s" in said, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr  # paramiko's own log stays quiet
    child = _children(cli)["mute1"]
    assert child["State"] == "Failed" and "timed out" in child["Reason"]


@pytest.mark.parametrize("key", ["stranger", "none"])
def test_wrong_key_is_an_authentication_failure_naming_user_and_key(
    cli, faulty_fleet, tmp_path, key
):
    """A key the host does not accept, or no key in the inventory and none of the
    controller's own defaults (an empty HOME, no agent) that it accepts."""
    stranger = tmp_path / "stranger_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    if key == "stranger":
        line = _host_line(faulty_fleet, 0, ansible_ssh_private_key_file=str(stranger))
        named = f"with key {stranger}"
    else:
        line = _host_line(faulty_fleet, 0).split(" ansible_ssh_private_key_file=")[0]
        cli.env = {**cli.env, "HOME": str(tmp_path)}
        cli.env.pop("SSH_AUTH_SOCK", None)
        named = "with the agent and ~/.ssh/id_* keys"
    inventory = _inventory(tmp_path / "hosts.ini", [line])
    proc = cli("run", _play(cli, "fault1", {"run": "true"}), "-i", inventory)
    assert proc.returncode == EXIT_UNREACHABLE, proc.stdout + proc.stderr
    said = next(x for x in proc.stdout.splitlines() if "Failed" in x and "fault1" in x)
    assert f"authentication failed for user root {named}" in said, said
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "authentication failed" in _children(cli)["fault1"]["Reason"]


def test_changed_host_key_is_refused_naming_the_known_hosts_line(cli, faulty_fleet, tmp_path):
    inventory = str(faulty_fleet.write_inventory(tmp_path / "hosts.ini", names=["fault3"]))
    play = _play(cli, "fault3", {"run": "echo hello"})
    cli("run", play, "-i", inventory, check=True)
    known_hosts = cli.home / "known_hosts"
    recorded = known_hosts.read_text()
    faulty_fleet.stop_host(2)
    faulty_fleet.regenerate_host_key(2)
    faulty_fleet.start_host(2)
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == EXIT_UNREACHABLE, proc.stdout + proc.stderr
    message = next(x for x in proc.stdout.splitlines() if "has changed" in x)
    assert "fault3" in message and f"{known_hosts}:1" in message, message
    assert known_hosts.read_text() == recorded  # the first key stays; nothing appended
    assert _children(cli)["fault3"]["State"] == "Failed"


def test_step_past_its_timeout_fails_timed_out_and_its_process_group_is_ended(
    cli, faulty_fleet, tmp_path
):
    inventory = str(faulty_fleet.write_inventory(tmp_path / "hosts.ini", names=["fault1"]))
    play = _play(cli, "fault1", {"run": "sleep 60.53 & sleep 60.59; wait", "timeout": 1})
    proc = cli("run", play, "-i", inventory, timeout=60)
    assert proc.returncode == EXIT_FAILED, proc.stdout + proc.stderr
    assert "timed out" in proc.stdout.lower() or "timedout" in proc.stdout, proc.stdout
    assert processes_matching("sleep 60.53") == []  # the background one, in the group
    assert processes_matching("sleep 60.59") == []
    assert _children(cli)["fault1"]["State"] == "Failed"


def test_disk_full_under_a_detached_job_is_reported_not_hidden(cli, faulty_fleet, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)],
        check=False,
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        line = _host_line(faulty_fleet, 1, runner_job_dir=str(small))
        inventory = _inventory(tmp_path / "hosts.ini", [line])
        play = _play(
            cli, "fault2", {"run": "echo start; yes filling | head -c 300000"}, detach=True
        )
        cli("run", play, "-i", inventory, check=True)
        cli("job", "wait", "1", "--timeout", "60", check=True)
        child = _children(cli)["fault2"]
        records = cli.receive(1)
        show = cli("job", "show", "1", check=True).stdout
    finally:
        subprocess.run(["umount", "--lazy", str(small)], check=True)  # even if still busy
    assert child["State"] == "Failed", child
    said = (child["Reason"] or "") + "".join(r["data"] for r in records if r["stream"] == "stderr")
    assert "no space" in said.lower(), (child, records)
    assert "no space" in show.lower(), show


def test_twenty_hosts_two_down_the_eighteen_finish_and_the_recap_names_the_two(cli, tmp_path):
    if not sshd_available():
        pytest.skip("OpenSSH server not installed (/usr/sbin/sshd, ssh-keygen): run tests/run.sh")
    with Fleet(20, prefix="node") as fleet:
        inventory = str(fleet.write_inventory(tmp_path / "hosts.ini"))
        fleet.stop_host(6)
        fleet.stop_host(13)
        play = _play(cli, "fleet", {"run": "echo up"})
        proc = cli("run", play, "-i", inventory, "-f", "20", timeout=90)
    assert proc.returncode == EXIT_UNREACHABLE, proc.stdout + proc.stderr
    children = _children(cli)
    down = {"node7", "node14"}
    assert {h for h, j in children.items() if j["State"] == "Completed"} == {
        f"node{i}" for i in range(1, 21)
    } - down
    recap = proc.stdout[proc.stdout.index("RECAP") :].splitlines()
    unreachable_column = recap[1].split().index("unreachable")
    marked = {row.split()[0] for row in recap[3:] if row.split()[unreachable_column] == "1"}
    assert marked == down, "\n".join(recap)
