"""The `file` and `line` actions over real sshd: a first run changes, a second says `ok`
(recap and `runner job show`), `--check` changes nothing yet says what would change,
`--diff` shows it, modes and owners converge, hostile values stay data, bad keys are
one located line."""

from __future__ import annotations

import json
import os
import pwd
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

DAEMON = pwd.getpwnam("daemon")


def _statuses(proc: Any) -> dict[str, str]:
    """Step name -> status of the only child, from `--format json`."""
    (job,) = json.loads(proc.stdout)["jobs"]
    (child,) = job["children"]
    return {step["name"]: step["status"] for step in child["steps"]}


def _recap(proc: Any, host: str = "host1") -> dict[str, int]:
    """The recap's counts for `host` from a run's text output."""
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("host ")).split()
    row = next(line for line in lines if line.split()[:1] == [host]).split()
    return dict(zip(header[1:], map(int, row[1:]), strict=True))


def _shown(cli: Any) -> list[str]:
    """The step rows of `runner job show` for the last run's child."""
    child = max(cli.jobs("--children"), key=lambda j: j["Id"])
    lines = cli("job", "show", str(child["Id"]), check=True).stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Steps on"))
    return lines[start + 3 :]


def _twice(cli: Any, play: str, inventory: str) -> tuple[Any, Any]:
    """Two real runs: (first, second), each checked to exit 0."""
    runs = tuple(cli("run", play, "-i", inventory) for _ in range(2))
    for proc in runs:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return runs[0], runs[1]


def _tree(root: Path) -> dict[str, tuple[str, int, int, int, str]]:
    """Everything under `root`: (kind, mode, uid, gid, content or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            kind, data = "link", os.readlink(path)
        elif path.is_dir():
            kind, data = "dir", ""
        else:
            kind, data = "file", path.read_text()
        mode = stat.S_IMODE(info.st_mode)
        found[str(path.relative_to(root))] = (kind, mode, info.st_uid, info.st_gid, data)
    return found


def test_each_file_state_changes_then_is_ok(cli, inventory, tmp_path):
    t = tmp_path / "t"
    (t / "tree" / "deep").mkdir(parents=True)
    (t / "tree" / "deep" / "f").write_text("x\n")
    (t / "plain").write_text("plain\n")
    (t / "plain").chmod(0o644)
    (t / "elsewhere").write_text("")
    (t / "moved").symlink_to(t / "elsewhere")
    play = cli.playbook(f"""
        jobs:
          - name: files
            targets: host1
            steps:
              - name: directory
                file: {{path: "{t}/a/b/c", state: directory, mode: "0750"}}
              - name: file
                file: {{path: "{t}/plain", mode: "0600", owner: daemon, group: {DAEMON.pw_gid}}}
              - name: link
                file: {{path: "{t}/link", state: link, src: "{t}/plain"}}
              - name: relink
                file: {{path: "{t}/moved", state: link, src: "{t}/plain"}}
              - name: absent tree
                file: {{path: "{t}/tree", state: absent}}
              - name: absent link
                file: {{path: "{t}/link-gone", state: absent}}
        """)
    first, second = _twice(cli, play, inventory)
    shown_second = _shown(cli)

    assert _recap(first)["changed"] == 5 and _recap(first)["ok"] == 1
    assert _recap(second)["changed"] == 0 and _recap(second)["ok"] == 6
    assert all(" ok " in row for row in shown_second), shown_second
    assert stat.S_IMODE((t / "a" / "b" / "c").stat().st_mode) == 0o750
    plain = (t / "plain").stat()
    assert (stat.S_IMODE(plain.st_mode), plain.st_uid, plain.st_gid) == (
        0o600,
        DAEMON.pw_uid,
        DAEMON.pw_gid,
    )
    assert os.readlink(t / "link") == os.readlink(t / "moved") == f"{t}/plain"
    assert not (t / "tree").exists()


def test_touch_always_changes_and_file_state_never_creates(cli, inventory, tmp_path):
    play = cli.playbook(f"""
        jobs:
          - name: touch
            targets: host1
            steps:
              - name: touch
                file: {{path: "{tmp_path}/touched", state: touch, mode: "0640"}}
                register: touched
              - run: "echo {{{{ touched.state }}}} {{{{ touched.changed }}}}"
              - name: not when
                file: {{path: "{tmp_path}/touched", state: absent}}
                when: not touched.changed
              - name: missing
                file: {{path: "{tmp_path}/missing"}}
        """)
    runs = [cli("run", play, "-i", inventory, "--format", "json") for _ in range(2)]

    for proc in runs:
        assert proc.returncode == 2, proc.stdout + proc.stderr
        steps = _statuses(proc)
        assert steps["touch"] == "changed"  # both times, as Ansible
        assert steps["missing"] == "failed" and steps["not when"] == "skipped"
        (job,) = json.loads(proc.stdout)["jobs"]
        assert f"{tmp_path}/missing does not exist" in job["children"][0]["reason"]
    assert stat.S_IMODE((tmp_path / "touched").stat().st_mode) == 0o640
    assert not (tmp_path / "missing").exists()
    assert "touch True" in "".join(r["data"] for r in cli.receive(1))


LINE_PLAY = """
    jobs:
      - name: lines
        targets: host1
        steps:
          - name: replace
            line: {{path: "{t}/conf", regexp: "^port[[:space:]]*=", line: "port = 8080"}}
          - name: append
            line: {{path: "{t}/conf", line: "added"}}
          - name: after
            line: {{path: "{t}/conf", line: "after-a", insertafter: "^a="}}
          - name: before
            line: {{path: "{t}/conf", line: "# top", insertbefore: BOF}}
          - name: absent by regexp
            line: {{path: "{t}/conf", regexp: "^old[0-9]+$", state: absent}}
          - name: absent by line
            line: {{path: "{t}/conf", line: "drop me", state: absent}}
          - name: create
            line: {{path: "{t}/new", line: "fresh", create: true, mode: "0600"}}
