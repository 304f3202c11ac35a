"""One long-lived shell per SSH connection that runs its steps.

An exec channel per step makes sshd open a session, fork, and start the user's login
shell, which then starts /bin/sh: more of the target's CPU per step than the whole step
costs the controller. A step shell is one bash per connection, on a channel of its own,
that starts each step as `/bin/sh -c SCRIPT` in a process group of its own (bash's job
control, `set -m`), for about half of that (BENCHMARKS.md, "Step shell").
The step sees what it would see on an exec channel: /bin/sh, stdin at end of file, the
login environment, stdout and stderr apart, its own process group, default signal
dispositions (which is why bash with job control and not `sh ... &`, which would ignore
SIGINT and SIGQUIT).

Nothing secret is in a process's arguments or environment on the target: the shell's
command line holds only its program, and each step's script reaches the shell over the
channel's input and the step's /bin/sh over its stdin (`. /dev/stdin`), never as an
argument, so `ps` shows `/bin/sh -c . /dev/stdin` however many secrets the script holds.

The protocol on the shell's channel, with TOKEN a random word of this shell sent as the
first line of its input:

- start: the shell prints ``TOKEN ok PID``; ``TOKEN no`` (or `NO_BASH`) when the target
  has no bash or no job control, and the connection then runs every step on an exec
  channel.
- a step: a line holding the script's length in bytes, the script, then a line holding
  the step's MARK: a new random word per step, which the shell reads only once the step
  has ended. Scripts longer than `MAX_SCRIPT` bytes go on an exec channel.
- its end: ``\nMARK e RC\n`` on stdout and ``\nMARK\n`` on stderr, each after the
  step's last output on that stream; the leading newline is the shell's, not the step's.
  The step cannot print its own end: its MARK is nowhere it could read it (not in an
  argument, the environment, or its parent's memory while it runs; only the shell's own
  user could take it from the shell's input pipe, and that user can signal the shell
  anyway). Output that looks like a mark (an earlier step's, TOKEN, or a guess) is output.
- ``x`` instead of ``e``: processes the step started still live in its group. The shell
  leaves, and the step's output goes on until its channel ends, as on an exec channel.

The shell notices its connection going away even while it waits for a step: it reads
its input through a relay (`cat`, started once per shell) that signals the shell (URG,
trapped) when the channel's input reaches end of file, which happens when sshd loses
the connection (the runner killed, the network gone); the shell then ends the running
step's group (TERM, then KILL a second later) and leaves. Nothing is added per step,
and the step does not see the relay: its stdin is /dev/null, and a trap is reset in a
child. A step's processes left behind after it ended (``x``) are not the relay's to end.
"""

from __future__ import annotations

import secrets
import shlex
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import paramiko

MAX_SCRIPT = 16384  # bytes; a longer script runs on an exec channel
NO_BASH = "runner-step-shell no"  # the login shell's answer on a target without bash

_SHELL = """\
IFS= read -r E || exit 0
set -m; case $- in *m*) ;; *) echo "$E no"; exit 0;; esac
exec 3>&2 2>/dev/null
p=; trap '[ -z "$p" ] || { kill -TERM -"$p"; sleep 1; kill -KILL -"$p"; }; exit 0' URG
exec 4< <(exec 3>&-; cat; kill -URG $$); q=$!
exec 0<&4 4<&-
echo "$E ok $$"
while :; do
  IFS= read -r n && LC_ALL=C read -r -N "$n" c || exit 0
  /bin/sh -c '. /dev/stdin' <<<"$c" 2>&3 3>&- &
  p=$!; wait "$p"; r=$?
  if kill -0 -"$p" 2>/dev/null; then k=x; else k=e; fi
  p=
  IFS= read -r m || exit 0
  printf '\\n%s %s %s\\n' "$m" "$k" "$r"; printf '\\n%s\\n' "$m" >&3
  [ "$k" = e ] || { kill "$q"; exit 0; }
done
"""


