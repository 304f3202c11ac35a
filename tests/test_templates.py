"""Templates as a user meets their errors: when each is caught, and what is shown.

A syntax error is found by `validate` (with or without an inventory) and before a run
starts anything, in the playbook or in a `template:` source file. A template that fails
while it renders (a filter given bad input, a division by zero, a result too large) is
exit 4 when `plan` can render it, and a failed step, with the step's file and line, when
only the run knows its values. Names are one line, and target output in a log is plain.
Every case runs `python -m runner` as a process, with local-connection hosts.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.cli import CliResult, run_runner
from tests.test_cli import at_most_2_gb, one_error_line, runner, write

LOCAL = "localhost ansible_connection=local\n"

# -- syntax errors: validate, plan, and before a run --------------------------------------

SYNTAX_ERRORS = {
    "run": ('run: "echo {{ foo( }}"', "jobs[0].steps[0].run", 6),
    "when": ('run: echo hi\n        when: "x ==="', "jobs[0].steps[0].when", 7),
    "when-list": ('run: echo hi\n        when: [true, "x ==="]', "jobs[0].steps[0].when[1]", 7),
    "until": (
        'run: echo hi\n        retries: 1\n        until: "rc =="',
        "jobs[0].steps[0].until",
        8,
    ),
    "env": ('run: echo hi\n        env: {A: "{{ a b }}"}', "jobs[0].steps[0].env.A", 7),
    "loop": ('run: echo {{ item }}\n        loop: "{{ [1, }}"', "jobs[0].steps[0].loop", 7),
    "vars": ('run: echo hi\n    vars: {name: "{% if %}"}', "jobs[0].vars.name", 7),
}


def _one_step(step: str) -> str:
    return f"name: p\njobs:\n  - name: a\n    targets: all\n    steps:\n      - {step}\n"


def _limited(*args: str, home: Path) -> CliResult:
    """`runner ARGS` with 2 GB of address space and a minute: a template that fills the
    memory or hangs fails its test instead of swapping the machine."""
    return run_runner(*args, home=home, timeout=60, preexec_fn=at_most_2_gb)


def _refused(tmp_path: Path, command: str, playbook: str, *extra: str) -> str:
    """`runner COMMAND PLAYBOOK` (with an inventory, but for a bare `validate`) must
    exit 4 with one error line: that line."""
    args = [command.split()[0], playbook, *extra]
    if command != "validate":
        args += ["-i", write(tmp_path / "hosts", LOCAL)]
    proc = _limited(*args, home=tmp_path / "home")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    return one_error_line(proc)


@pytest.mark.parametrize("case", sorted(SYNTAX_ERRORS))
@pytest.mark.parametrize("command", ["validate", "validate -i", "plan"])
def test_a_template_syntax_error_is_exit_4_at_its_line(case, command, tmp_path):
    step, key, line = SYNTAX_ERRORS[case]
    playbook = write(tmp_path / "p.yml", _one_step(step))
    error = _refused(tmp_path, command, playbook)
    assert re.match(
        rf"{re.escape(playbook)}:{line}:\d+: {re.escape(key)}: "
        "template syntax error: ",
        error,
    ), error


UNKNOWN_NAMES = {
    "filter": ('run: "echo {{ y | nosuchfilter }}"', "jobs[0].steps[0].run", 6, "nosuchfilter"),
    "test": (
        'run: echo hi\n        when: "y is nosuchtest"',
        "jobs[0].steps[0].when",
        7,
        "nosuchtest",
    ),
    "file": (
        "template: {src: missing.j2, dest: out}",
        "jobs[0].steps[0].template.src",
        6,
        "missing",
    ),
}


@pytest.mark.parametrize("case", sorted(UNKNOWN_NAMES))
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_an_unknown_filter_test_or_template_file_is_exit_4_at_validate(case, command, tmp_path):
    step, key, line, name = UNKNOWN_NAMES[case]
    playbook = write(tmp_path / "p.yml", _one_step(step))
    extra = ("-e", "y=1") if command == "plan" else ()
    error = _refused(tmp_path, command, playbook, *extra)
    assert re.match(rf"{re.escape(playbook)}:{line}:\d+: {re.escape(key)}: ", error), error
    assert name in error, error
    if case == "file":  # named as the run looks for it: beside the playbook
        assert str(tmp_path / "missing.j2") in error, error


def test_an_unknown_filter_in_a_template_file_is_exit_4_at_its_line(tmp_path):
    write(tmp_path / "conf.j2", "port = {{ y }}\nhost = {{ y | nosuchfilter }}\n")
    playbook = write(tmp_path / "p.yml", _one_step("template: {src: conf.j2, dest: out}"))
    error = _refused(tmp_path, "validate", playbook)
    assert error.startswith(f"{tmp_path / 'conf.j2'}:2: jobs[0].steps[0].template.src: "), error
    assert "nosuchfilter" in error, error


TWO_JOBS = """
name: p
jobs:
  - name: first
    targets: all
    steps:
      - local: touch {marker}
  - name: second
    targets: all
    needs: first
    steps:
      - template: {{src: conf.j2, dest: {dest}}}
