"""The controller's actions (assert, fail, debug, vars), conditions on a step's result
(changed_when, failed_when) and creates/removes, over real sshd, by what a user sees."""

from __future__ import annotations

import json
import re

import pytest


def _run_json(cli, play: str, inventory: str, *extra: str) -> tuple[int, dict, str]:
    """`runner run --format json`: exit code, the JSON document, the log lines (stderr)."""
    proc = cli("run", play, "-i", inventory, "--format", "json", *extra)
    assert proc.stdout.startswith("{"), proc.output
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _steps(document: dict, host: str, job: int = 0) -> list[dict]:
    children = document["jobs"][job]["children"]
    return next(child["steps"] for child in children if child["host"] == host)


def _shown(cli, child_id: int) -> list[str]:
    """Step lines of `runner job show` for a child."""
    lines = cli("job", "show", str(child_id), check=True).stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Steps on"))
    return lines[start + 3 :]


def _child(cli, host: str) -> int:
    return next(job["Id"] for job in cli.jobs("--children") if job.get("Location") == host)


def _received(cli, job_id: int = 1) -> dict[str, str]:
    """`runner job receive` as text per host."""
    text: dict[str, str] = {}
    for record in cli.receive(job_id, "--keep"):
        text[record["host"]] = text.get(record["host"], "") + record["data"]
    return text


def test_assert_fails_the_host_naming_the_first_false_condition(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: checks
            targets: host1:host2
            steps:
              - assert:
                  that:
                    - "inventory_hostname in groups['fleet']"
                    - "inventory_hostname == 'host1'"
                    - "1 == 2 or inventory_hostname == 'host1'"
              - run: echo after
        """
    )
    code, document, log = _run_json(cli, play, inventory)
    assert code == 2, log
    assert [s["status"] for s in _steps(document, "host1")] == ["ok", "changed"]
    (failed,) = _steps(document, "host2")
    assert failed["status"] == "failed"
    assert failed["error"] == "assertion failed: inventory_hostname == 'host1'"
    assert document["stats"]["host1"]["ok"] == 1 and document["stats"]["host1"]["changed"] == 1
    assert document["stats"]["host2"]["failed"] == 1
    assert "assertion failed: inventory_hostname == 'host1'" in log
    assert "assertion failed" in "\n".join(_shown(cli, _child(cli, "host2")))


def test_fail_and_assert_messages_are_the_hosts_reason(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: guards
            targets: host1:host2
            steps:
              - fail: {msg: "{{ inventory_hostname }} is not allowed"}
                when: inventory_hostname == 'host2'
              - assert:
                  that: "inventory_hostname == 'host9'"
                  fail_msg: "custom for {{ inventory_hostname }}"
                  success_msg: never shown
        """
    )
    code, document, log = _run_json(cli, play, inventory)
    assert code == 2, log
    host1 = _steps(document, "host1")
    assert [s["status"] for s in host1] == ["skipped", "failed"]
    assert host1[1]["error"] == "custom for host1"
    (host2,) = _steps(document, "host2")
    assert host2["status"] == "failed" and host2["error"] == "host2 is not allowed"
    children = {c["host"]: c for c in document["jobs"][0]["children"]}
    assert "host2 is not allowed" in children["host2"]["reason"]
    assert "never shown" not in log
    assert "host2 is not allowed" in "\n".join(_shown(cli, _child(cli, "host2")))


