"""Process groups on the controller that end with the process that started them.

A step on the controller (the local connection, `thread` and `background` jobs) runs in
a process group of its own, so nothing ends it when the runner dies: a SIGKILL gives the
runner no chance to clean up, and PR_SET_PDEATHSIG fires when the parent *thread* ends
(executor threads come and go) and reaches only the direct child, not its group.

So each process that starts such groups has a lifeline: a small watcher process (this
file run as a script, standard library only) that holds the read end of a pipe whose
write end only that process holds. The process tells it each group as it starts
(``+PGID``) and as it ends (``-PGID``); when the pipe reaches end of file, because the
process is gone however it ended, the watcher ends the groups still live: TERM, then KILL
after a grace. The watcher runs in a session of its own, so a Ctrl-C at the terminal does
not reach it, and it costs nothing while the process lives but a blocked read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

GRACE = 2.0  # seconds between TERM and KILL, as `connections.base.KILL_GRACE`


class _Lifeline:
    """The pipe to this process's watcher, and the groups it was told are live."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.live: set[int] = set()
        self.fd = -1
        self.watcher: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start a watcher; tell it the groups already live (after its predecessor died)."""
        read, write = os.pipe()  # both ends close on exec: no step inherits the write end
        try:
            self.watcher = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__)],
                stdin=read,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(read)
        self.fd = write
        for pgid in self.live:
            self.send(f"+{pgid}\n")

    def send(self, line: str) -> bool:
        """Write one message (atomic: a pipe write under PIPE_BUF); False if the watcher
        is gone."""
        try:
            os.write(self.fd, line.encode())
        except OSError:
            return False
        return True


_lock = threading.Lock()
_lifeline: _Lifeline | None = None


def _current() -> _Lifeline:
    """This process's lifeline, started on first use (and again in a forked child)."""
    global _lifeline
    if _lifeline is None or _lifeline.owner != os.getpid():  # first use, or a fork
        _lifeline = _Lifeline()
        _lifeline.start()
    return _lifeline


def hold(pgid: int) -> None:
    """Have process group `pgid` ended should this process end before `release(pgid)`."""
    with _lock:
        line = _current()
        line.live.add(pgid)
        if not line.send(f"+{pgid}\n"):  # the watcher died: start another
            os.close(line.fd)
            line.start()


def release(pgid: int) -> None:
    """Forget process group `pgid`: it has ended (its leader was reaped), or it is no
    longer this process's to end."""
    with _lock:
        if _lifeline is None or _lifeline.owner != os.getpid():
            return
        _lifeline.live.discard(pgid)
        _lifeline.send(f"-{pgid}\n")


# -- the watcher's side ----------------------------------------------------------------------


def _watch(fd: int) -> set[int]:
    """Read messages until end of file; the groups still live then."""
    live: set[int] = set()
    pending = b""
    while chunk := os.read(fd, 4096):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            pgid = int(line[1:])
            if line.startswith(b"+"):
                live.add(pgid)
            else:
                live.discard(pgid)
    return live


def _signal_all(groups: set[int], sig: int) -> set[int]:
    """Send `sig` to each group; the groups that still exist."""
    alive = set()
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            continue
        except OSError:
            pass
        alive.add(pgid)
    return alive


def _end(groups: set[int]) -> None:
    """TERM the groups, give them `GRACE` s to go, then KILL what is left."""
    alive = _signal_all({g for g in groups if g > 1}, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = _signal_all(alive, 0)
    _signal_all(alive, signal.SIGKILL)


def main() -> None:
    """The watcher: wait for the pipe on stdin to end, then end the live groups."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _end(_watch(0))


if __name__ == "__main__":
    main()