"""


@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_a_syntax_error_in_a_template_file_is_found_before_anything_runs(command, tmp_path):
    write(tmp_path / "conf.j2", "port = {{ port }}\n# fine so far\nhost = {{ host( }}\n")
    marker, dest = tmp_path / "first-ran", tmp_path / "conf"
    playbook = write(tmp_path / "p.yml", TWO_JOBS.format(marker=marker, dest=dest))
    error = _refused(tmp_path, command, playbook)
    assert error.startswith(
        f"{tmp_path / 'conf.j2'}:3: jobs[1].steps[0].template.src: template syntax error: "
    ), error
    assert not marker.exists()
    listed = runner("job", "list", "--format", "json", home=tmp_path / "home")
    assert json.loads(listed.stdout or "[]") == []


@pytest.mark.parametrize("command", ["plan", "run"])
def test_an_undefined_variable_in_a_template_file_fails_plan_before_anything_runs(
    command, tmp_path
):
    """The README's promise for every template: an undefined variable is exit 4 before
    anything runs, named at the template file's line, not a step failing mid-run."""
    write(tmp_path / "conf.j2", "port = 1\ncontent {{ nope }}\n")
    marker, dest = tmp_path / "first-ran", tmp_path / "conf"
    playbook = write(tmp_path / "p.yml", TWO_JOBS.format(marker=marker, dest=dest))
    error = _refused(tmp_path, command, playbook)
    assert error.startswith(f"{tmp_path / 'conf.j2'}:2: jobs[1].steps[0].template.src: "), error
    assert "'nope'" in error, error
    assert not marker.exists() and not dest.exists()


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _large(path: Path) -> Path:
    with path.open("wb") as handle:
        handle.truncate(5 << 20)  # sparse: 5 MB of nothing on disk
    return path


# What a template's `src` may name that is not a template: (make it, what the line says).
NOT_TEMPLATES = {
    "fifo": (_fifo, "not a regular file"),
    "dev-zero": (lambda _: Path("/dev/zero"), "not a regular file"),
    "directory": (lambda path: path.parent, "not a regular file"),
    "5 MB": (_large, "larger than 4 MB"),
}


@pytest.mark.parametrize("case", sorted(NOT_TEMPLATES))
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_a_template_src_that_is_no_template_file_is_one_line_not_a_hang(case, command, tmp_path):
    """Read under a time and memory bound: a FIFO would wait for ever, /dev/zero fill the
    memory; each is refused at the step's `src`, naming the file."""
    make, says = NOT_TEMPLATES[case]
    src = make(tmp_path / "conf.j2")
    playbook = write(tmp_path / "p.yml", _one_step(f"template: {{src: {src}, dest: out}}"))
    error = _refused(tmp_path, command, playbook)
    assert error.startswith(f"{playbook}:6:"), error
    assert "jobs[0].steps[0].template.src" in error and str(src) in error and says in error


# -- errors while rendering ---------------------------------------------------------------