class StepShell:
    """The step shell of one connection; one step at a time (`lock`)."""

    def __init__(self, channel: paramiko.Channel, token: str) -> None:
        self.channel = channel
        self.token = token
        self.lock = threading.Lock()

    @classmethod
    def start(cls, channel: paramiko.Channel, timeout: float) -> StepShell | None:
        """Start the shell on a new session `channel`; None (channel closed) when the
        target cannot have one."""
        token = "runner-" + secrets.token_hex(16)
        command = (
            f"command -v bash >/dev/null 2>&1 && exec bash -c {shlex.quote(_SHELL)}; "
            f"echo '{NO_BASH}'"
        )
        try:
            channel.exec_command(command)
            channel.sendall(f"{token}\n".encode())
            ready = _hello(channel, token, timeout)
        except Exception:  # noqa: BLE001 - any failure here means: use exec channels
            ready = False
        if not ready:
            channel.close()
            return None
        return cls(channel, token)

    @staticmethod
    def fits(script: str) -> bool:
        """True when `script` is short enough to send to a step shell (and holds no NUL
        byte, which bash would drop from what it reads, miscounting the script)."""
        return (
            len(script) <= MAX_SCRIPT
            and len(script.encode()) <= MAX_SCRIPT
            and ("\0" not in script)
        )

    def send(self, script: str) -> bytes:
        """Start `script` (a /bin/sh script read from its stdin) as the next step; return
        the step's end mark, a word no one could know before (see the module)."""
        mark = "runner-" + secrets.token_hex(16)
        data = script.encode()
        self.channel.sendall(b"%d\n%b%b\n" % (len(data), data, mark.encode()))
        return mark.encode()

    @staticmethod
    def ends(mark: bytes) -> tuple[bytes, bytes]:
        """What ends a step with end mark `mark` on stdout (the status follows) and on
        stderr."""
        return b"\n" + mark + b" ", b"\n" + mark + b"\n"

    @property
    def ended(self) -> bool:
        """True once the shell's channel has ended (the shell was killed between steps)."""
        channel = self.channel
        return bool(channel.closed or channel.eof_received or channel.exit_status_ready())

    def close(self) -> None:
        self.channel.close()


def _hello(channel: paramiko.Channel, token: str, timeout: float) -> bool:
    """True once the shell says it is ready; False when it says it cannot be, ends, or
    is silent for `timeout` s. Lines before its answer (a noisy ~/.bashrc) are skipped."""
    channel.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    ok, no = f"{token} ok ".encode(), (f"{token} no".encode(), NO_BASH.encode())
    while time.monotonic() < deadline:
        chunk = channel.recv(4096)
        if not chunk:
            return False
        data += chunk
        lines = data.split(b"\n")
        data = lines.pop()  # an unfinished line, kept for the next read
        for line in lines:
            if line.startswith(ok):
                channel.settimeout(None)
                return True
            if line.startswith(no):
                return False
    return False


class Boundary:
    """Finds the step shell's end mark in one output stream, forwarding what precedes it.

    `feed` returns the bytes that surely belong to the step: everything before the mark,
    less a tail that could be the start of a mark split across reads (held until the
    next read, or handed back by `flush` when the stream goes quiet). What follows the
    mark is kept in `after`.

    A tail handed back by `flush` is still remembered as a possible start of the mark
    (`_shown`), for as many quiet polls as pass before the rest arrives: on a loaded
    host the shell's newline and the rest of its mark can come a second apart.
    """

    def __init__(self, mark: bytes) -> None:
        self.mark = mark
        self.found = False
        self.after = b""
        self._held = b""  # not yet forwarded: may be the start of the mark
        self._shown = b""  # forwarded by `flush`, and may still be the start of the mark

    def feed(self, data: bytes) -> bytes:
        if self.found:
            self.after += data
            return b""
        lead = self._shown
        buf = self._held + data
        whole = lead + buf
        at = whole.find(self.mark)
        if at >= 0:
            self.found, self._held, self._shown = True, b"", b""
            self.after = whole[at + len(self.mark) :]
            return whole[len(lead) : at] if at > len(lead) else b""
        keep = _partial_mark(whole, self.mark)
        start = len(whole) - keep if keep else len(whole)
        if start < len(lead):  # the possible mark began in what was already forwarded
            self._shown, self._held = lead[start:], buf
            return b""
        self._shown, self._held = b"", whole[start:]
        return whole[len(lead) : start]

    def flush(self) -> bytes:
        """What is held back, for a stream that has gone quiet (or ended without a mark):
        nearly always the step's own last newline. Should the rest of a mark follow after
        all, `feed` still takes it as the end."""
        held, self._held = self._held, b""
        self._shown += held
        return held


def _partial_mark(buf: bytes, mark: bytes) -> int:
    """The length of the longest end of `buf` that is a proper start of `mark`
    (which begins with a newline, so only newlines in the last bytes are candidates)."""
    low = max(0, len(buf) - len(mark) + 1)
    at = buf.rfind(b"\n", low)
    while at >= 0:
        if mark.startswith(buf[at:]):
            return len(buf) - at
        at = buf.rfind(b"\n", low, at)
    return 0
