"""`runner run` over real sshd hosts as a CI job and a fleet operator use it: the JSON
document and JUnit XML with a failed and an unreachable host, the retry file, check
mode and diffs over SFTP, forks and serial, and receive's structured records.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.junit_xml import parse_junit

BOTH_MODES = True  # each test also runs with its children on two workers (conftest.py)

GHOST = "ghost ansible_host=127.0.0.1 ansible_port=1 ansible_user=root\n"


def _with_ghost(inventory: str, tmp_path: Path) -> str:
    path = tmp_path / "with-ghost.ini"
    path.write_text(Path(inventory).read_text() + GHOST)
    return str(path)


FLAKY = """
jobs:
  - name: deploy
    targets: "host1:host2:host3:ghost"
    steps:
      - name: prepare
        run: echo preparing {{ inventory_hostname }}
      - name: migrate
        run: |
          if [ {{ inventory_hostname }} = host2 ]; then echo migration failed >&2; exit 4; fi
"""


def test_failed_and_unreachable_hosts_in_json_junit_and_the_retry_file(cli, inventory, tmp_path):
    inv = _with_ghost(inventory, tmp_path)
    play = cli.playbook(FLAKY)
    proc = cli(
        "run",
        play,
        "-i",
        inv,
        "--format",
        "json",
        "--junit",
        "junit.xml",
        "--retry-file",
        "deploy.retry",
    )
    assert proc.returncode == 3, proc.stderr  # unreachable outranks failed

    document = json.loads(proc.stdout)
    (job,) = document["jobs"]
    states = {c["host"]: (c["State"], c["unreachable"]) for c in job["children"]}
    assert states == {
        "host1": ("Completed", False),
        "host2": ("Failed", False),
        "host3": ("Completed", False),
        "ghost": ("Failed", True),
    }
    assert document["stats"]["ghost"]["unreachable"] == 1
    assert document["stats"]["host2"]["failed"] == 1
    assert document["stats"]["host1"] == {
        **document["stats"]["host1"],
        "changed": 2,
        "failed": 0,
        "unreachable": 0,
    }

    root = parse_junit(cli.cwd / "junit.xml")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    ran = [f"{c['host']}: {s['name']}" for c in job["children"] for s in c["steps"]]
    assert set(ran) <= set(cases)
    assert cases["ghost: (host)"].find("failure").get("type") == "unreachable"
    assert "migration failed" in cases["host2: migrate"].find("failure").text
    assert int(root.get("tests")) == len(cases) == len(ran) + 1
    assert int(root.get("failures")) == 2

    assert (cli.cwd / "deploy.retry").read_text().splitlines() == ["host2", "ghost"]
    again = cli("run", play, "-i", inv, "--limit", "@deploy.retry", "--format", "json")
    hosts = [c["host"] for c in json.loads(again.stdout)["jobs"][0]["children"]]
    assert sorted(hosts) == ["ghost", "host2"]


def test_check_connects_to_every_host_and_runs_nothing(cli, inventory, tmp_path):
    inv = _with_ghost(inventory, tmp_path)
    marker = tmp_path / "ran-{{ inventory_hostname }}"
    play = cli.playbook(f"""
        jobs:
          - name: would
            targets: "host1:ghost"
            steps:
              - run: touch {marker}
        """)
    proc = cli("run", play, "-i", inv, "--check", "--format", "json")
    assert proc.returncode == 3  # check mode still finds the host it cannot reach
    children = {c["host"]: c for c in json.loads(proc.stdout)["jobs"][0]["children"]}
    assert children["ghost"]["unreachable"] is True
    (step,) = children["host1"]["steps"]
    assert step["status"] == "skipped" and "touch" in step["error"]
    assert list(tmp_path.glob("ran-*")) == []


def test_diff_of_a_template_over_sftp_in_check_mode_and_for_real(cli, inventory, tmp_path):
    (cli.cwd / "app.conf.j2").write_text("name={{ inventory_hostname }}\nworkers=4\n")
    dest = tmp_path / "app-{{ inventory_hostname }}.conf"
    (tmp_path / "app-host1.conf").write_text("name=host1\nworkers=2\n")
    play = cli.playbook(f"""
        jobs:
          - name: configure
            targets: "host1:host2"
            steps:
              - template: {{src: app.conf.j2, dest: "{dest}"}}
        """)
    check = cli("run", play, "-i", inventory, "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "-workers=2" in check.stdout and "+workers=4" in check.stdout
    assert "+name=host2" in check.stdout  # a new file: all of it added
    assert (tmp_path / "app-host1.conf").read_text() == "name=host1\nworkers=2\n"
    assert not (tmp_path / "app-host2.conf").exists()

    real = cli("run", play, "-i", inventory, "--diff", "--format", "json")
    assert real.returncode == 0
    assert "+workers=4" in real.stderr  # with --format json the text goes to stderr
    assert (tmp_path / "app-host1.conf").read_text() == "name=host1\nworkers=4\n"
    assert (tmp_path / "app-host2.conf").read_text() == "name=host2\nworkers=4\n"
    job_id = json.loads(real.stdout)["jobs"][0]["Id"]
    kept = "".join(r["data"] for r in cli.receive(job_id, "--host", "host1"))
    assert "+workers=4" in kept  # the diff is part of the job's output


def test_receive_json_records_carry_host_step_stream_data_and_time(cli, inventory):
    play = cli.playbook("""
        jobs:
          - name: talk
            targets: "host1:host2"
            steps:
              - run: echo out-{{ inventory_hostname }}
              - run: echo err-{{ inventory_hostname }} >&2
        """)
    cli("run", play, "-i", inventory, check=True)
    records = cli.receive(1, "--keep")
    assert {tuple(sorted(r)) for r in records} == {
        ("data", "host", "job", "step", "stream", "time")
    }
    got = sorted((r["host"], r["step"], r["stream"], r["data"]) for r in records)
    assert got == [
        ("host1", 0, "stdout", "out-host1\n"),
        ("host1", 1, "stderr", "err-host1\n"),
        ("host2", 0, "stdout", "out-host2\n"),
        ("host2", 1, "stderr", "err-host2\n"),
    ]
    times = [r["time"] for r in records if r["host"] == "host1"]
    assert times == sorted(times) and all(isinstance(t, float) for t in times)
    assert cli.receive(1) == records  # --keep consumed nothing
    assert cli.receive(1) == []


def test_serial_batches_and_forks_run_every_host_once(cli, inventory):
    play = cli.playbook("""
        jobs:
          - name: rolling
            targets: fleet
            serial: 2
            steps:
              - run: echo {{ inventory_hostname }}
        """)
    proc = cli("run", play, "-i", inventory, "-f", "1", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    children = json.loads(proc.stdout)["jobs"][0]["children"]
    assert sorted(c["host"] for c in children) == [f"host{i}" for i in range(1, 6)]
    assert {c["State"] for c in children} == {"Completed"}


def test_runner_step_shell_false_runs_each_step_on_its_own_ssh_session(cli, fleet, tmp_path):
    play = cli.playbook("""
        jobs:
          - name: where
            targets: "host1:host2"
            steps:
              - run: cat /proc/$PPID/comm
              - run: cat /proc/$PPID/comm
        """)
    inv = fleet.write_inventory(tmp_path / "hosts.ini", ["host1", "host2"])
    lines = inv.read_text().splitlines()
    inv.write_text(
        "\n".join(
            line + (" runner_step_shell=false" if line.startswith("host2 ") else "")
            for line in lines
        )
        + "\n"
    )
    cli("run", play, "-i", str(inv), check=True)
    parents = {(r["host"], r["data"].strip()) for r in cli.receive(1)}
    assert {p for h, p in parents if h == "host1"} == {"bash"}  # the step shell
    (sshd,) = {p for h, p in parents if h == "host2"}
    assert sshd.startswith("sshd")
