"""The one interface every transport implements, and what a command's run returns.

A `Connection` runs shell commands on one target and moves files to and from it. Output
is handed to an ``on_output(stream, data)`` callback as it arrives, stdout and stderr
apart, so arbitrarily large output streams through in bounded memory. Every command runs
in its own process group on the target, so a timeout or a stop ends all of it, children
included; the group id is reported (``on_start`` and `RunResult.pgid`) so that another
process can end it later with `Connection.kill_process_group`.
"""

from __future__ import annotations

import re
import shlex
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

OutputCallback = Callable[[str, bytes], None]
StartCallback = Callable[[int], None]

STDOUT = "stdout"
STDERR = "stderr"
KILL_GRACE = 2.0  # seconds between TERM and KILL when ending a process group
POLL_INTERVAL = 0.1  # how often a waiting run looks at its timeout and stop event
READ_SIZE = 65536
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class JumpHost:
    """One hop of ProxyJump (`-J`), as ssh would reach it."""

    address: str
    port: int
    user: str
    key_file: str | None = None


@dataclass(frozen=True)
class ConnectionSpec:
    """How to reach one host: what a connection opens with. The job store keeps it (as
    `to_json`, without its passwords) so that a later invocation can reach the host again."""

    connection: str = "ssh"  # or "local"
    address: str = ""
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    connect_timeout: float = 10.0
    step_shell: bool = True
    password: str | None = field(default=None, repr=False)
    become: bool = False
    become_user: str | None = None
    become_password: str | None = field(default=None, repr=False)
    jump: tuple[JumpHost, ...] = ()
    proxy_command: str | None = None

    SECRETS: ClassVar[tuple[str, ...]] = ("password", "become_password")

    def without_secrets(self) -> ConnectionSpec:
        """The spec as the job store may keep it: no password of any kind."""
        return replace(self, password=None, become_password=None)

    def to_json(self) -> dict[str, Any]:
        """The stored form: a JSON object of every field but the passwords, the jump hosts
        a list of objects (the form stores have always held)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.SECRETS}
        data["jump"] = [asdict(hop) for hop in self.jump]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConnectionSpec:
        """Read a stored spec; a key an older store lacks takes its default, a key a newer
        one adds is ignored."""
        known = _known_fields(cls, data)
        known["jump"] = tuple(
            JumpHost(**_known_fields(JumpHost, hop)) for hop in data.get("jump") or ()
        )
        return cls(**known)


def _known_fields(cls: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The items of `data` that name a field of the dataclass `cls`."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class RunResult:
    """How a command ended: its exit code, and whether a timeout or a stop ended it.

    `rc` is the command's exit status (128 + signal when a signal ended it, -1 when no
    status could be had). `pgid` is the command's process group on the target.
    """

    rc: int
    timed_out: bool = False
    stopped: bool = False
    pgid: int | None = None

    @property
    def interrupted(self) -> bool:
        """True when the command was ended by a timeout or a stop, not on its own."""
        return self.timed_out or self.stopped


class Connection(ABC):
    """A session to one target: run commands, transfer files, end process groups."""

    def __init__(self, host: str) -> None:
        self.host = host  # the inventory name, used in every error message

    @abstractmethod
    def open(self) -> None:
        """Connect (idempotent). Raises ConnectError with a one-line reason."""

    def run(
        self,
        command: str,
        *,
        on_output: OutputCallback,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        sudo: bool = False,
        stop_event: threading.Event | None = None,
        on_start: StartCallback | None = None,
    ) -> RunResult:
        """Run `command` with /bin/sh in a new process group; stream its output.

        `on_output` is called from the calling thread as output arrives. A `timeout`
        (seconds) or a set `stop_event` ends the whole process group (TERM, then KILL
        after a grace) and returns promptly with `timed_out` / `stopped` set.
        `on_start(pgid)` is called once the process group exists. A stop requested
        before the start runs nothing.
        """
        deadline = Deadline(timeout, stop_event)
        if deadline.reason() == "stopped":
            return RunResult(rc=-1, stopped=True)
        script = shell_script(command, env, cwd)
        return self._execute(script, sudo, Execution(on_output, on_start, deadline))

    @abstractmethod
    def _execute(self, script: str, sudo: bool, execution: Execution) -> RunResult:
        """Run a ready /bin/sh `script` in its own process group, as `run` describes."""

    @abstractmethod
    def put(self, local_path: str | Path, remote_path: str, mode: int | None = None) -> None:
        """Copy a local file to the target, then set its mode if given."""

    @abstractmethod
    def get(self, remote_path: str, local_path: str | Path) -> None:
        """Copy a file from the target to a local path."""

    @abstractmethod
    def kill_process_group(self, pgid: int, grace: float = KILL_GRACE) -> None:
        """End process group `pgid` on the target: TERM, then KILL if still alive."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect (idempotent)."""

    @property
    @abstractmethod
    def is_open(self) -> bool:
        """True while the connection can run commands."""

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Execution:
    """What one run reports to and answers to: its callbacks and its deadline."""

    on_output: OutputCallback
    on_start: StartCallback | None
    deadline: Deadline


class Deadline:
    """When a run must end, and why: its timeout passed or its stop event was set."""

    def __init__(self, timeout: float | None, stop_event: threading.Event | None) -> None:
        self.timeout = timeout
        self.stop_event = stop_event
        self._at = None if timeout is None else time.monotonic() + timeout

    def reason(self) -> str | None:
        """ "stopped", "timed_out", or None while the command may go on."""
        if self.stop_event is not None and self.stop_event.is_set():
            return "stopped"
        if self._at is not None and time.monotonic() >= self._at:
            return "timed_out"
        return None

    def wait_time(self) -> float:
        """How long a poll may sleep before looking at the deadline again."""
        if self._at is None:
            return POLL_INTERVAL
        return max(0.0, min(POLL_INTERVAL, self._at - time.monotonic()))


def shell_script(command: str, env: Mapping[str, str] | None, cwd: str | None) -> str:
    """`command` preceded by its environment exports and its change of directory."""
    lines = []
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"not a valid environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(str(value))}")
    if cwd:
        lines.append(f"cd {shlex.quote(cwd)} || exit 1")
    lines.append(command)
    return "\n".join(lines)


def kill_script(pgid: int, grace: float) -> str:
    """A /bin/sh script ending process group `pgid`: TERM, up to `grace` s, then KILL.

    The group counts as ended once only zombies are left in it (the target's init may
    take its time reaping orphans); /proc is read directly so procps is not needed.
    The grace is wall time (whole seconds, `date +%s`), not a count of checks: on a host
    with thousands of processes one check of /proc takes a good part of a second, and
    forty of them took longer than the runner waits for the answer.
    """
    pgid = int(pgid)  # never interpolate anything but a number into a kill command
    if pgid <= 1:
        raise ValueError(f"refusing to kill process group {pgid}")
    seconds = int(grace) + 1  # at least `grace`: the clock read is whole seconds
    return (
        'alive() { for f in /proc/[0-9]*/stat; do { read -r s < "$f"; } 2>/dev/null || continue; '
        f's=${{s##*) }}; set -- $s; [ "$3" = {pgid} ] && [ "$1" != Z ] && return 0; done; '
        "return 1; }\n"
        f"kill -TERM -{pgid} 2>/dev/null || exit 0\n"
        f"end=$(( $(date +%s) + {seconds} ))\n"
        'while alive; do if [ "$(date +%s)" -ge "$end" ]; then '
        f"kill -KILL -{pgid} 2>/dev/null; exit 0; fi; sleep 0.05; done"
    )