def test_debug_shows_a_message_and_a_variable_in_the_run_and_the_jobs_output(cli, inventory):
    play = cli.playbook(
        """
        secrets: [token]
        vars: {token: s3cr3t-value, sizes: [1, 2]}
        jobs:
          - name: show
            targets: host1
            steps:
              - run: echo hi
                register: r
              - debug: {msg: "r={{ r.stdout }} token={{ token }}"}
              - debug: {var: r.stdout}
              - debug: {var: sizes}
              - debug: {var: not_there}
        """
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.output
    assert "    host1 | r=hi token=********" in proc.stdout
    assert "    host1 | r.stdout: hi" in proc.stdout
    assert "    host1 | sizes: [1, 2]" in proc.stdout
    assert "    host1 | not_there: VARIABLE IS NOT DEFINED!" in proc.stdout
    recap = proc.stdout.split("RECAP", 1)[1].splitlines()
    assert re.search(r"host1\s+4\s+1\s+0\s+0", "\n".join(recap)), recap
    received = _received(cli)["host1"]
    assert received == (
        "hi\nr=hi token=********\nr.stdout: hi\nsizes: [1, 2]\n"
        "not_there: VARIABLE IS NOT DEFINED!\n"
    )
    shown = cli("job", "receive", "1", "--keep").stdout
    assert "r=hi token=********" in shown
    assert "s3cr3t" not in proc.output + shown


def test_vars_step_sets_host_variables_for_later_steps_and_jobs(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: set
            targets: host1:host2
            steps:
              - vars:
                  port: "{{ 8000 + 80 }}"
                  label: "{{ inventory_hostname }}-web"
              - run: echo {{ port + 1 }} {{ label }}
          - name: use
            targets: host1:host2
            needs: [set]
            steps:
              - debug: {var: port}
              - assert: {that: "label.endswith('-web') and port == 8080"}
        """
    )
    code, document, log = _run_json(cli, play, inventory)
    assert code == 0, log
    assert _received(cli, 1) == {"host1": "8081 host1-web\n", "host2": "8081 host2-web\n"}
    assert "    host2 | port: 8080" in log
    assert [s["status"] for s in _steps(document, "host1")] == ["ok", "changed"]
    assert [s["status"] for s in _steps(document, "host1", job=1)] == ["ok", "ok"]
    planned = cli("plan", play, "-i", inventory)
    assert planned.returncode == 0, planned.output
    # --check changes nothing, yet these steps run: the later job sees the variables.
    proc = cli("run", play, "-i", inventory, "--check")
    assert proc.returncode == 0, proc.output
    assert "    host1 | port: 8080" in proc.stdout


def test_changed_when_and_failed_when_judge_each_result(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: judge
            targets: host1
            steps:
              - run: echo same
                register: same
                changed_when: false
              - run: 'echo "ERROR: disk full"'
                failed_when: "'ERROR' in stdout"
                ignore_errors: true
              - run: exit 1
                register: grep
                failed_when: "grep.rc not in [0, 1]"
              - run: echo {{ item }}
                loop: [a, b]
                changed_when: "result.stdout == 'b'"
                failed_when: [rc != 0, "'c' in stdout"]
              - debug: {msg: "{{ same.changed }} {{ grep.failed }} {{ grep.changed }}"}
        """
    )
    code, document, log = _run_json(cli, play, inventory)
    assert code == 0, log
    steps = _steps(document, "host1")
    assert [s["status"] for s in steps] == ["ok", "failed", "changed", "changed", "ok"]
    assert steps[1]["ignored"] and steps[1]["error"] == "failed_when holds: 'ERROR' in stdout"
    assert steps[2]["rc"] == 1 and not steps[2]["error"]
    assert re.search(r"ok\s+host1\s+judge \| run: echo a \(item=a\)", log), log
    assert re.search(r"changed\s+host1\s+judge \| run: echo b \(item=b\)", log), log
    assert "    host1 | False False True" in log
    assert document["stats"]["host1"]["changed"] == 2


def test_failed_when_fails_the_host(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: fails
            targets: host1
            steps:
              - run: echo ERROR here
                failed_when: "'ERROR' in stdout"
              - run: echo never
        """
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 2, proc.output
    assert "never" not in "".join(r["data"] for r in cli.receive(1, "--keep"))
    assert "failed_when holds: 'ERROR' in stdout" in "\n".join(_shown(cli, _child(cli, "host1")))


def test_a_condition_that_fails_to_render_fails_its_step_at_its_line(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: broken
            targets: host1
            steps:
              - run: echo not json
                changed_when: (stdout | from_json).changed
        """
    )
    code, document, log = _run_json(cli, play, inventory)
    assert code == 2, log
    (step,) = _steps(document, "host1")
    assert step["status"] == "failed"
    assert re.search(r"play\.yml:6:\d+: jobs\[0\]\.steps\[0\]", step["error"]), step["error"]
    assert "Traceback" not in log


def test_creates_and_removes_skip_run_and_script_steps_on_the_target(cli, inventory, tmp_path):
    target = tmp_path / "target"  # the fleet's hosts share this machine's file system
    target.mkdir(mode=0o777)
    target.chmod(0o777)
    (target / "old.lock").write_text("")
    tool = tmp_path / "tool.sh"
    tool.write_text(f'#!/bin/sh\necho "tool $1" >> {target}/log; touch {target}/tool.done\n')
    play = cli.playbook(
        f"""
        vars: {{dir: "{target}"}}
        jobs:
          - name: once
            targets: host1
            steps:
              - run: echo made >> {{{{ dir }}}}/log; touch {{{{ dir }}}}/made
                creates: "{{{{ dir }}}}/made"
              - script: "{tool} arg"
                creates: "{target}/tool.done"
              - run: rm {target}/old.lock
                removes: "{target}/old.lock"
                sudo: true
        """
    )
    code, first, log = _run_json(cli, play, inventory)
    assert code == 0, log
    assert [s["status"] for s in _steps(first, "host1")] == ["changed"] * 3
    code, second, log = _run_json(cli, play, inventory)
    assert code == 0, log
    steps = _steps(second, "host1")
    assert [s["status"] for s in steps] == ["ok"] * 3
    assert steps[0]["error"] == f"skipped, since {target}/made exists"
    assert steps[2]["error"] == f"skipped, since {target}/old.lock does not exist"
    assert second["stats"]["host1"]["changed"] == 0 and second["stats"]["host1"]["ok"] == 3
    assert (target / "log").read_text() == "made\ntool arg\n"
    job = max(job["Id"] for job in cli.jobs("--children") if job.get("Location") == "host1")
    assert "skipped, since" in "\n".join(_shown(cli, job))


BAD_STEPS = {
    "unknown key under assert": (
        '- assert: {that: "1 == 1", fail_mgs: no}',
        r"jobs\[0\]\.steps\[0\]\.assert: unknown key 'fail_mgs' \(did you mean 'fail_msg'\?\)",
    ),
    "that missing": (
        "- assert: {success_msg: fine}",
        r"jobs\[0\]\.steps\[0\]\.assert: missing required key 'that'",
    ),
    "that does not compile": (
        '- assert: {that: ["1 == 1", "x ==* 1"]}',
        r"jobs\[0\]\.steps\[0\]\.assert\.that\[1\]: template syntax error",
    ),
    "changed_when does not compile": (
        '- run: "true"\n        changed_when: "rc =="',
        r"jobs\[0\]\.steps\[0\]\.changed_when: template syntax error",
    ),
    "failed_when with an unknown filter": (
        '- run: "true"\n        failed_when: "stdout | nosuchfilter"',
        r"jobs\[0\]\.steps\[0\]\.failed_when: template syntax error",
    ),
    "creates on a put": (
        "- put: {src: a, dest: b}\n        creates: /x",
        r"jobs\[0\]\.steps\[0\]\.creates: 'creates' applies to run and script steps",
    ),
    "debug with msg and var": (
        "- debug: {msg: a, var: b}",
        r"jobs\[0\]\.steps\[0\]\.debug: debug takes one of 'msg', 'var'",
    ),
    "vars naming a reserved variable": (
        "- vars: {item: 1}",
        r"jobs\[0\]\.steps\[0\]\.vars: 'item' is a reserved variable",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STEPS))
def test_bad_keys_are_one_located_line_and_exit_4(cli, inventory, case):
    step, expected = BAD_STEPS[case]
    play = cli.playbook(f"jobs:\n  - name: j\n    targets: host1\n    steps:\n      {step}\n")
    for command in (("validate", play), ("run", play, "-i", inventory)):
        proc = cli(*command)
        assert proc.returncode == 4, proc.output
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.output
        assert re.fullmatch(rf"{re.escape(play)}:\d+:\d+: {expected}.*", lines[0]), lines[0]


def test_a_job_kept_on_its_target_refuses_result_conditions(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: away
            targets: host1
            detach: true
            steps:
              - run: echo hi
                changed_when: false
        """
    )
    proc = cli("validate", play)
    assert proc.returncode == 4
    assert re.fullmatch(
        rf"{re.escape(play)}:7:\d+: jobs\[0\]\.steps\[0\]: 'changed_when'.*cannot be used in it.*",
        proc.stderr.strip(),
    ), proc.stderr


def test_a_background_jobs_messages_and_variables_reach_the_run(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: apart
            type: background
            targets: host1
            steps:
              - vars: {colour: blue}
              - debug: {msg: "in the background: {{ colour }}"}
          - name: after
            type: thread
            targets: host1
            needs: [apart]
            steps:
              - debug: {var: colour}
        """
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.output
    assert "    host1 | in the background: blue" in proc.stdout
    assert "    host1 | colour: blue" in proc.stdout
    assert _received(cli, 1) == {"host1": "in the background: blue\n"}
