"""Is a process still the one we think it is, and can this process tell?

A job records who owns it: the machine (boot id and host name), the PID namespace
(the inode of /proc/self/ns/pid), the pid in that namespace and when the process
started (field 22 of /proc/PID/stat), so that a pid reused by another process is never
mistaken for the owner, and a zombie counts as gone. Only an invocation on the same
machine whose /proc shows the owner's PID namespace can look the owner up; any other (a
container sharing the store's volume, another machine sharing an NFS home) cannot tell
and must leave the job alone.
"""

from __future__ import annotations

import enum
import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PID_NAMESPACE = Path("/proc/self/ns/pid")


class Liveness(enum.Enum):
    """What this process can say about a recorded owner."""

    ALIVE = "alive"
    GONE = "gone"
    UNKNOWN = "unknown"  # another machine or PID namespace: not ours to judge


@dataclass(frozen=True)
class Owner:
    """A process as recorded on a job: where it runs, its pid there, when it started.

    `machine` None marks a row written before owners carried their machine: it is
    judged by pid and start time alone, as it was then. `pidns` None marks a process
    whose namespace could not be known: nobody can judge it.
    """

    machine: str | None
    pidns: int | None
    pid: int | None
    start: int | None


def _proc_stat(pid: int | str) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def process_start_time(pid: int) -> int | None:
    """When the process started (field 22 of /proc/PID/stat); None where unknown.

    Read through this process's /proc, so only meaningful where `sees_own_namespace`.
    """
    stat = _proc_stat("self" if pid == os.getpid() else pid)
    return None if stat is None else stat[1]


@functools.cache
def machine_id() -> str:
    """This machine as a job records it: the kernel's boot id and the host name.

    Containers share their host's boot id but not its PID namespace, which owners
    record apart; two machines sharing a home directory differ in both.
    """
    try:
        boot = BOOT_ID.read_text().strip()
    except OSError:
        boot = "-"
    return f"{boot} {socket.gethostname()}"


def pid_namespace() -> int | None:
    """The inode of this process's PID namespace; 0 on a system without /proc."""
    try:
        return os.stat(PID_NAMESPACE).st_ino
    except FileNotFoundError:
        return None if Path("/proc/self").exists() else 0
    except OSError:
        return None


def sees_own_namespace() -> bool:
    """Whether /proc here lists the processes of this process's own PID namespace.

    After `unshare --pid --fork` without `--mount-proc`, /proc still shows the parent
    namespace: its pids are not ours, so nothing can be judged through it. The NSpid
    line of /proc/self/status holds one pid exactly when /proc is of our namespace.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return not Path("/proc").exists()
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) == 2
    return os.readlink("/proc/self") == str(os.getpid())  # kernels before NSpid


def current_owner(pid: int | None = None) -> Owner:
    """The Owner record of process `pid` (default: this one), seen from this process."""
    pid = os.getpid() if pid is None else pid
    namespace = pid_namespace()
    if pid != os.getpid() and not sees_own_namespace():
        namespace = None  # its start time cannot be read through this /proc
    return Owner(machine_id(), namespace, pid, process_start_time(pid))


def judge(owner: Owner) -> Liveness:
    """Whether `owner` still runs, is gone, or cannot be judged from this process."""
    if owner.machine is not None:
        if owner.machine != machine_id() or owner.pidns is None:
            return Liveness.UNKNOWN
        if owner.pidns != pid_namespace() or not sees_own_namespace():
            return Liveness.UNKNOWN
    return Liveness.ALIVE if owner_alive(owner.pid, owner.start) else Liveness.GONE


def owner_alive(pid: int | None, start: int | None) -> bool:
    """Whether process `pid` still runs and is the one that started at `start`.

    A zombie counts as gone; so does a live process with another start time (the pid
    was reused). Without /proc, only the pid can be checked.
    """
    if pid is None or pid <= 0:
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc/self/stat").exists() and _pid_exists(pid)
    state, started = stat
    return state not in ("Z", "X") and (start is None or started == start)


def end_group(pgid: int, start: int | None) -> None:
    """End process group `pgid` on this machine: TERM, then KILL if it lingers.

    `start` is when its leader started: a live process with that pid and another start
    time means the group is long gone and the pid reused, so nothing is sent. (While
    any member of a group lives, the kernel never hands its number to a new process.)
    """
    from runner.connections.local import LocalConnection

    stat = _proc_stat(pgid)
    if stat is not None and start is not None and stat[1] != start:
        return
    LocalConnection().kill_process_group(pgid)


def _pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
