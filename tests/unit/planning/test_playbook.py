"""load_playbook: every bad playbook fails with one line at the right place; good ones load."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import EXIT_INVALID, PlaybookError
from runner.planning.model import JobDef, Location, Results, SessionDef, Step
from runner.planning.playbook import derive_step_name, load_playbook

BAD = Path(__file__).parent / "bad_playbooks"

# file name -> what follows "FILE:" in the error a user sees.
BAD_CASES = {
    "yaml_syntax": "4:10: YAML syntax error: did not find expected ',' or ']'"
    " (while parsing a flow sequence at line 3)",
    "tab_indentation": "3:1: YAML syntax error: found a tab character that violates indentation"
    " (YAML indents with spaces, not tabs)",
    "step_key_misspelt": "6:9: jobs[0].steps[0]: unknown key 'rnu' (did you mean 'run'?)",
    "job_key_misspelt": "4:5: jobs[0]: unknown key 'stpes' (did you mean 'steps'?)",
    "top_key_misspelt": "1:1: unknown key 'nmae' (did you mean 'name'?)",
    "session_key_misspelt": "4:5: sessions.web: unknown key 'prot' (did you mean 'port'?)",
    "steps_a_string": "4:5: jobs[0].steps: expected a list, got the string 'uptime'",
    "throttle_not_an_integer": "4:5: jobs[0].throttle: expected an integer, got the string 'ten'",
    "missing_steps": "2:5: jobs[0]: missing required key 'steps'",
    "empty_steps": "4:5: jobs[0].steps: must not be empty",
    "empty_jobs": "2:1: jobs: must not be empty",
    "missing_job_name": "2:5: jobs[0]: missing required key 'name'",
    "step_without_action": "6:9: jobs[0].steps[1]: a step needs an action: one of"
    " 'run', 'local', 'script', 'put', 'get', 'template', 'file', 'line', 'package',"
    " 'service', 'assert', 'fail', 'debug', 'vars'",
    "step_with_two_actions": "6:9: jobs[0].steps[0]: a step takes exactly one action,"
    " this one has 'run' and 'local'",
    "unknown_session": "6:5: jobs[0].session: unknown session 'wbe' (did you mean 'web'?)",
    "needs_cycle": "4:5: jobs[0].needs: needs cycle: build -> deploy -> build",
    "needs_unknown_job": "8:16: jobs[1].needs[1]: needs unknown job 'bulid'",
    "needs_itself": "4:13: jobs[0].needs[0]: job 'a' needs itself",
    "duplicate_job_name": "6:5: jobs[1].name: duplicate job name 'a' (first at line 2)",
    "session_and_targets": "7:5: jobs[0]: a job takes 'session' or 'targets', not both",
    "neither_session_nor_targets": "2:5: jobs[0]: a job needs 'session' (a named session)"
    " or 'targets' (host patterns)",
    "results_to_file_without_path": "6:5: jobs[0].results: results going to 'file' need a 'path'",
    "results_to_unknown_place": "7:7: jobs[0].results.to: 'controler' is not one of"
    " controller, file, remote (did you mean 'controller'?)",
    "top_level_a_list": "1:1: a playbook is a mapping with 'jobs', not a list",
    "step_a_list": "5:9: jobs[0].steps[0]: expected a mapping, got a list",
    "duplicate_key": "6:5: jobs[0]: duplicate key 'targets' (first at line 3)",
    "register_not_an_identifier": "6:9: jobs[0].steps[0].register: 'my-result' is not a"
    " variable name (letters, digits and _, not starting with a digit)",
    "register_shadows_reserved": "6:9: jobs[0].steps[0].register: 'hostvars' is a reserved"
    " variable; register under another name",
    "max_fail_percentage_150": "4:5: jobs[0].max_fail_percentage: 150 is above the maximum 100",
    "serial_bad_percentage": "4:17: jobs[0].serial[1]: 'lots%' is not a number of hosts"
    " or a percentage like '30%'",
    "unknown_job_type": "3:5: jobs[0].type: 'remot' is not one of remote, background, thread"
    " (did you mean 'remote'?)",
    "put_short_form": "5:9: jobs[0].steps[0].put: expected a mapping,"
    " got the string './app.conf /etc/app.conf'",
    "put_without_dest": "5:9: jobs[0].steps[0].put: missing required key 'dest'",
    "targets_not_patterns": "3:20: jobs[0].targets[1]: expected a string, got the number 5",
    "timeout_zero": "6:9: jobs[0].steps[0].timeout: 0 must be greater than 0",
    "retries_negative": "6:9: jobs[0].steps[0].retries: -1 is below the minimum 0",
}


def test_every_bad_playbook_file_has_a_case() -> None:
    assert sorted(p.stem for p in BAD.glob("*.yml")) == sorted(BAD_CASES)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_playbook_fails_with_one_located_line(name: str) -> None:
    path = BAD / f"{name}.yml"
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path)
    error = caught.value
    assert str(error) == f"{path}:{BAD_CASES[name]}"
    assert "\n" not in str(error)
    assert error.file == str(path)
    assert error.exit_code == EXIT_INVALID


ONE_JOB = "jobs:\n  - name: a\n    targets: all\n    steps: [{run: x}]\n"


def write(tmp_path: Path, text: str, name: str = "site.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_empty_file_says_what_a_playbook_is(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(PlaybookError, match="file is empty; a playbook is a mapping with 'jobs'"):
        load_playbook(path)


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError) as caught:
        load_playbook(tmp_path / "nope.yml")
    assert str(caught.value) == f"{tmp_path / 'nope.yml'}: file not found"


def test_relative_path_is_kept_as_the_user_typed_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "playbooks").mkdir()
    write(tmp_path / "playbooks", ONE_JOB.replace("{run: x}", "{rnu: x}"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PlaybookError) as caught:
        load_playbook("playbooks/site.yml")
    assert str(caught.value).startswith("playbooks/site.yml:4:14: jobs[0].steps[0]: unknown key")


def test_three_job_cycle_is_named_from_the_first_job_in_the_file(tmp_path: Path) -> None:
    jobs = "".join(
        f"  - name: {name}\n    targets: all\n    needs: {need}\n    steps: [{{run: x}}]\n"
        for name, need in (("a", "c"), ("b", "a"), ("c", "b"))
    )
    with pytest.raises(PlaybookError, match=r"needs cycle: a -> c -> b -> a"):
        load_playbook(write(tmp_path, "jobs:\n" + jobs))


def test_unknown_session_without_any_sessions_says_so(tmp_path: Path) -> None:
    text = "jobs:\n  - name: a\n    session: web\n    steps: [{run: x}]\n"
    with pytest.raises(PlaybookError, match=r"unknown session 'web' \(no sessions are declared\)"):
        load_playbook(write(tmp_path, text))


DESIGN_EXAMPLE = """\
name: Collect diagnostics
vars:
  lines: 50
