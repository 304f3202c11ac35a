"""`include:` in steps and jobs, `vars_files:`, and blocks in `runner plan`, as a user
meets them through `runner validate`, `plan` and `run` (local-connection hosts): what
runs, which variable wins, and the one line each bad input gets (file, line, key)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import one_error_line, write

LOCAL = "localhost ansible_connection=local\n"


def _inventory(cli) -> str:
    return write(cli.cwd / "hosts.ini", LOCAL)


def _stdout(cli, job_id: int) -> list[str]:
    records = cli.receive(job_id)
    return "".join(r["data"] for r in records if r["stream"] == "stdout").splitlines()


def _job_ids(cli) -> dict[str, int]:
    return {job["Name"]: job["Id"] for job in cli.jobs()}


def _including(cli, steps_file: str) -> str:
    """A playbook of one job whose steps are those of `steps_file`."""
    text = "jobs:\n  - name: a\n    targets: localhost\n    steps:\n"
    return cli.playbook(text + f"      - include: {steps_file}\n")


def _reuse_tree(work: Path) -> None:
    """A playbook's steps and jobs spread over files, one of them in a subdirectory."""
    (work / "tasks").mkdir()
    write(
        work / "tasks" / "setup.yml",
        """
        - run: echo "setup for {{ app }}"
        - include: more.yml
          vars: {depth: nested}
        """,
    )
    write(work / "tasks" / "more.yml", '- run: echo "more {{ app }} {{ depth }}"\n')
    write(
        work / "jobs.yml",
        """
        - name: report
          targets: localhost
          steps:
            - run: echo "report {{ app }} {{ level }}"
        """,
    )


def test_included_steps_and_jobs_run_with_the_include_vars(cli):
    _reuse_tree(cli.cwd)
    play = cli.playbook(
        """
        vars: {level: playbook}
        jobs:
          - name: deploy
            targets: localhost
            steps:
              - run: echo first
              - include: tasks/setup.yml
                vars: {app: web}
              - run: echo last
          - include: jobs.yml
            vars: {app: api, level: include}
        """
    )
    inventory = _inventory(cli)
    assert cli("validate", play).returncode == 0
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = _job_ids(cli)
    assert _stdout(cli, ids["deploy"]) == ["first", "setup for web", "more web nested", "last"]
    assert _stdout(cli, ids["report"]) == ["report api include"]
    planned = cli("plan", play, "-i", inventory, check=True).stdout
    assert "include tasks/setup.yml > include more.yml > run: echo" in planned


def test_an_error_in_an_included_file_names_that_file_and_line(cli):
    write(cli.cwd / "steps.yml", "- run: echo fine\n- rnu: echo typo\n")
    play = _including(cli, "steps.yml")
    for command in (("validate", play), ("run", play, "-i", _inventory(cli))):
        proc = cli(*command)
        assert proc.returncode == 4
        line = one_error_line(proc)
        assert line.startswith(f"{cli.cwd / 'steps.yml'}:2:3: steps[1]: unknown key 'rnu'"), line


def test_an_undefined_variable_in_an_included_step_names_its_file_at_plan(cli):
    write(cli.cwd / "steps.yml", "- run: echo fine\n- run: echo {{ nowhere }}\n")
    play = _including(cli, "steps.yml")
    proc = cli("plan", play, "-i", _inventory(cli))
    assert proc.returncode == 4
    line = one_error_line(proc)
    assert line.startswith(f"{cli.cwd / 'steps.yml'}:2:3: steps[1]"), line
    assert "nowhere" in line


def test_an_include_cycle_is_refused_naming_the_chain(cli):
    write(cli.cwd / "a.yml", "- run: echo a\n- include: b.yml\n")
    write(cli.cwd / "b.yml", "- include: a.yml\n")
    play = _including(cli, "a.yml")
    proc = cli("validate", play)
    assert proc.returncode == 4
    line = one_error_line(proc)
    assert line.startswith(f"{cli.cwd / 'b.yml'}:1:3: steps[0].include: "), line
    assert line.endswith("include cycle: a.yml -> b.yml -> a.yml"), line