# Each reads a registered result, so only the run knows its value.
RUN_TIME = {
    "from_json": ("echo not-json", "{{ (out.stdout | from_json).a }}", "from_json"),
    "division": ("echo 0", "{{ 1 / (out.stdout | int) }}", "division by zero"),
    "regex_replace": ("echo '('", "{{ 'a' | regex_replace(out.stdout, 'b') }}", "regex_replace"),
    "regex_search": ("echo '['", "{{ 'a' | regex_search(out.stdout) }}", "regex_search"),
    "b64decode": ("echo '%%garbage'", "{{ out.stdout | b64decode }}", "b64decode"),
    "repeat": ("echo x", "{{ out.stdout * 10**10 }}", "more than"),
    "range": ("echo 10000000", "{{ range(out.stdout | int) | list | length }}", "range"),
    "zfill": ("echo 1000000000", "{{ 'x'.zfill(out.stdout | int) }}", "more than"),
    "concat": (
        "echo 9000000",
        "{{ ('x' * (out.stdout | int)) ~ ('x' * (out.stdout | int)) }}",
        "more than",
    ),
    "lipsum": ("echo 1000000", "{{ lipsum(out.stdout | int) }}", "more than"),
}

RUN_TIME_PLAYBOOK = """
name: p
jobs:
  - name: a
    targets: all
    steps:
      - local: {produce}
        register: out
      - name: use it
        local: "echo {template}"
        ignore_errors: {ignore}
      - local: echo after
"""


def _run_time(tmp_path: Path, case: str, ignore: bool, *extra: str):
    produce, template, _ = RUN_TIME[case]
    playbook = write(
        tmp_path / "p.yml",
        RUN_TIME_PLAYBOOK.format(produce=produce, template=template, ignore=str(ignore).lower()),
    )
    hosts = write(tmp_path / "hosts", LOCAL)
    return _limited("run", playbook, "-i", hosts, *extra, home=tmp_path / "home")


@pytest.mark.parametrize("case", sorted(RUN_TIME))
def test_a_template_failing_at_run_time_is_a_failed_step(case, tmp_path):
    junit = tmp_path / "junit.xml"
    proc = _run_time(tmp_path, case, False, "--format", "json", "--junit", str(junit))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "internal error" not in proc.stdout + proc.stderr
    document = json.loads(proc.stdout)
    assert document["stats"]["localhost"]["failed"] == 1
    steps = document["jobs"][0]["children"][0]["steps"]
    assert [s["status"] for s in steps] == ["changed", "failed"]
    error = steps[1]["error"]
    assert error.startswith(f"{tmp_path / 'p.yml'}:8:") and "template error" in error, error
    assert RUN_TIME[case][2] in error, error
    failures = ET.parse(junit).getroot().findall(".//testcase/failure")
    assert len(failures) == 1
    shown = runner("job", "show", "a", home=tmp_path / "home").stdout
    assert re.search(r"use it\s+failed", shown), shown


@pytest.mark.parametrize("case", ["from_json", "repeat"])
def test_ignore_errors_lets_the_job_go_on_past_a_template_error(case, tmp_path):
    proc = _run_time(tmp_path, case, True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"ignored\s+localhost\s+a \| use it .*template error", proc.stdout)
    assert re.search(r"changed\s+localhost\s+a \| local: echo after", proc.stdout)


