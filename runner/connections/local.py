"""Commands on the controller itself (``ansible_connection=local``), same contract as SSH.

Each command is ``/bin/sh -c SCRIPT`` in a new session (so its own process group), read
through one selector over its stdout and stderr pipes, so output reaches the callback in
the calling thread as it is produced, never held whole in memory. While it runs, the
group is held on this process's lifeline (`runner.connections.lifeline`): should the process die,
even of SIGKILL, the group is ended.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from runner.connections import lifeline
from runner.connections.base import (
    KILL_GRACE,
    READ_SIZE,
    STDERR,
    STDOUT,
    Connection,
    Deadline,
    Execution,
    OutputCallback,
    RunResult,
)
from runner.connections.transfer import FETCHED_MODE, copy_local, into_directory

DRAIN_AFTER_KILL = 5.0  # seconds to keep reading once a killed group's pipes stay open
# The step waits for a line on stdin, written once its group is held on the lifeline, so
# a runner killed in between cannot leave it running unknown to the watcher; at end of
# file instead (the runner gone) it does not run. Its stdin is then /dev/null.
# The step's script comes on stdin, never in an argv that `ps` shows every user: after
# one line that opens the gate (sent once the lifeline holds the group: a runner killed
# before then never lets the step run), the shell sources the rest of its input, whose
# first line gives the step /dev/null as stdin.
_SOURCE = "read -r _ || exit 1; . /dev/stdin"
_STDIN_FIRST = "exec </dev/null; "
_WRITE_INLINE = 32768  # bytes; a longer script is written from a thread (no deadlock)


class LocalConnection(Connection):
    """A `Connection` to the controller: subprocesses and file copies."""

    def __init__(self, host: str = "localhost") -> None:
        super().__init__(host)
        self._open = False

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def _execute(self, script: str, sudo: bool, execution: Execution) -> RunResult:
        argv = ["/bin/sh", "-c", _SOURCE]
        if sudo and os.geteuid() != 0:
            argv = ["sudo", "-n", *argv]
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        lifeline.hold(process.pid)
        _open_gate(process, script)
        try:
            return self._follow(process, execution)
        finally:
            lifeline.release(process.pid)  # after the wait: the group id is not reused before

    def _follow(self, process: subprocess.Popen[bytes], execution: Execution) -> RunResult:
        """Report the start, pump the output, and wait for the group's leader."""
        if execution.on_start is not None:
            execution.on_start(process.pid)
        try:
            reason = _pump(process, execution.on_output, execution.deadline, self)
        except BaseException:
            self.kill_process_group(process.pid, grace=0)
            process.wait()
            raise
        return RunResult(
            rc=_exit_status(process.wait()),
            timed_out=reason == "timed_out",
            stopped=reason == "stopped",
            pgid=process.pid,
        )

    def put(self, local_path: str | Path, remote_path: str, mode: int | None = None) -> None:
        dest = into_directory(Path(remote_path).expanduser(), str(local_path), follow=True)
        copy_local(Path(local_path), dest, mode)

    def get(self, remote_path: str, local_path: str | Path) -> None:
        dest = into_directory(Path(local_path), remote_path)
        copy_local(Path(remote_path).expanduser(), dest, FETCHED_MODE)

    def kill_process_group(self, pgid: int, grace: float = KILL_GRACE) -> None:
        if pgid <= 1:
            raise ValueError(f"refusing to kill process group {pgid}")
        if not _signal_group(pgid, signal.SIGTERM):
            return
        end = time.monotonic() + grace
        while time.monotonic() < end:
            if not _group_alive(pgid):
                return
            time.sleep(0.02)
        _signal_group(pgid, signal.SIGKILL)


def _pump(
    process: subprocess.Popen[bytes],
    on_output: OutputCallback,
    deadline: Deadline,
    connection: LocalConnection,
) -> str | None:
    """Forward output until both pipes close; end the group when the deadline says so."""
    assert process.stdout is not None and process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, STDOUT)
    selector.register(process.stderr, selectors.EVENT_READ, STDERR)
    reason: str | None = None
    give_up_at = float("inf")
    with selector:
        while selector.get_map() and time.monotonic() < give_up_at:
            for key, _ in selector.select(deadline.wait_time() if reason is None else 0.1):
                data = os.read(key.fd, READ_SIZE)
                if data:
                    on_output(key.data, data)
                else:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
            if reason is None and (reason := deadline.reason()) is not None:
                connection.kill_process_group(process.pid)
                give_up_at = time.monotonic() + DRAIN_AFTER_KILL
    return reason


def _open_gate(process: subprocess.Popen[bytes], script: str) -> None:
    """Let the step past its gate, then hand it its script on stdin and close it."""
    assert process.stdin is not None
    data = b"\n" + (_STDIN_FIRST + script + "\n").encode()
    if len(data) <= _WRITE_INLINE:
        _write_and_close(process.stdin, data)
        return
    # A long script may be read while its first commands fill the output pipes, which
    # are only read once this returns: write it from a thread.
    threading.Thread(target=_write_and_close, args=(process.stdin, data), daemon=True).start()


def _write_and_close(stdin: Any, data: bytes) -> None:
    with contextlib.suppress(OSError):  # it ended already (sudo refused...): its pipes say why
        stdin.write(data)
        stdin.flush()
    with contextlib.suppress(OSError):
        stdin.close()


def _exit_status(returncode: int) -> int:
    """Popen's returncode as a shell reports it: 128 + N for a signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _group_alive(pgid: int) -> bool:
    """True while a process of group `pgid` still runs (zombies awaiting a wait() do not)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True
