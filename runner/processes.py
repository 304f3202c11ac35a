"""Is a process still the one we think it is? Liveness by pid and start time.

A job records the pid of the runner that owns it and when that process started (field
22 of /proc/PID/stat), so that a pid reused by another process is never mistaken for
the owner, and a zombie counts as gone.
"""

from __future__ import annotations

import os
from pathlib import Path


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)


def process_start_time(pid: int) -> int | None:
    """When the process started (field 22 of /proc/PID/stat); None where unknown."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


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


def _pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