"""
LINE_BEFORE = "a=1\nport=80\nold1\ndrop me\nold22\nz=2\n"
LINE_AFTER = "# top\na=1\nafter-a\nport = 8080\nz=2\nadded\n"


def test_each_line_state_changes_then_is_ok(cli, inventory, tmp_path):
    t = tmp_path
    (t / "conf").write_text(LINE_BEFORE)
    (t / "conf").chmod(0o640)
    os.chown(t / "conf", DAEMON.pw_uid, DAEMON.pw_gid)
    play = cli.playbook(LINE_PLAY.format(t=t))
    first, second = _twice(cli, play, inventory)
    shown_second = _shown(cli)

    assert _recap(first)["changed"] == 7
    assert (_recap(second)["changed"], _recap(second)["ok"]) == (0, 7)
    assert len(shown_second) == 7 and all(" ok " in row for row in shown_second)
    assert (t / "conf").read_text() == LINE_AFTER
    kept = (t / "conf").stat()  # rewritten with the file's own mode and owner
    assert (stat.S_IMODE(kept.st_mode), kept.st_uid) == (0o640, DAEMON.pw_uid)
    assert (t / "new").read_text() == "fresh\n"
    assert stat.S_IMODE((t / "new").stat().st_mode) == 0o600
    assert not [p.name for p in t.iterdir() if p.name.startswith(".runner-line")]


def test_check_changes_nothing_and_says_what_would_change_with_the_diff(cli, inventory, tmp_path):
    t = tmp_path / "t"
    t.mkdir()
    (t / "conf").write_text(LINE_BEFORE)
    (t / "plain").write_text("plain\n")
    (t / "old").write_text("old\n")
    play = cli.playbook(
        LINE_PLAY.format(t=t)
        + f"""
          - name: dir
            file: {{path: "{t}/d", state: directory}}
          - name: mode
            file: {{path: "{t}/plain", mode: "0600"}}
          - name: gone
            file: {{path: "{t}/old", state: absent}}
    """
    )
    before = _tree(t)

    check = cli("run", play, "-i", inventory, "--check", "--diff")
    check_json = cli("run", play, "-i", inventory, "--check", "--format", "json")

    assert check.returncode == 0, check.stdout + check.stderr
    assert _tree(t) == before  # nothing written, no temporary file left
    assert set(_statuses(check_json).values()) == {"changed"}
    assert _recap(check)["changed"] == 10
    assert "-port=80" in check.stdout and "+port = 8080" in check.stdout
    assert "+fresh" in check.stdout  # the file create would write
    assert "+state: directory" in check.stdout and "+mode: 0600" in check.stdout

    real = cli("run", play, "-i", inventory, "--diff")
    assert real.returncode == 0, real.stdout + real.stderr
    assert "-port=80" in real.stdout and "+# top" in real.stdout
    again = cli("run", play, "-i", inventory, "--diff")
    assert again.returncode == 0 and "(before)" not in again.stdout


def test_hostile_values_are_data_not_shell(cli, inventory, tmp_path):
    t = tmp_path
    odd = [
        f"{t}/x; touch {t}/pwned",
        f"{t}/$(touch {t}/pwned2)",
        f"{t}/quo'te\"s `touch {t}/pwned3`",
        f"{t}/-rf new\nline",
    ]
    line = "$(touch " + str(t) + "/pwned4) 'q' \"d\" \\ -e"
    items = json.dumps(odd)
    play = cli.playbook(f"""
        jobs:
          - name: hostile
            targets: host1
            steps:
              - file: {{path: "{{{{ item }}}}", state: directory}}
                loop: {items}
                sudo: true
              - line: {{path: "{t}/conf", line: {json.dumps(line)}, create: true}}
              - line: {{path: "{t}/conf", regexp: "^[$][(]touch", line: {json.dumps(line)}}}
        """)
    first, second = _twice(cli, play, inventory)

    assert _recap(second)["changed"] == 0
    for name in odd:
        assert Path(name).is_dir(), name
    assert not list(t.glob("pwned*"))
    assert (t / "conf").read_text() == line + "\n"


def test_a_missing_file_and_a_bad_regexp_fail_the_step_with_their_reason(cli, inventory, tmp_path):
    play = cli.playbook(f"""
        jobs:
          - name: missing
            targets: host1
            steps:
              - line: {{path: "{tmp_path}/nofile", line: "x"}}
          - name: badre
            targets: host1
            steps:
              - line: {{path: "{tmp_path}/conf", regexp: "(unclosed", line: "x", create: true}}
        """)
    proc = cli("run", play, "-i", inventory, "--format", "json")

    assert proc.returncode == 2
    reasons = {j["Name"]: j["children"][0]["reason"] for j in json.loads(proc.stdout)["jobs"]}
    assert "nofile does not exist (create: true creates it)" in reasons["missing"]
    assert "not a valid extended regular expression: (unclosed" in reasons["badre"]
    assert not (tmp_path / "nofile").exists() and not (tmp_path / "conf").exists()


@pytest.mark.parametrize(
    ("step", "where", "words"),
    [
        ("file: {path: /tmp/x, state: dir}", "6:30: jobs[0].steps[0].file.state", "'dir'"),
        ("file: {state: directory}", "6:9: jobs[0].steps[0].file", "'path'"),
        ("file: {path: /tmp/x, src: /y}", "6:30: jobs[0].steps[0].file.src", "state: link"),
        ("file: {path: /tmp/x, state: link}", "6:30: jobs[0].steps[0].file.state", "src"),
        ("line: {path: /tmp/x, state: gone}", "6:30: jobs[0].steps[0].line.state", "'gone'"),
        ("line: {path: /tmp/x}", "6:9: jobs[0].steps[0].line", "needs line"),
        ("line: {path: /tmp/x, line: a, insertafter: b, insertbefore: c}", "", "not both"),
        ("file: {path: /tmp/x, mode: '999'}", "6:30: jobs[0].steps[0].file.mode", "'999'"),
    ],
)
def test_bad_keys_are_one_located_line(cli, inventory, step, where, words):
    play = cli.playbook(f"""
        jobs:
          - name: bad
            targets: host1
            steps:
              - {step}
        """)
    for command in (("validate", play), ("run", play, "-i", inventory)):
        proc = cli(*command)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"{play}:{where}") and words in line, line
        assert "Traceback" not in proc.stderr


def test_a_relative_path_with_a_leading_dash_is_a_name_not_an_option(cli, inventory):
    name = f"-rf runner-test-{uuid.uuid4().hex}"  # relative: in the remote user's home
    home = Path(pwd.getpwnam("root").pw_dir)
    play = cli.playbook(f"""
        jobs:
          - name: dash
            targets: host1
            steps:
              - name: made
                file: {{path: "{name}", state: directory}}
              - name: written
                line: {{path: "{name}/f", line: "-e", create: true}}
              - run: 'cat -- "{name}/f"'
              - name: removed
                file: {{path: "{name}", state: absent}}
        """)
    proc = cli("run", play, "-i", inventory, "--format", "json")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = _statuses(proc)
    assert (steps["made"], steps["written"], steps["removed"]) == ("changed",) * 3
    assert "".join(r["data"] for r in cli.receive(1)) == "-e\n"
    assert not (home / name).exists()
