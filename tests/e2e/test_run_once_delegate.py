"""`run_once` and `delegate_to` over real sshd. Every fleet host is an sshd of its own on
its own loopback address, so a step tells where it ran by `$SSH_CONNECTION` (its third
field is the server's address)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WHERE = "$(echo $SSH_CONNECTION | cut -d' ' -f3)"  # the address of the sshd it ran on
PORT = "$(echo $SSH_CONNECTION | cut -d' ' -f2)"  # the client's port: one per connection


def _children(proc: Any) -> dict[str, dict[str, Any]]:
    """host -> child of the run's only job, from `--format json`."""
    (job,) = json.loads(proc.stdout)["jobs"]
    return {child["host"]: child for child in job["children"]}


def _status(child: dict[str, Any], index: int) -> tuple[str, str]:
    step = next(s for s in child["steps"] if s["index"] == index)
    return step["name"], step["status"]


def test_run_once_runs_on_the_batch_first_host_and_registers_for_every_host(
    cli, inventory, fleet, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    play = cli.playbook(f"""
        jobs:
          - name: migrate
            targets: host1:host2:host3
            serial: 2
            steps:
              - name: migrate once
                run: echo "{{{{ inventory_hostname }}}} at {WHERE}"
                run_once: true
                register: migration
              - run: echo "{{{{ migration.stdout }}}}" > {out}/{{{{ inventory_hostname }}}}.txt
        """)
    proc = cli("run", play, "-i", inventory, "--format", "json")
    assert proc.returncode == 0, proc.output
    first, third = fleet.host(0).address, fleet.host(2).address
    assert (out / "host1.txt").read_text() == f"host1 at {first}\n"
    assert (out / "host2.txt").read_text() == f"host1 at {first}\n"  # batch [host1, host2]
    assert (out / "host3.txt").read_text() == f"host3 at {third}\n"  # batch [host3]
    children = _children(proc)
    assert _status(children["host1"], 0) == ("migrate once", "changed")
    assert _status(children["host2"], 0) == ("migrate once (run_once: ran on host1)", "ok")
    assert _status(children["host3"], 0) == ("migrate once", "changed")
    stdout = "".join(r["data"] for r in cli.receive(1) if r["host"] == "host2")
    assert " at " not in stdout  # host2 did not run it: no output of its own


def test_run_once_runs_on_the_next_host_when_the_first_failed_before_it(cli, inventory, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    play = cli.playbook(f"""
        jobs:
          - name: migrate
            targets: host1:host2:host3
            steps:
              - run: test {{{{ inventory_hostname }}}} != host1
              - run: echo {{{{ inventory_hostname }}}}
                run_once: true
                register: migration
              - run: echo "{{{{ migration.stdout }}}}" > {out}/{{{{ inventory_hostname }}}}.txt
        """)
    proc = cli("run", play, "-i", inventory, "--format", "json")
    assert proc.returncode == 2, proc.output
    assert not (out / "host1.txt").exists()
    assert (out / "host2.txt").read_text() == "host2\n"
    assert (out / "host3.txt").read_text() == "host2\n"
    assert _status(_children(proc)["host3"], 1)[1] == "ok"


def test_run_once_hosts_waiting_for_the_first_end_with_the_job_timeout(cli, inventory):
    play = cli.playbook("""
        jobs:
          - name: slow
            targets: host1:host2:host3
            timeout: 3
            steps:
              - run: sleep 60
                run_once: true
        """)
    proc = cli("run", play, "-i", inventory, "--format", "json", timeout=60)
    assert proc.returncode == 2, proc.output
    for child in _children(proc).values():
        assert child["State"] == "Failed" and "job timeout" in child["reason"]


def test_run_once_failing_on_the_first_host_fails_the_batch(cli, inventory):
    play = cli.playbook("""
        jobs:
          - name: once
            targets: host1:host2
            steps:
              - run: exit 4
                run_once: true
        """)
    proc = cli("run", play, "-i", inventory, "--format", "json")
    assert proc.returncode == 2, proc.output
    children = _children(proc)
    assert _status(children["host1"], 0)[1] == "failed"
    assert _status(children["host2"], 0)[1] == "failed"
    assert "run_once: failed on host1" in children["host2"]["reason"]


def test_delegate_to_runs_on_the_other_host_with_this_host_variables(
    cli, inventory, fleet, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    line = f'echo "{{{{ inventory_hostname }}}} at {WHERE}"'
    play = cli.playbook(f"""
        jobs:
          - name: register in lb
            targets: host1:host2
            steps:
              - run: {line} > {out}/{{{{ inventory_hostname }}}}.lb
                delegate_to: host3
              - run: {line} > {out}/{{{{ inventory_hostname }}}}.ctl
                delegate_to: localhost
              - run: {line} > {out}/{{{{ inventory_hostname }}}}.own
              - run: echo {PORT} > {out}/{{{{ inventory_hostname }}}}-{{{{ item }}}}.port
                delegate_to: host3
                loop: [1, 2]
        """)
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.output
    lb = fleet.host(2).address
    for number, host in enumerate(("host1", "host2")):
        assert (out / f"{host}.lb").read_text() == f"{host} at {lb}\n"
        assert (out / f"{host}.own").read_text() == f"{host} at {fleet.host(number).address}\n"
        controller = (out / f"{host}.ctl").read_text()
        assert controller.startswith(f"{host} at ")
        assert not any(address in controller for _, address, _ in fleet.hosts)
    ports = {path.read_text() for path in out.glob("*.port")}
    assert len(list(out.glob("*.port"))) == 4
    assert len(ports) == 1  # one connection to host3 for the run, reused by every step


def test_delegate_to_a_template_naming_no_host_fails_its_step(cli, inventory):
    play = cli.playbook("""
        vars: {balancer: ghost}
        jobs:
          - name: lb
            targets: host1
            steps:
              - run: echo hi
                delegate_to: "{{ balancer }}"
        """)
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 2, proc.output
    assert "unknown host 'ghost'" in proc.stdout
    assert "Traceback" not in proc.output


def test_bad_run_once_and_delegate_to_are_refused_at_their_line(cli, inventory):
    play = cli.playbook("""
        jobs:
          - name: lb
            targets: host1
            steps:
              - run: echo hi
                delegate_to: host9
          - name: bg
            type: background
            steps:
              - run: echo hi
                run_once: true
          - name: kept
            targets: host1
            detach: true
            steps:
              - run: echo hi
                delegate_to: host2
        """)
    structure = cli("validate", play)
    assert structure.returncode == 4, structure.output
    lines = structure.stderr.strip().splitlines()
    assert lines[0].startswith(f"{play}:12:") and "jobs[1].steps[0].run_once" in lines[0]
    assert lines[1].startswith(f"{play}:17:") and "jobs[2].steps[0]" in lines[1]
    for command in (("validate", play, "-i", inventory), ("run", play, "-i", inventory)):
        Path(play).write_text(Path(play).read_text().split("  - name: bg")[0])
        proc = cli(*command)
        assert proc.returncode == 4, proc.output
        assert proc.stderr.startswith(f"{play}:6:")
        assert "jobs[0].steps[0].delegate_to" in proc.stderr and "host9" in proc.stderr
