"""A fleet of real OpenSSH daemons on loopback, for end-to-end tests and benchmarks.

Each "host" is its own ``sshd`` listening on its own loopback address (127.0.0.2, 127.0.0.3,
...) on one shared high port, with its own host key, config, pid file and log, and one
``authorized_keys`` that admits a client key generated for the fleet. Everything lives in a
temporary directory that `Fleet.stop` removes. Usable as a context manager inside or
outside pytest::

    with Fleet(3) as fleet:
        fleet.write_inventory(path)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

SSHD = Path("/usr/sbin/sshd")
FIRST_ADDRESS = 2  # 127.0.0.1 is the controller's own address: hosts start at .2
READY_TIMEOUT = 10.0
PORT_ATTEMPTS = 20
TCP_ESTABLISHED = "01"


def sshd_available() -> bool:
    """True when this machine can run the fleet (OpenSSH's server is installed)."""
    return SSHD.is_file() and shutil.which("ssh-keygen") is not None


@dataclass
class FleetHost:
    """One sshd of the fleet: its inventory name, address, files and running process."""

    name: str
    address: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.directory / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "sshd.pid"


class Fleet:
    """N sshd daemons on 127.0.0.2.. sharing one free high port and one client key."""

    def __init__(
        self, count: int = 5, prefix: str = "host", sftp: str | None = "internal-sftp"
    ) -> None:
        self.count = count
        self.prefix = prefix
        self.sftp = sftp  # the SFTP subsystem's command; None: none, as on some hardened servers
        self.root: Path | None = None
        self.port = 0
        self.client_key = Path()
        self.user = "root"
        self._hosts: list[FleetHost] = []

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Create keys and configs, then start every host on a port nobody else uses."""
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd -t fails without it
        self.root = Path(tempfile.mkdtemp(prefix="runner-fleet-"))
        self.client_key = self.root / "client_ed25519"
        _keygen(self.client_key)
        shutil.copy(f"{self.client_key}.pub", self.root / "authorized_keys")
        last_error = ""
        for _ in range(PORT_ATTEMPTS):
            self.port = _free_port(f"127.0.0.{FIRST_ADDRESS}")
            self._hosts = [self._make_host(i) for i in range(self.count)]
            try:
                for i in range(self.count):
                    self.start_host(i)
                return
            except OSError as error:  # the port was taken on some address meanwhile
                last_error = str(error)
                self._stop_all()
        self.stop()
        raise RuntimeError(f"could not start the sshd fleet: {last_error}")

    def stop(self) -> None:
        """End every sshd and the per-connection children it forked, remove the files."""
        self._stop_all()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _stop_all(self) -> None:
        for i in range(len(self._hosts)):
            self.stop_host(i)

    # -- hosts -----------------------------------------------------------------------------

    @property
    def hosts(self) -> list[tuple[str, str, int]]:
        """(inventory name, address, port) of each host, in order."""
        return [(h.name, h.address, h.port) for h in self._hosts]

    def host(self, i: int) -> FleetHost:
        """The i-th host's files and process."""
        return self._hosts[i]

    def start_host(self, i: int) -> None:
        """Start host i (again), with the host key it had: it "comes back"."""
        host = self._hosts[i]
        if host.process is not None and host.process.poll() is None:
            return
        host.process = subprocess.Popen(
            self.sshd_argv(host),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready(host)

    def sshd_argv(self, host: FleetHost) -> list[str]:
        """The command that runs host's sshd in the foreground (a subclass may wrap it)."""
        return [str(SSHD), "-D", "-f", str(host.config), "-E", str(host.log)]

    def stop_host(self, i: int) -> None:
        """Take host i down: its listener and every connection it serves, by PID."""
        host = self._hosts[i]
        if host.process is None:
            return
        pids = [host.process.pid, *descendants(host.process.pid)]
        for pid in pids:
            _kill(pid, signal.SIGKILL)
        host.process.wait()
        host.process = None

    def connection_pids(self, i: int) -> list[int]:
        """PIDs of the per-connection sshd processes (and their children) of host i."""
        process = self._hosts[i].process
        return descendants(process.pid) if process is not None else []

    def regenerate_host_key(self, i: int) -> None:
        """Give host i a new host key (takes effect at its next start)."""
        host = self._hosts[i]
        host.host_key.unlink()
        Path(f"{host.host_key}.pub").unlink()
        _keygen(host.host_key)

    def count_connections(self, i: int) -> int:
        """Established TCP connections to host i (each SSH session is one)."""
        host = self._hosts[i]
        local = f"{_hex_address(host.address)}:{host.port:04X}"
        with open("/proc/net/tcp") as f:
            rows = [line.split() for line in f.readlines()[1:]]
        return sum(1 for row in rows if row[1] == local and row[3] == TCP_ESTABLISHED)

    def write_inventory(
        self,
        path: str | os.PathLike[str],
        names: list[str] | None = None,
        extra_vars: dict[str, str] | None = None,
        job_dir: str | os.PathLike[str] | None = None,
    ) -> Path:
        """Write an Ansible INI inventory of the fleet (or of `names`), under [fleet].

        Every host is this machine, so the hosts keep their job directories in `job_dir`
        (default: `job_dir_beside(path)`, the test's own temp dir), not in the real ~/.runner.
        """
        target = Path(path)
        jobs = Path(job_dir) if job_dir is not None else job_dir_beside(target)
        lines = ["[fleet]"]
        for host in self._hosts:
            if names is not None and host.name not in names:
                continue
            lines.append(
                f"{host.name} ansible_host={host.address} ansible_port={host.port}"
                f" ansible_user={self.user} ansible_ssh_private_key_file={self.client_key}"
                f" runner_job_dir={jobs}"
            )
        if extra_vars:
            lines += ["", "[all:vars]", *(f"{k}={v}" for k, v in extra_vars.items())]
        target.write_text("\n".join(lines) + "\n")
        return target

    # -- internals -------------------------------------------------------------------------

    def _make_host(self, i: int) -> FleetHost:
        assert self.root is not None
        directory = self.root / f"{self.prefix}{i + 1}"
        directory.mkdir(exist_ok=True)
        host = FleetHost(
            name=f"{self.prefix}{i + 1}",
            address=_loopback(FIRST_ADDRESS + i),
            port=self.port,
            directory=directory,
        )
        if not host.host_key.exists():
            _keygen(host.host_key)
        host.config.write_text(self._config(host))
        return host

    def _config(self, host: FleetHost) -> str:
        # sshd keeps the first value it reads for most keywords: everything is set here.
        assert self.root is not None
        return "\n".join(
            [
                f"ListenAddress {host.address}:{host.port}",
                f"HostKey {host.host_key}",
                f"PidFile {host.pid_file}",
                f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "MaxSessions 64",
                "MaxStartups 200:30:400",
                "SetEnv SHLVL=1",
                *([f"Subsystem sftp {self.sftp}"] if self.sftp else []),
                "LogLevel ERROR",
                "",
            ]
        )

    def _wait_ready(self, host: FleetHost) -> None:
        """Wait until host accepts TCP; OSError if sshd exited (e.g. the port is taken)."""
        assert host.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if host.process.poll() is not None:
                log = host.log.read_text() if host.log.exists() else ""
                raise OSError(f"sshd for {host.name} exited: {log.strip()}")
            try:
                socket.create_connection((host.address, host.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.005)
        raise OSError(f"sshd for {host.name} not ready after {READY_TIMEOUT} s")


def job_dir_beside(inventory: str | os.PathLike[str]) -> Path:
    """Where the hosts of an inventory written at `inventory` keep their job directories:
    beside it (the test's temp dir), for the inventory variable `runner_job_dir`."""
    return Path(inventory).resolve().parent / "runner-jobs"


def descendants(pid: int) -> list[int]:
    """Every process whose ancestry leads to `pid` (via /proc/*/stat ppid), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        ppid = _ppid(int(entry))
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def live_processes(text: str) -> list[int]:
    """PIDs of running (not zombie) processes whose command line contains `text`.

    Every fleet host is this machine, so this is how a test sees what a host runs.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "runner-fleet", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _free_port(address: str) -> int:
    """A port the kernel says is free on `address` now (sshd may still lose a race)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _loopback(n: int) -> str:
    """The n-th address of 127.0.0.0/8 (127.0.0.2, ... 127.0.0.255, 127.0.1.0, ...): a
    fleet of more than 253 hosts goes on past 127.0.0.255."""
    return f"127.0.{n // 256}.{n % 256}"


def _hex_address(address: str) -> str:
    """127.0.0.2 as /proc/net/tcp writes it (little-endian hex)."""
    return "".join(f"{int(part):02X}" for part in reversed(address.split(".")))
