"""put and template over real sshd are idempotent: a file already as the step would write
it is `ok`, not rewritten, and `changed: false` when registered; `--check` says what the
real run then does, step by step, a put into a directory that does not exist included."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

FILE_STEPS = ("put", "template")


def _statuses(proc: Any) -> dict[str, str]:
    """Step name -> status of host1's only child, from `--format json`."""
    document = json.loads(proc.stdout)
    (job,) = document["jobs"]
    (child,) = job["children"]
    return {step["name"]: step["status"] for step in child["steps"]}


def _files(remote: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under `remote`: (inode, mtime, mode), to see what a run rewrote."""
    return {
        str(p.relative_to(remote)): (
            p.stat().st_ino,
            p.stat().st_mtime_ns,
            stat.S_IMODE(p.stat().st_mode),
        )
        for p in sorted(remote.rglob("*"))
        if p.is_file()
    }


def test_check_then_two_real_runs_agree_and_the_second_changes_nothing(cli, inventory, tmp_path):
    remote = tmp_path / "remote"
    (remote / "into").mkdir(parents=True)
    (remote / "same.txt").write_text("data\n")
    (remote / "same.txt").chmod(0o640)
    (remote / "moded.txt").write_text("data\n")
    (remote / "moded.txt").chmod(0o644)
    (remote / "same.conf").write_text("fixed=8080\n")
    (remote / "app.conf").write_text("port=80\n")
    play = cli.playbook(f"""
        vars: {{port: 8080}}
        jobs:
          - name: files
            targets: host1
            steps:
              - name: put same
                put: {{src: data.txt, dest: "{remote}/same.txt"}}
              - name: put fresh
                put: {{src: data.txt, dest: "{remote}/fresh.txt", mode: "0600"}}
              - name: put mode only
                put: {{src: data.txt, dest: "{remote}/moded.txt", mode: "0600"}}
              - name: put into dir
                put: {{src: data.txt, dest: "{remote}/into"}}
              - name: template same
                template: {{src: same.j2, dest: "{remote}/same.conf"}}
              - name: template changed
                template: {{src: app.j2, dest: "{remote}/app.conf", mode: "0640"}}
                register: cfg
              - name: restart
                run: "echo restarted >> {remote}/restarts"
                when: cfg.changed
              - name: registered
                run: "echo changed={{{{ cfg.changed }}}} >> {tmp_path}/registered"
        """)
    (cli.cwd / "data.txt").write_text("data\n")
    (cli.cwd / "app.j2").write_text("port={{ port }}\n")
    (cli.cwd / "same.j2").write_text("fixed={{ port }}\n")
    untouched = {k: v for k, v in _files(remote).items() if k in ("same.txt", "same.conf")}

    check = cli("run", play, "-i", inventory, "--check", "--format", "json")
    first = cli("run", play, "-i", inventory, "--format", "json")
    second = cli("run", play, "-i", inventory, "--format", "json")
    after_second = _files(remote)
    third = cli("run", play, "-i", inventory, "--diff")

    for proc in (check, first, second, third):
        assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = {
        "put same": "ok",
        "put fresh": "changed",
        "put mode only": "changed",
        "put into dir": "changed",
        "template same": "ok",
        "template changed": "changed",
    }
    file_steps = [name for name in _statuses(first) if name.split()[0] in FILE_STEPS]
    assert {name: _statuses(check)[name] for name in file_steps} == expected
    assert {name: _statuses(first)[name] for name in file_steps} == expected
    assert {name: _statuses(second)[name] for name in file_steps} == dict.fromkeys(expected, "ok")
    assert _statuses(second)["restart"] == "skipped"
    registered = (tmp_path / "registered").read_text().split()
    assert registered == ["changed=True", "changed=False", "changed=False"]
    assert "(before)" not in third.stdout  # --diff has no difference to show
    assert (remote / "restarts").read_text() == "restarted\n"  # the first run's restart only
    assert after_second == _files(remote)
    assert {k: v for k, v in after_second.items() if k in untouched} == untouched
    modes = {name: mode for name, (_, _, mode) in after_second.items()}
    assert modes["fresh.txt"] == modes["moded.txt"] == 0o600
    assert (modes["same.txt"], modes["app.conf"]) == (0o640, 0o640)
    assert (remote / "into" / "data.txt").read_text() == "data\n"
    assert (remote / "app.conf").read_text() == "port=8080\n"


def _reasons(proc: Any) -> dict[str, str]:
    """Job name -> why its only child ended, from `--format json`."""
    return {job["Name"]: job["children"][0]["reason"] for job in json.loads(proc.stdout)["jobs"]}


@pytest.mark.parametrize("connection", ["local", "ssh"])
def test_a_put_into_a_missing_directory_fails_alike_with_check_and_for_real(
    connection, cli, request, tmp_path
):
    if connection == "ssh":
        inventory = request.getfixturevalue("inventory")
    else:
        inventory = str(tmp_path / "local.ini")
        Path(inventory).write_text("host1 ansible_connection=local\n")
    dest = f"{tmp_path}/nodir/{{{{ inventory_hostname }}}}"
    play = cli.playbook(f"""
        jobs:
          - name: put
            targets: host1
            steps:
              - put: {{src: data.txt, dest: "{dest}/x.txt"}}
          - name: template
            targets: host1
            steps:
              - template: {{src: app.j2, dest: "{dest}/app.conf"}}
        """)
    (cli.cwd / "data.txt").write_text("data\n")
    (cli.cwd / "app.j2").write_text("port=80\n")

    check = cli("run", play, "-i", inventory, "--check", "--diff", "--format", "json")
    real = cli("run", play, "-i", inventory, "--format", "json")
    assert (check.returncode, real.returncode) == (2, 2), check.output + real.output
    assert _reasons(check) == _reasons(real)
    for job, name in (("put", "x.txt"), ("template", "app.conf")):
        reason = _reasons(real)[job]
        assert f"cannot write {tmp_path}/nodir/host1/{name}" in reason, reason
        assert ".runner-put-" not in reason, reason
    assert "not written" not in check.output and "@@" not in check.output
    assert not (tmp_path / "nodir").exists()
