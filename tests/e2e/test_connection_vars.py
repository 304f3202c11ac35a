"""The connection variables people have in their inventories, on real sshd daemons.

Password authentication and become need a login user other than root and an sshd that
takes passwords: the module creates a local user with a password and a sudo rule that
asks for it, and starts two sshd hosts of its own (`Fleet` with password
authentication on and debug logging, so a jump host's log shows what it forwarded).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import wait_until

from tests.fleet import Fleet, live_processes, sshd_available

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
NEEDS = os.geteuid() == 0 and shutil.which("useradd") and shutil.which("sudo") and sshd_available()
pytestmark = pytest.mark.skipif(not NEEDS, reason="needs root, useradd, sudo and sshd")


class PasswordFleet(Fleet):
    """Fleet hosts that also take passwords, and log at debug level."""

    def _config(self, host: Any) -> str:
        text = super()._config(host)
        text = text.replace("PasswordAuthentication no", "PasswordAuthentication yes")
        return text.replace("LogLevel ERROR", "LogLevel DEBUG")


@pytest.fixture(scope="module")
def user() -> Iterator[str]:
    """A local user with a password, whom sudo lets become anyone with that password."""
    name = "rt" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    sudoers = Path(f"/etc/sudoers.d/{name}")
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{PASSWORD}\n", text=True, check=True)
        sudoers.write_text(f"{name} ALL=(ALL:ALL) ALL\n")
        sudoers.chmod(0o440)
        yield name
    finally:
        sudoers.unlink(missing_ok=True)
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def hosts() -> Iterator[Fleet]:
    with PasswordFleet(2, prefix="pw") as running:
        yield running


def _inventory(fleet: Fleet, path: Path, i: int, **variables: str) -> str:
    name, address, port = fleet.hosts[i]
    given = " ".join(f"{k}={v}" for k, v in variables.items())
    path.write_text(f"[targets]\n{name} ansible_host={address} ansible_port={port} {given}\n")
    return str(path)


def _run(cli: Any, inventory: str, step: str) -> tuple[Any, str]:
    play = cli.playbook(
        f"""
        jobs:
          - name: check
            targets: all
            steps:
              - run: {step}
        """
    )
    proc = cli("run", play, "-i", inventory, "--format", "json", timeout=120)
    out = "".join(r["data"] for r in cli.receive(1) if r["stream"] == "stdout")
    return proc, out


def test_password_authentication(cli: Any, hosts: Fleet, user: str, tmp_path: Path) -> None:
    inventory = _inventory(
        hosts, tmp_path / "hosts", 0, ansible_user=user, ansible_password=PASSWORD
    )
    proc, out = _run(cli, inventory, "id -un")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out == f"{user}\n"
    assert PASSWORD not in proc.stdout + proc.stderr


def test_a_wrong_password_is_unreachable_and_not_shown(
    cli: Any, hosts: Fleet, user: str, tmp_path: Path
) -> None:
    inventory = _inventory(
        hosts, tmp_path / "hosts", 0, ansible_user=user, ansible_ssh_pass="wrong-" + PASSWORD
    )
    proc = cli(
        "run",
        cli.playbook("jobs: [{name: j, targets: all, steps: [run: 'true']}]"),
        "-i",
        inventory,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "authentication failed" in proc.stdout + proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("become_user", "expected"), [(None, "root"), ("nobody", "nobody")])
def test_become_with_a_password(
    cli: Any, hosts: Fleet, user: str, tmp_path: Path, become_user: str | None, expected: str
) -> None:
    extra = {"ansible_become_user": become_user} if become_user else {}
    inventory = _inventory(
        hosts,
        tmp_path / "hosts",
        0,
        ansible_user=user,
        ansible_password=PASSWORD,
        ansible_become="true",
        ansible_become_pass=PASSWORD,
        **extra,
    )
    proc, out = _run(cli, inventory, "id -un; ps -o args= -p $PPID $$")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.splitlines()[0] == expected
    assert PASSWORD not in out  # never on a command line the step's processes can see
    for store in cli.home.glob("jobs.db*"):
        assert PASSWORD.encode() not in store.read_bytes(), store


def test_become_with_a_wrong_password_fails_the_step(
    cli: Any, hosts: Fleet, user: str, tmp_path: Path
) -> None:
    inventory = _inventory(
        hosts,
        tmp_path / "hosts",
        0,
        ansible_user=user,
        ansible_password=PASSWORD,
        ansible_become="yes",
        ansible_become_password="not-the-" + PASSWORD,
    )
    proc, out = _run(cli, inventory, "id -un")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "root" not in out


def test_inventory_passwords_are_masked_in_the_plan(cli: Any, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text(f"h1 ansible_become_password={PASSWORD} ansible_password={PASSWORD}x\n")
    step = "echo {{ ansible_become_password }} {{ ansible_password }}"
    play = cli.playbook(f"jobs: [{{name: j, targets: all, steps: [run: '{step}']}}]")
    proc = cli("plan", play, "-i", str(inventory), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout
    assert "********" in proc.stdout


def _through_jump_host(cli: Any, hosts: Fleet, tmp_path: Path, ssh_args: str) -> tuple[Any, str]:
    """Run a step on host 2 with `ssh_args`; the run and what host 1's sshd logged meanwhile."""
    name, address, port = hosts.hosts[1]
    (tmp_path / "hosts").write_text(
        f"{name} ansible_host={address} ansible_port={port} ansible_user=root "
        f"ansible_ssh_private_key_file={hosts.client_key} ansible_ssh_common_args='{ssh_args}'\n"
    )
    log = hosts.host(0).log
    before = log.read_text() if log.exists() else ""
    play = cli.playbook("jobs: [{name: j, targets: all, steps: [run: 'true']}]")
    proc = cli("run", play, "-i", str(tmp_path / "hosts"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, log.read_text()[len(before) :]


def test_proxyjump_reaches_a_host_through_the_jump_host(
    cli: Any, hosts: Fleet, tmp_path: Path
) -> None:
    """Host 2 through host 1 (`-o ProxyJump=`): host 1's sshd forwarded the connection."""
    _, jump_address, port = hosts.hosts[0]
    _, address, _ = hosts.hosts[1]
    args = f"-o ProxyJump=root@{jump_address}:{port} -o Compression=yes"
    proc, logged = _through_jump_host(cli, hosts, tmp_path, args)
    assert f"target {address} port {port}" in logged  # sshd's direct-tcpip debug line
    assert "'-o Compression=yes' is ignored" in proc.stderr  # named, not silently dropped


def test_dash_j_reaches_a_host_through_the_jump_host(
    cli: Any, hosts: Fleet, tmp_path: Path
) -> None:
    _, jump_address, port = hosts.hosts[0]
    _, address, _ = hosts.hosts[1]
    _, logged = _through_jump_host(cli, hosts, tmp_path, f"-J root@{jump_address}:{port}")
    assert f"target {address} port {port}" in logged


def test_proxycommand_reaches_a_host_through_the_jump_host(
    cli: Any, hosts: Fleet, tmp_path: Path
) -> None:
    if not shutil.which("ssh"):
        pytest.skip("needs the ssh client for the ProxyCommand")
    _, jump_address, port = hosts.hosts[0]
    _, address, _ = hosts.hosts[1]
    proxy = (
        f"ssh -i {hosts.client_key} -p {port} -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile=/dev/null -W %h:%p root@{jump_address}"
    )
    _, logged = _through_jump_host(cli, hosts, tmp_path, f'-o ProxyCommand="{proxy}"')
    assert f"target {address} port {port}" in logged


def test_unused_ansible_variables_are_named_once(cli: Any, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text(
        "[web]\nw1 ansible_python_interpreter=/usr/bin/python3\n"
        "w2 ansible_python_interpreter=/usr/bin/python3 ansible_shell_type=sh\n"
        "[web:vars]\nansible_connection=local\n"
    )
    play = cli.playbook("jobs: [{name: j, targets: all, steps: [run: 'true']}]")
    proc = cli("run", play, "-i", str(inventory))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = proc.stdout + proc.stderr
    assert shown.count("ansible_python_interpreter") == 1
    assert shown.count("ansible_shell_type") == 1
    assert "ansible_connection" not in shown
    listed = cli("run", play, "-i", str(inventory), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["jobs"]
    assert listed.stderr.count("ansible_python_interpreter") == 1


def test_a_become_step_is_ended_by_kill_process_group(
    hosts: Fleet, user: str, tmp_path: Path
) -> None:
    """Stop and timeout end a step's group through `kill_process_group`: for a group run
    as root through a sudo password, the kill asks sudo the same way the step did (a
    `sudo -n` would be refused and the step would run on)."""
    from runner.connections.ssh import SSHConnection

    marker = "sleep 3" + uuid.uuid4().hex[:6].translate(str.maketrans("abcdef", "123456"))
    _, address, port = hosts.hosts[0]
    conn = SSHConnection(
        "pw1",
        address,
        port,
        user=user,
        password=PASSWORD,
        become=True,
        become_password=PASSWORD,
        known_hosts=tmp_path / "known_hosts",
        step_shell=False,
    )
    started: list[int] = []
    results: list[Any] = []
    with conn:
        worker = threading.Thread(
            target=lambda: results.append(
                conn.run(marker, on_output=lambda *_: None, on_start=started.append)
            )
        )
        worker.start()
        wait_until(lambda: started and live_processes(marker), what="the step started")
        conn.kill_process_group(started[0], grace=0)
        wait_until(lambda: results, timeout=30, what="the step ended by the kill")
        worker.join()
    assert not live_processes(marker)