def test_a_missing_or_templated_include_is_located_at_the_include(cli):
    play = cli.playbook(
        """
        jobs:
          - name: a
            targets: localhost
            steps:
              - include: "{{ where }}.yml"
          - include: nothere.yml
        """
    )
    proc = cli("validate", play)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"{play}:6:9: jobs[0].steps[0].include: "), lines
    assert "cannot be a template" in lines[0]
    assert lines[1].startswith(f"{play}:7:5: jobs[1].include: "), lines
    assert lines[1].endswith("nothere.yml does not exist")


def test_vars_files_sit_above_vars_at_each_level(cli):
    write(cli.cwd / "common.yml", "a: common\nb: common\nc: common\nd: common\n")
    write(cli.cwd / "job.yml", "c: jobfile\nd: jobfile\n")
    play = cli.playbook(
        """
        vars: {a: playvars, b: playvars}
        vars_files: [common.yml]
        jobs:
          - name: show
            targets: localhost
            vars: {b: jobvars, c: jobvars}
            vars_files: [job.yml]
            steps:
              - run: echo "{{ a }} {{ b }} {{ c }} {{ d }}"
        """
    )
    proc = cli("run", play, "-i", _inventory(cli), "-e", "d=extra")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _stdout(cli, 1) == ["common jobvars jobfile extra"]


def test_a_missing_or_bad_vars_file_is_one_located_line(cli):
    play = cli.playbook(
        """
        jobs:
          - name: show
            targets: localhost
            vars_files: [absent.yml]
            steps:
              - run: echo hi
        """
    )
    proc = cli("validate", play)
    assert proc.returncode == 4
    assert one_error_line(proc).startswith(f"{play}:5:18: jobs[0].vars_files[0]: vars file")
    write(cli.cwd / "absent.yml", "- a list\n")
    proc = cli("run", play, "-i", _inventory(cli))
    assert proc.returncode == 4
    line = one_error_line(proc)
    assert line.startswith(f"{cli.cwd / 'absent.yml'}:1:1: "), line
    assert "mapping" in line


def test_plan_shows_blocks_and_rescue_is_refused_where_the_runner_is_absent(cli):
    play = cli.playbook(
        """
        jobs:
          - name: a
            targets: localhost
            steps:
              - name: deploy
                block:
                  - run: echo body
                rescue:
                  - run: echo mend
                always:
                  - run: echo end
        """
    )
    proc = cli("plan", play, "-i", _inventory(cli), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["steps"]
    assert [(r["index"], r["section"]) for r in rows] == [
        (0, "deploy"),
        (1, "deploy > rescue"),
        (2, "deploy > always"),
    ]
    text = cli("plan", play, "-i", _inventory(cli), check=True).stdout
    assert "deploy > rescue > run: echo mend" in text
    text = Path(play).read_text()
    Path(play).write_text(
        text.replace("targets: localhost", "targets: localhost\n    detach: true")
    )
    proc = cli("validate", play)
    assert proc.returncode == 4
    assert "jobs[0].steps[0].rescue: 'rescue' cannot be used" in proc.stderr


def test_ansibles_import_words_point_at_include(cli):
    text = "jobs:\n  - name: a\n    targets: localhost\n    steps:\n"
    play = cli.playbook(text + "      - import_tasks: more.yml\n  - import_playbook: x.yml\n")
    proc = cli("validate", play)
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        f"{play}:5:9: jobs[0].steps[0]: unknown key 'import_tasks' (did you mean 'include'?)",
        f"{play}:6:5: jobs[1]: unknown key 'import_playbook' (did you mean 'include'?)",
    ]


def test_a_secret_set_in_an_include_vars_is_masked(cli):
    write(cli.cwd / "steps.yml", "- run: echo pw={{ token }}\n")
    text = "secrets: [token]\njobs:\n  - name: a\n    targets: localhost\n    steps:\n"
    play = cli.playbook(text + "      - include: steps.yml\n        vars: {token: s3cr3t-value}\n")
    proc = cli("run", play, "-i", _inventory(cli), "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _stdout(cli, 1) == ["pw=********"]
    assert "s3cr3t-value" not in proc.stdout + proc.stderr
