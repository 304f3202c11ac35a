"""Every step action and step key, over real sshd, checked by what a user gets back."""

from __future__ import annotations

import json
import stat
from pathlib import Path

BOTH_MODES = True  # each test also runs with its children on two workers (conftest.py)


def _stdout(cli, job_id: int = 1) -> str:
    return "".join(r["data"] for r in cli.receive(job_id) if r["stream"] == "stdout")


def _steps(cli, child_id: int) -> list[str]:
    """Step lines of `runner job show` for a child: '#  step  status  rc ...'."""
    lines = cli("job", "show", str(child_id), check=True).stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Steps on"))
    return lines[start + 3 :]


def test_put_get_template_and_script_move_files_over_ssh(cli, inventory, tmp_path):
    (tmp_path / "app.conf.j2").write_text("host={{ inventory_hostname }} port={{ port }}\n")
    (tmp_path / "payload.txt").write_text("payload\n")
    (tmp_path / "tool.sh").write_text('#!/bin/sh\necho "tool ran with $1 on $(hostname -s)"\n')
    remote = tmp_path / "remote"
    remote.mkdir()
    play = cli.playbook(
        f"""
        vars: {{port: 8080}}
        jobs:
          - name: files
            targets: host1
            steps:
              - template: {{src: "{tmp_path}/app.conf.j2", dest: "{remote}/app.conf", mode: "0640"}}
              - put: {{src: "{tmp_path}/payload.txt", dest: "{remote}/payload.txt"}}
              - get:
                  src: "{remote}/app.conf"
                  dest: "{tmp_path}/fetched/{{{{ inventory_hostname }}}}.conf"
              - script: "{tmp_path}/tool.sh first-arg"
        """
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (remote / "app.conf").read_text() == "host=host1 port=8080\n"
    assert stat.S_IMODE((remote / "app.conf").stat().st_mode) == 0o640
    assert (remote / "payload.txt").read_text() == "payload\n"
    assert (tmp_path / "fetched" / "host1.conf").read_text() == "host=host1 port=8080\n"
    assert _stdout(cli).startswith("tool ran with first-arg on ")


def test_register_when_loop_and_env_cwd(cli, inventory, tmp_path):
    play = cli.playbook(
        f"""
        jobs:
          - name: logic
            targets: host1:host2
            steps:
              - run: echo {{{{ inventory_hostname }}}}-value
                register: first
              - name: only where the first step said host2
                run: echo saw {{{{ first.stdout }}}}
                when: "'host2' in first.stdout"
              - run: echo item {{{{ item }}}}
                loop: [a, b]
              - run: 'echo "$GREETING from $(pwd)"'
                env: {{GREETING: hello}}
                cwd: {tmp_path}
        """
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = cli.receive(1)
    by_host: dict[str, str] = {}
    for r in records:
        by_host[r["host"]] = by_host.get(r["host"], "") + r["data"]
    assert by_host["host1"] == (f"host1-value\nitem a\nitem b\nhello from {tmp_path}\n")
    assert by_host["host2"] == (
        f"host2-value\nsaw host2-value\nitem a\nitem b\nhello from {tmp_path}\n"
    )
    host1 = next(j for j in cli.jobs("--children") if j["Location"] == "host1")
    assert "skipped" in _steps(cli, host1["Id"])[1]


def test_retries_until_ignore_errors_and_sudo(cli, inventory, tmp_path):
    counter = tmp_path / "count"
    bump = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; echo $n"
    play = cli.playbook(
        f"""
        jobs:
          - name: retry
            targets: host3
            steps:
              - run: '{bump}'
                register: attempt
                until: attempt.stdout == "3"
                retries: 5
                delay: 0.1
              - run: "exit 4"
                ignore_errors: true
              - run: id -u
                sudo: true
        """
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert counter.read_text() == "3\n"  # tried until the condition held, then stopped
    assert _stdout(cli) == "1\n2\n3\n0\n"
    child = cli.jobs("--children")[1]
    steps = _steps(cli, child["Id"])
    assert "failed" in steps[1] and "4" in steps[1]  # recorded, yet the job went on
    assert cli.job(1)["State"] == "Completed"


def test_until_that_never_holds_fails_the_step_with_the_attempts(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: never
            targets: host3
            steps:
              - run: echo no
                register: r
                until: r.stdout == "yes"
                retries: 2
                delay: 0
        """
    )
    proc = cli("run", play, "-i", inventory, "--format", "json")
    assert proc.returncode == 2
    step = json.loads(proc.stdout)["jobs"][0]["children"][0]["steps"][0]
    assert step["status"] == "failed" and "3 attempts" in step["error"]


def test_throttle_runs_at_most_that_many_hosts_at_once(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: throttled
            targets: fleet
            throttle: 2
            steps:
              - run: "date +%s.%N; sleep 0.4; date +%s.%N"
        """
    )
    proc = cli("run", play, "-i", inventory, "-f", "10")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spans = []
    for child in cli.jobs("--children")[1:]:
        start, end = (
            float(x) for x in "".join(r["data"] for r in cli.receive(child["Id"])).split()
        )
        spans.append((start, end))
    for start, _ in spans:
        running = sum(1 for s, e in spans if s <= start < e)
        assert running <= 2, spans
    assert len(spans) == 5


def test_result_file_per_host_and_nothing_in_the_store(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: to-files
            targets: host1:host2
            steps:
              - run: echo out {{ inventory_hostname }}; echo err >&2
            results:
              to: file
              path: "logs/{{ job }}/{{ inventory_hostname }}.log"
        """
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in ("host1", "host2"):
        text = (Path(cli.cwd) / "logs" / "to-files" / f"{host}.log").read_text()
        assert sorted(text.splitlines()) == ["err", f"out {host}"]
    assert cli.receive(1) == []
    assert "Results" in cli("job", "show", "1", check=True).stdout
