"""put, template and get over real sshd (get on the local connection too) are idempotent:
a file already as the step would leave it is `ok`, not rewritten, and `changed: false`
when registered; `--check` says what the real run then does, step by step, a put into a
directory that does not exist included."""

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


@pytest.fixture(params=["ssh", "local"])
def host1(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An inventory whose host1 is a fleet host over sshd, or this machine (local)."""
    if request.param == "ssh":
        return str(request.getfixturevalue("inventory"))
    hosts = tmp_path / "local.ini"
    hosts.write_text("host1 ansible_connection=local\n")
    return str(hosts)


def test_get_fetches_only_what_differs_and_check_agrees(cli, host1, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    for name in ("same.txt", "fresh.txt", "differs.txt", "real.txt"):
        (remote / name).write_text(f"{name} on the host\n")
    (remote / "link.txt").symlink_to(remote / "real.txt")
    local = tmp_path / "local"
    (local / "into").mkdir(parents=True)
    (local / "same.txt").write_text("same.txt on the host\n")
    (local / "differs.txt").write_text("an old copy\n")
    play = cli.playbook(f"""
        jobs:
          - name: files
            targets: host1
            steps:
              - name: get same
                get: {{src: "{remote}/same.txt", dest: "{local}/same.txt"}}
              - name: get fresh
                get: {{src: "{remote}/fresh.txt", dest: "{local}/new/fresh.txt"}}
                register: fetched
              - name: get differs
                get: {{src: "{remote}/differs.txt", dest: "{local}/differs.txt"}}
              - name: get into dir
                get: {{src: "{remote}/same.txt", dest: "{local}/into"}}
              - name: get through a link
                get: {{src: "{remote}/link.txt", dest: "{local}/linked.txt"}}
              - name: reload
                run: "echo reloaded >> {tmp_path}/reloads"
                when: fetched.changed
        """)
    untouched = _files(local)["same.txt"]

    check = cli("run", play, "-i", host1, "--check", "--diff", "--format", "json")
    check_text = cli("run", play, "-i", host1, "--check", "--diff")
    first = cli("run", play, "-i", host1, "--format", "json")
    after_first = _files(local)
    second = cli("run", play, "-i", host1, "--format", "json")
    third = cli("run", play, "-i", host1, "--diff")

    for proc in (check, check_text, first, second, third):
        assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = {
        "get same": "ok",
        "get fresh": "changed",
        "get differs": "changed",
        "get into dir": "changed",
        "get through a link": "changed",
    }
    gets = list(expected)
    assert {name: _statuses(check)[name] for name in gets} == expected
    assert {name: _statuses(first)[name] for name in gets} == expected
    assert {name: _statuses(second)[name] for name in gets} == dict.fromkeys(expected, "ok")
    assert _statuses(second)["reload"] == "skipped"
    assert (tmp_path / "reloads").read_text() == "reloaded\n"  # the first run's only
    assert "-an old copy" in check_text.stdout and "+differs.txt on the host" in check_text.stdout
    assert "(before)" not in third.stdout  # --diff has nothing to show
    assert after_first == _files(local)  # the second and third runs fetched nothing
    assert after_first["same.txt"] == untouched
    assert (local / "differs.txt").read_text() == "differs.txt on the host\n"
    assert (local / "into" / "same.txt").read_text() == "same.txt on the host\n"
    assert (local / "linked.txt").read_text() == "real.txt on the host\n"


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
