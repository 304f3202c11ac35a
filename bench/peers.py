"""The same work written for each tool the benchmark compares: runner, ansible-core, pyinfra.

Each `*_workload` function writes, in a directory of its own, what its tool needs to run
STEPS `true` commands on the first HOSTS hosts of a `Fleet`, and returns the argv and
environment of the whole command. Nothing here starts a process except `pyinfra_venv` and
`runner_venv`, which install pyinfra and this checkout in virtual environments of their own
outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

Command = tuple[list[str], dict[str, str]]


def runner_workload(fleet: Any, root: Path, hosts: int, steps: int, command: str) -> Command:
    """`runner run` of one job with `steps` steps over `hosts` hosts, forks = hosts."""
    root.mkdir(parents=True, exist_ok=True)
    inventory = fleet.write_inventory(root / "inventory.ini", names=_names(fleet, hosts))
    lines = ["name: bench", "jobs:", "  - name: bench", "    targets: all", "    steps:"]
    lines += [
        f"      - name: step {i + 1}\n        run: {json.dumps(command)}" for i in range(steps)
    ]
    playbook = root / "playbook.yml"
    playbook.write_text("\n".join(lines) + "\n")
    argv = ["runner", "run", str(playbook), "-i", str(inventory), "-f", str(hosts), "-q"]
    return argv, {}


def ansible_workload(fleet: Any, root: Path, hosts: int, steps: int, command: str) -> Command:
    """ansible-playbook with pipelining and ControlPersist on, forks = hosts, no facts."""
    root.mkdir(parents=True, exist_ok=True)
    inventory = fleet.write_inventory(
        root / "inventory.ini",
        names=_names(fleet, hosts),
        extra_vars={"ansible_python_interpreter": "/usr/bin/python3"},
    )
    control = Path("/tmp") / f"rb-cp-{os.getpid()}"  # ControlPath must stay short
    control.mkdir(exist_ok=True)
    (root / "ansible.cfg").write_text(
        "[defaults]\n"
        f"inventory = {inventory}\n"
        f"forks = {hosts}\n"
        "host_key_checking = False\n"
        "gathering = explicit\n"
        "retry_files_enabled = False\n"
        "interpreter_python = /usr/bin/python3\n"
        f"local_tmp = {root / 'local_tmp'}\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        "ssh_args = -o ControlMaster=auto -o ControlPersist=60s"
        " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR\n"
        f"control_path_dir = {control}\n"
        "control_path = %(directory)s/%%C\n"
    )
    tasks = "\n".join(
        f"    - name: step {i + 1}\n      shell: {json.dumps(command)}" for i in range(steps)
    )
    playbook = root / "playbook.yml"
    playbook.write_text(f"- hosts: all\n  gather_facts: false\n  tasks:\n{tasks}\n")
    env = {"ANSIBLE_CONFIG": str(root / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return ["ansible-playbook", str(playbook)], env


def ansible_control_dir() -> Path:
    """Where `ansible_workload` puts ControlPersist sockets (for cleaning up)."""
    return Path("/tmp") / f"rb-cp-{os.getpid()}"


def close_control_masters() -> None:
    """Ask every ControlPersist master the ansible runs left to exit, then drop the dir."""
    control = ansible_control_dir()
    if not control.is_dir():
        return
    for sock in control.iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    shutil.rmtree(control, ignore_errors=True)


def pyinfra_workload(
    fleet: Any, root: Path, hosts: int, steps: int, command: str, pyinfra: Path
) -> Command:
    """`pyinfra` of `steps` server.shell operations, --parallel hosts, no host key check."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, address, port in fleet.hosts[:hosts]:
        data = {
            "ssh_hostname": address,
            "ssh_port": port,
            "ssh_user": fleet.user,
            "ssh_key": str(fleet.client_key),
            "ssh_strict_host_key_checking": "no",
            "ssh_known_hosts_file": "/dev/null",
        }
        rows.append(f"    ({name!r}, {data!r}),")
    inventory = root / "inventory.py"
    inventory.write_text("fleet = [\n" + "\n".join(rows) + "\n]\n")
    ops = "\n".join(
        f"server.shell(name='step {i + 1}', commands=[{command!r}])" for i in range(steps)
    )
    deploy = root / "deploy.py"
    deploy.write_text(f"from pyinfra.operations import server\n\n{ops}\n")
    argv = [str(pyinfra), "-y", "--parallel", str(hosts), str(inventory), str(deploy)]
    return argv, {}


def runner_venv(root: Path, source: Path) -> Path:
    """This checkout installed into a new venv under `root` as the README installs it
    (`pip install .`, not editable): the venv's bin directory."""
    home = root / "runner-venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    subprocess.run(
        [str(home / "bin" / "python"), "-m", "pip", "install", "-q", str(source)],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=900,
    )
    return home / "bin"


def pyinfra_venv(cache: Path) -> tuple[Path | None, str]:
    """pyinfra installed in its own venv under `cache`: (its executable, or None, a note)."""
    home = cache / "pyinfra-venv"
    exe = home / "bin" / "pyinfra"
    if exe.exists():
        return exe, _version(exe)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        subprocess.run(
            [str(home / "bin" / "python"), "-m", "pip", "install", "-q", "pyinfra"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as error:
        shutil.rmtree(home, ignore_errors=True)
        detail = getattr(error, "stderr", b"") or b""
        return None, f"pyinfra not installed: {error} {detail.decode(errors='replace')[-200:]}"
    return exe, _version(exe)


def tool_version(argv: list[str]) -> str:
    """The first line a tool prints for --version (best effort)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "?"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else "?"
    )


def _version(exe: Path) -> str:
    return tool_version([str(exe), "--version"])


def _names(fleet: Any, hosts: int) -> list[str]:
    return [name for name, _, _ in fleet.hosts[:hosts]]


def python_version() -> str:
    return sys.version.split()[0]