PLAN_TIME = {
    "from_json": ("{{ x | from_json }}", "x=not-json"),
    "division": ("{{ 1 / 0 }}", "x=1"),
    "b64decode": ("{{ x | b64decode }}", "x=%%garbage"),
    "range": ("{{ range(10**7) | list }}", "x=1"),
    "repeat": ("{{ 'x' * 10**10 }}", "x=1"),
    "list-repeat": ("{{ [0] * 10**9 }}", "x=1"),
    "power": ("{{ 2 ** 10000000 }}", "x=1"),
    # A width or count a gigabyte wide, and joins past the 10 million character limit.
    "zfill": ("{{ 'x'.zfill(10**9) }}", "x=1"),
    "format-width": ("{{ '{:>1000000000}'.format(1) }}", "x=1"),
    "percent-width": ("{{ '%*s' % (10**9, 'x') }}", "x=1"),
    "format-filter": ("{{ '%1000000000s' | format('x') }}", "x=1"),
    "indent": ("{{ 'x' | indent(10**9) }}", "x=1"),
    "center": ("{{ 'x' | center(10**9) }}", "x=1"),
    "wordwrap": ("{{ ('x ' * 100) | wordwrap(1, wrapstring='y' * 1000000) }}", "x=1"),
    "to_json-indent": ("{{ [1, [2]] | to_json(indent=10**9) }}", "x=1"),
    "slice": ("{{ range(10) | slice(10**9) | list }}", "x=1"),
    "concat": ("{{ ('x' * 9000000) ~ ('x' * 9000000) }}", "x=1"),
    "join": ("{{ (['ab'] * 5000000) | join('--') }}", "x=1"),
    "replace": ("{{ ('x' * 1000000) | replace('x', 'x' * 100) }}", "x=1"),
    "loop-output": ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "x=1"),
    "lipsum": ("{{ lipsum(10**6) }}", "x=1"),
}


@pytest.mark.parametrize("case", sorted(PLAN_TIME))
def test_a_template_failing_at_plan_time_is_exit_4(case, tmp_path):
    template, extra = PLAN_TIME[case]
    playbook = write(tmp_path / "p.yml", _one_step(f'run: "echo {template}"'))
    error = _refused(tmp_path, "plan", playbook, "-e", extra)
    assert error.startswith(f"{playbook}:6:9: jobs[0].steps[0]: template error: "), error
    assert "out of memory" not in error, error  # refused before it is made, not after


def test_strings_doubled_through_variables_are_exit_4(tmp_path):
    playbook = write(
        tmp_path / "p.yml",
        """
        name: p
        vars: {a: "{{ 'x' * 9000000 }}", b: "{{ a ~ a }}", c: "{{ b ~ b }}", d: "{{ c ~ c }}"}
        jobs:
          - name: a
            targets: all
            steps:
              - run: "echo {{ d | length }}"
        """,
    )
    error = _refused(tmp_path, "plan", playbook)
    assert error.startswith(f"{playbook}:7:9: jobs[0].steps[0]: template error: "), error
    assert "more than" in error, error


# -- names and output ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, key, line",
    [
        (r'"two\nlines"', "jobs[0].name", 3),
        (r'"red\e[31m"', "jobs[0].steps[0].name", 6),
        (r'"bell\a"', "jobs[0].steps[0].name", 6),
    ],
)
def test_a_name_with_a_control_character_is_refused(name, key, line, tmp_path):
    job, step = (name, "ok") if key == "jobs[0].name" else ("ok", name)
    playbook = write(
        tmp_path / "p.yml",
        f"""
        name: p
        jobs:
          - name: {job}
            targets: all
            steps:
              - name: {step}
                run: echo hi
        """,
    )
    error = _refused(tmp_path, "validate", playbook)
    assert re.match(
        rf"{re.escape(playbook)}:{line}:\d+: {re.escape(key)}: .*control char", error
    ), error