sessions:
  web:
    targets: webservers:!web3
    user: deploy
    connect_timeout: 10
jobs:
  - name: uptime
    type: remote
    session: web
    steps:
      - run: uptime
      - run: "tail -n {{ lines }} /var/log/syslog"
        register: syslog
        when: "'prod' in group_names"
    results:
      to: controller
  - name: report
    type: remote
    targets: db
    detach: true
    steps:
      - run: ./nightly_report.sh
    results:
      to: remote
  - name: archive
    type: thread
    needs: [uptime]
    targets: webservers
    steps:
      - local: "curl -fsS http://{{ inventory_hostname }}/health"
    results:
      to: file
      path: "results/{{ job }}/{{ inventory_hostname }}.log"
"""


def test_design_example_loads_into_the_model(tmp_path: Path) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    book = load_playbook(path)
    file = str(path)
    assert book.name == "Collect diagnostics"
    assert book.vars == {"lines": 50}
    assert book.sessions == {
        "web": SessionDef(
            name="web",
            targets="webservers:!web3",
            where=Location(file, 5, 3, "sessions.web"),
            user="deploy",
            connect_timeout=10.0,
        )
    }
    uptime, report, archive = book.jobs
    assert uptime == JobDef(
        name="uptime",
        type="remote",
        session="web",
        where=Location(file, 10, 5, "jobs[0]"),
        steps=(
            Step(0, "run: uptime", "run", "uptime", Location(file, 14, 9, "jobs[0].steps[0]")),
            Step(
                1,
                "run: tail -n {{ lines }} /var/log/syslog",
                "run",
                "tail -n {{ lines }} /var/log/syslog",
                Location(file, 15, 9, "jobs[0].steps[1]"),
                when="'prod' in group_names",
                register="syslog",
            ),
        ),
    )
    assert (report.targets, report.detach, report.results) == ("db", True, Results("remote"))
    assert archive.type == "thread"
    assert archive.needs == ("uptime",)
    assert archive.results == Results("file", "results/{{ job }}/{{ inventory_hostname }}.log")


FULL_JOB = """\
jobs:
  - name: deploy
    targets: [webservers, "&prod", "!web3"]
    needs: build
    tags: deploy
    throttle: 5
    serial: [1, "30%"]
    max_fail_percentage: 25
    any_errors_fatal: true
    timeout: 600
    vars: {release: "1.2"}
    steps:
      - put: {src: app.conf, dest: /etc/app.conf, mode: "0644"}
      - template: {src: motd.j2, dest: /etc/motd}
      - run: |
          systemctl restart app
          systemctl status app
        when: [ready, "not skip"]
        env: {PORT: 8080, DEBUG: true, NAME: app}
        retries: 3
        until: result.rc == 0
        delay: 2
        tags: [restart, app]
        sudo: true
        cwd: /srv
        no_log: true
        ignore_errors: true
        timeout: 30
        loop: "{{ items }}"
      - script: deploy.sh --release 1.2 --environment production --notify ops@example.com
  - name: build
    type: background
    targets: localhost
    steps:
      - local: make
