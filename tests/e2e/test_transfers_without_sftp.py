"""Transfers where SSH servers differ: an sshd that has no SFTP subsystem (no `Subsystem
sftp` line, as on some hardened servers) gets put, template, script and get over an exec
channel, with the same temporary name, modes and rename as over SFTP; an SFTP server
process that dies under a put fails that step, counted, and the next transfer works."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.e2e_helpers import wait_until
from tests.fleet import Fleet, live_processes, sshd_available

SFTP_SERVER = "/usr/lib/openssh/sftp-server"


@pytest.fixture(scope="module")
def bare_inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An inventory of one host, `bare1`, whose sshd offers no SFTP."""
    if not sshd_available():
        pytest.skip("OpenSSH server not installed")
    with Fleet(1, prefix="bare", sftp=None) as fleet:
        yield str(fleet.write_inventory(tmp_path_factory.mktemp("bare") / "hosts.ini"))


@pytest.fixture(scope="module")
def external_sftp_inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One host, `ext1`, whose SFTP server is a process of its own (one a test can kill)."""
    if not sshd_available() or not os.path.exists(SFTP_SERVER):
        pytest.skip(f"OpenSSH server or {SFTP_SERVER} not installed")
    with Fleet(1, prefix="ext", sftp=SFTP_SERVER) as fleet:
        yield str(fleet.write_inventory(tmp_path_factory.mktemp("ext") / "hosts.ini"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _report(proc) -> dict:
    return json.loads(proc.stdout)


def _statuses(proc) -> list[str]:
    (job,) = _report(proc)["jobs"]
    (child,) = job["children"]
    return [step["status"] for step in child["steps"]]


def test_put_template_script_and_get_work_without_sftp(cli, bare_inventory, tmp_path):
    remote = tmp_path / "remote"
    (remote / "into").mkdir(parents=True)
    data = os.urandom(3 * 1024 * 1024) + b"\0\r\n\x1b\xff end"
    (cli.cwd / "blob.bin").write_bytes(data)
    (cli.cwd / "app.j2").write_text("port={{ port }}\n")
    (cli.cwd / "tool.sh").write_text("#!/bin/sh\necho tool ran with $1\n")
    (remote / "kept.bin").write_text("old\n")
    (remote / "kept.bin").chmod(0o604)
    (remote / "served.txt").write_text("from the target\n")
    play = cli.playbook(f"""
        vars: {{port: 8080}}
        jobs:
          - name: files
            targets: bare1
            steps:
              - put: {{src: blob.bin, dest: "{remote}/new.bin", mode: "0600"}}
              - put: {{src: blob.bin, dest: "{remote}/kept.bin"}}
              - put: {{src: blob.bin, dest: "{remote}/into"}}
              - template: {{src: app.j2, dest: "{remote}/app.conf", mode: "0640"}}
              - script: "tool.sh arg1"
              - get: {{src: "{remote}/served.txt", dest: "fetched/served.txt"}}
        """)
    first = cli("run", play, "-i", bare_inventory, "--format", "json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert _statuses(first) == ["changed"] * 6
    assert (remote / "new.bin").read_bytes() == data and _mode(remote / "new.bin") == 0o600
    assert (remote / "kept.bin").read_bytes() == data and _mode(remote / "kept.bin") == 0o604
    assert (remote / "into" / "blob.bin").read_bytes() == data
    assert (remote / "app.conf").read_text() == "port=8080\n"
    assert _mode(remote / "app.conf") == 0o640
    fetched = cli.cwd / "fetched" / "served.txt"
    assert (fetched.read_text(), _mode(fetched)) == ("from the target\n", 0o600)
    assert sorted(p.name for p in remote.iterdir()) == [
        "app.conf",
        "into",
        "kept.bin",
        "new.bin",
        "served.txt",
    ]
    assert "tool ran with arg1" in cli("job", "receive", "1", "--keep").stdout

    (remote / "app.conf").write_text("port=80\n")
    check = cli("run", play, "-i", bare_inventory, "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "-port=80" in check.stdout and "+port=8080" in check.stdout
    second = cli("run", play, "-i", bare_inventory, "--format", "json")
    assert _statuses(second)[:4] == ["ok", "ok", "ok", "changed"]
    assert (remote / "app.conf").read_text() == "port=8080\n"


def test_a_failed_transfer_without_sftp_is_one_line_and_counted(cli, bare_inventory, tmp_path):
    play = cli.playbook(f"""
        jobs:
          - name: files
            targets: bare1
            steps:
              - put: {{src: play.yml, dest: "{tmp_path}/missing-dir/x.yml"}}
          - name: fetch
            targets: bare1
            steps:
              - get: {{src: "{tmp_path}/missing.txt", dest: "fetched.txt"}}
        """)
    proc = cli("run", play, "-i", bare_inventory, "--format", "json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    report = _report(proc)
    assert report["stats"]["bare1"]["failed"] == 2
    reasons = [child["reason"] for job in report["jobs"] for child in job["children"]]
    assert f"cannot write {tmp_path}/missing-dir/x.yml" in reasons[0]
    assert ".runner-put-" not in reasons[0]  # the destination named, not the temporary file
    assert f"cannot read {tmp_path}/missing.txt" in reasons[1]
    check = cli("run", play, "-i", bare_inventory, "--check", "--diff", "--format", "json")
    assert check.returncode == 2, check.output  # as the run: the directory is not there
    assert _report(check)["jobs"][0]["children"][0]["reason"] == reasons[0]
    assert not (cli.cwd / "fetched.txt").exists()
    assert [p.name for p in cli.cwd.iterdir()] == ["play.yml"]
    assert not (tmp_path / "missing-dir").exists()


def test_an_sftp_server_killed_under_a_put_fails_that_step_counted(
    cli, external_sftp_inventory, tmp_path
):
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "big.bin").write_text("old\n")
    (cli.cwd / "big.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    (cli.cwd / "small.txt").write_text("small\n")
    play = cli.playbook(f"""
        jobs:
          - name: big
            targets: ext1
            steps:
              - put: {{src: big.bin, dest: "{remote}/big.bin"}}
                ignore_errors: true
              - put: {{src: small.txt, dest: "{remote}/small.txt"}}
        """)
    run = cli.start("run", play, "-i", external_sftp_inventory, "--format", "json")
    try:
        for pid in wait_until(lambda: live_processes(SFTP_SERVER), what="the SFTP server"):
            os.kill(pid, 9)
    finally:
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    report = json.loads(out)
    (child,) = report["jobs"][0]["children"]
    assert [step["status"] for step in child["steps"]] == ["failed", "changed"]
    assert "the SFTP session ended" in child["steps"][0]["error"]
    assert (remote / "big.bin").read_text() == "old\n"
    assert (remote / "small.txt").read_text() == "small\n"