def test_target_output_in_a_log_has_its_control_characters_escaped(tmp_path):
    playbook = write(
        tmp_path / "p.yml",
        r"""
        name: p
        jobs:
          - name: a
            targets: all
            steps:
              - local: printf 'red\033[31mX\033[0m cr\rback bell\a tab\tend\r\nnext\n'
        """,
    )
    hosts = write(tmp_path / "hosts", LOCAL)
    proc = run_runner(  # bytes, not text: text mode would turn a lone \r into \n
        "run", playbook, "-v", "-i", hosts, home=tmp_path / "home", text=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", proc.stdout), proc.stdout
    assert rb"localhost | red\x1b[31mX\x1b[0m cr\rback bell\x07 tab" + b"\tend\n" in proc.stdout
    assert b"localhost | next\n" in proc.stdout


# -- variables that render variables --------------------------------------------------------


def _chain(length: int) -> str:
    """A playbook whose step reads v<length>, each vN built from v(N-1)."""
    names = "".join(f'    v{n}: "{{{{ v{n - 1} }}}}y"\n' for n in range(1, length + 1))
    return (
        f"name: p\nvars:\n    v0: x\n{names}jobs:\n  - name: a\n    targets: all\n"
        f"    steps:\n      - run: echo {{{{ v{length} }}}}\n"
    )


def test_a_long_chain_of_variables_renders_and_a_loop_is_named(tmp_path):
    hosts = write(tmp_path / "hosts", LOCAL)
    proc = runner(
        "plan", write(tmp_path / "p.yml", _chain(40)), "-i", hosts, home=tmp_path / "home"
    )
    assert proc.returncode == 0, proc.stderr
    assert "x" + "y" * 40 in proc.stdout
    loop = write(
        tmp_path / "loop.yml",
        """
        vars: {a: "{{ b }}", b: "{{ a }}"}
        jobs:
          - name: a
            targets: all
            steps: [{run: "echo {{ a }}"}]
        """,
    )
    proc = runner("plan", loop, "-i", hosts, home=tmp_path / "home")
    assert proc.returncode == 4
    assert "refers to itself (a -> b -> a)" in one_error_line(proc)


def test_a_file_mode_with_the_digit_9_is_refused_by_validate(tmp_path):
    playbook = write(tmp_path / "p.yml", _one_step("template: {src: p.yml, dest: out, mode: 999}"))
    proc = runner("validate", playbook, home=tmp_path / "home")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    line = one_error_line(proc)
    assert line.startswith(f"{playbook}:6:") and "jobs[0].steps[0].template.mode" in line


# -- check mode: results a step not run did not register ----------------------------------

NOT_REGISTERED = {
    "join": "{{ r.stdout_lines | join(',') }}",
    "map": "{{ r.results | map(attribute='stdout') | join(',') }}",
    "length": "{{ r.stdout_lines | length }}",
    "upper": "{{ r.stdout | upper }}",
}

NOT_REGISTERED_PLAYBOOK = """
name: p
jobs:
  - name: a
    targets: all
    steps:
      - run: echo x
        register: r
      - run: echo "{template}"
      - template: {{src: conf.j2, dest: "{dest}"}}
        register: t
      - run: echo {{{{ t.changed }}}}
"""


@pytest.mark.parametrize("case", sorted(NOT_REGISTERED))
def test_check_mode_skips_a_step_reading_a_result_it_did_not_register(case, tmp_path):
    template = NOT_REGISTERED[case]
    write(tmp_path / "conf.j2", f"lines = {template}\n")
    dest = tmp_path / "conf-{{ inventory_hostname }}"
    playbook = write(
        tmp_path / "p.yml", NOT_REGISTERED_PLAYBOOK.format(template=template, dest=dest)
    )
    hosts = write(tmp_path / "hosts", "h1 ansible_connection=local\nh2 ansible_connection=local\n")
    proc = _limited("run", playbook, "-i", hosts, "-l", "h1", "--check", home=tmp_path / "home")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f'check mode: not run (run: echo "{template}")' in proc.stdout, proc.stdout
    assert f"check mode: not run (template: conf.j2 -> {tmp_path}/conf-h1)" in proc.stdout
    assert "check mode: not run (run: echo {{ t.changed }})" in proc.stdout, proc.stdout
    assert "Unrendered" not in proc.stdout + proc.stderr
    assert re.search(r"^h1\s+0\s+0\s+0\s+4\s", proc.stdout, re.MULTILINE), proc.stdout
    assert not list(tmp_path.glob("conf-*"))


def test_a_loop_whose_name_filters_its_item_is_named_and_runs(tmp_path):
    playbook = write(
        tmp_path / "p.yml",
        _one_step("local: echo \"{{ item | join(',') }}\"\n        loop: [[1, 2], [3]]"),
    )
    hosts = write(tmp_path / "hosts", LOCAL)
    proc = _limited("run", playbook, "-i", hosts, "-v", home=tmp_path / "home")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "localhost | 1,2" in proc.stdout and "localhost | 3" in proc.stdout, proc.stdout
    assert re.search(r"changed\s+localhost\s+a \| local: echo .*join", proc.stdout), proc.stdout