"""


def test_forms_are_normalised_for_the_planner(tmp_path: Path) -> None:
    (tmp_path / "motd.j2").write_text("welcome\n")
    deploy, build = load_playbook(write(tmp_path, FULL_JOB)).jobs
    assert deploy.targets == "webservers:&prod:!web3"
    assert (deploy.needs, deploy.tags) == (("build",), ("deploy",))
    assert (deploy.throttle, deploy.serial, deploy.max_fail_percentage) == (5, [1, "30%"], 25.0)
    assert (deploy.any_errors_fatal, deploy.timeout) == (True, 600.0)
    assert deploy.vars == {"release": "1.2"}
    put, template, run, script = deploy.steps
    assert put.action == "put"
    assert put.args == {"src": "app.conf", "dest": "/etc/app.conf", "mode": "0644"}
    assert put.name == "put: app.conf -> /etc/app.conf"
    assert template.name == "template: motd.j2 -> /etc/motd"
    assert run.name == "run: (hidden: no_log)"  # a no_log step's derived name hides its command
    assert run.when == "(ready) and (not skip)"
    assert run.env == {"PORT": "8080", "DEBUG": "true", "NAME": "app"}
    assert (run.retries, run.until, run.delay, run.timeout) == (3, "result.rc == 0", 2.0, 30.0)
    assert (run.sudo, run.cwd, run.no_log, run.ignore_errors) == (True, "/srv", True, True)
    assert (run.tags, run.loop, run.index) == (("restart", "app"), "{{ items }}", 2)
    assert script.name == "script: deploy.sh --release 1.2 --environment production..."
    assert (build.type, build.needs, build.results) == ("background", (), Results())


def test_derived_step_name_uses_the_first_line_of_a_command() -> None:
    assert derive_step_name("run", "\n  uptime\n  df -h\n") == "run: uptime"
    assert derive_step_name("get", {"src": "/var/log/app.log", "dest": "logs/"}) == (
        "get: /var/log/app.log -> logs/"
    )


def test_playbook_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, ONE_JOB, "ops.yml")
    assert load_playbook(path).name == "ops"


def test_anchors_and_merge_keys_share_job_settings(tmp_path: Path) -> None:
    text = """\
jobs:
  - name: a
    <<: &defaults {targets: webservers, throttle: 2}
    steps: [{run: x}]
  - <<: *defaults
    name: b
    throttle: 4
    steps: [{run: y}]
"""
    a, b = load_playbook(write(tmp_path, text)).jobs
    assert (a.targets, a.throttle, b.targets, b.throttle) == ("webservers", 2, "webservers", 4)
