"""Jobs that keep their work and output on the target: detached jobs and remote results.

A child of such a job runs on its target as one shell script in a per-job directory
(``~/.runner/jobs/<child id>-<random>/`` unless the host's inventory variable
``runner_job_dir`` names another root; mode 0700; hosts sharing a home never collide).
The script runs in its own session and process group, independent of the SSH connection
and of the runner, and writes into its directory:

- ``pid``: its process id, which is also its process group id;
- ``N.out`` / ``N.err``: the output of step N, stdout and stderr apart;
- ``N.rc``: step N's exit status, once it has ended;
- ``done``: ``Completed``, ``Failed N RC`` or ``Stopped``, written last (atomically);
  ``Failed N RC nospace`` when the target's disk filled up during step N;
- ``reserve``: a few KiB held from the start and freed to write ``N.rc`` and ``done``,
  so a full disk is reported rather than leaving a job that ends without a word.

Everything is rendered when the job starts, so a step of such a job cannot use a result
registered by an earlier step of the same job (the planner refuses that).
"""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from runner.connections.base import Connection
from runner.errors import StepError

JOBS_ROOT = "~/.runner/jobs"  # per host: the inventory variable `runner_job_dir`
DONE_COMPLETED = "Completed"
DONE_STOPPED = "Stopped"
DONE_NO_SPACE = "nospace"
RESERVE_BYTES = 16384  # room for the last files on a full disk: a few blocks of any size


@dataclass(frozen=True)
class ScriptCommand:
    """One command of a step (one loop item) with its environment and directory, rendered."""

    text: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


@dataclass(frozen=True)
class ScriptStep:
    """One step as the target will run it: its commands already rendered."""

    index: int
    commands: tuple[ScriptCommand, ...]  # several for a loop, one per item
    sudo: bool = False
    timeout: float | None = None
    ignore_errors: bool = False
    no_log: bool = False


@dataclass
class RemoteStatus:
    """What the job directory on the target says now."""

    exists: bool
    alive: bool = False
    done: str | None = None
    sizes: dict[tuple[int, str], int] = field(default_factory=dict)
    rcs: dict[int, int] = field(default_factory=dict)
    pid: int | None = None

    @property
    def state(self) -> str:
        """The child's state, as the target reports it."""
        if self.done is not None:
            return self.done.split()[0]
        return "Running" if self.alive else "Failed"

    @property
    def reason(self) -> str | None:
        if self.done is not None:
            parts = self.done.split()
            if parts[0] == "Failed" and parts[3:] == [DONE_NO_SPACE]:
                return (
                    f"no space left on device in its job directory on the target during step"
                    f" {parts[1]} (its output may be incomplete); the step exited with status"
                    f" {parts[2]}"
                )
            if parts[0] == "Failed" and len(parts) == 3:
                return f"step {parts[1]} exited with status {parts[2]}"
            return None
        if not self.exists:
            return "its job directory is gone from the target"
        if not self.alive:
            return "its process on the target ended without finishing (killed?)"
        return None


def new_directory(child_id: int, root: str | None = None) -> str:
    """A job directory unique per job and per host, under `root` (`~/...` or absolute)."""
    root = (root or JOBS_ROOT).rstrip("/")
    if not root.startswith(("~/", "/")) or "\0" in root or ".." in root.split("/"):
        raise StepError(f"runner_job_dir must be absolute or start with ~/, not {root!r}")
    return f"{root}/{child_id}-{uuid.uuid4().hex[:12]}"


def _q(text: str) -> str:
    return shlex.quote(text)


def shell_path(directory: str) -> str:
    """`directory` for /bin/sh on the target: `~/x` becomes "$HOME"/'x', quoted."""
    if directory.startswith("~/"):
        return f'"$HOME"/{_q(directory[2:])}'
    return _q(directory)


def build_script(directory: str, steps: list[ScriptStep]) -> str:
    """The /bin/sh script that runs every step, writing into `directory`.

    Each command runs in the background and the script waits for it, so a TERM sent to
    the job's process group reaches the script's trap at once. A step's `timeout` is a
    watchdog that marks the step timed out, then ends the whole group. After each step a
    one-byte write probes the disk: when it fails, the reserve is freed and the job ends
    `Failed ... nospace`, since the step's output may have been cut short.
    """
    lines = [
        "#!/bin/sh",
        f"d={shell_path(directory)}",
        "umask 077",
        (
            'finish() { rm -f "$d/reserve"; echo "$1" > "$d/done.tmp" && '
            'mv "$d/done.tmp" "$d/done"; exit "${2:-0}"; }'
        ),
        'full() { printf x 2>/dev/null > "$d/space"; r=$?; rm -f "$d/space"; [ "$r" -ne 0 ]; }',
        f'head -c {RESERVE_BYTES} /dev/zero 2>/dev/null > "$d/reserve" || rm -f "$d/reserve"',
        (
            'on_term() { if [ -f "$d/timedout" ]; then '
            'finish "Failed $(cat "$d/timedout") 124" 124; else finish Stopped 143; fi; }'
        ),
        "trap on_term TERM",
        'echo $$ > "$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid"',
    ]
    for step in steps:
        lines.extend(_step_lines(step))
    lines.append(f"finish {DONE_COMPLETED}")
    return "\n".join(lines) + "\n"


def _step_lines(step: ScriptStep) -> list[str]:
    n = step.index
    out = "/dev/null" if step.no_log else f'"$d/{n}.out"'
    err = "/dev/null" if step.no_log else f'"$d/{n}.err"'
    lines = [f": > {out}; : > {err}; rc=0"]
    if step.timeout:
        lines.append(
            f'(sleep {step.timeout:g} & echo $! > "$d/watchdog"; wait $!; '
            f'echo {n} > "$d/timedout"; kill -TERM -$$) & w=$!'
        )
    for i, command in enumerate(step.commands):
        shell, body, end = _step_command(step, command)
        run = f"{shell} >> {out} 2>> {err} <<'{end}' & wait $!; rc=$?\n{body}\n{end}"
        guard = i > 0 and not step.ignore_errors
        lines.append(f'if [ "$rc" -eq 0 ]; then {run}\nfi' if guard else run)
    if step.timeout:
        lines.append('kill "$w" "$(cat "$d/watchdog")" 2>/dev/null; rm -f "$d/watchdog"')
    lines.append(
        f'if full; then rm -f "$d/reserve"; echo "$rc" > "$d/{n}.rc"; '
        f'finish "Failed {n} $rc {DONE_NO_SPACE}" 1; fi'
    )
    lines.append(f'echo "$rc" > "$d/{n}.rc"')
    if not step.ignore_errors:
        lines.append(f'[ "$rc" -eq 0 ] || finish "Failed {n} $rc" "$rc"')
    return lines


def _step_command(step: ScriptStep, command: ScriptCommand) -> tuple[str, str, str]:
    """The shell that runs one command, the text it reads from its stdin (a here-document
    ending at the returned word), and that word. The command, its environment and its
    directory are in no process's arguments, where `ps` would show them to every user:
    the shell sources its stdin, which then becomes /dev/null."""
    body = ["exec </dev/null"]
    body.extend(f"export {name}={_q(str(value))}" for name, value in command.env.items())
    if command.cwd:
        body.append(f"cd {_q(command.cwd)} || exit 1")
    body.append(command.text)
    shell = "sh -c '. /dev/stdin'"
    if step.sudo:
        inner = '"$(id -u)" -ne 0 ] && exec sudo -n sh -c ". /dev/stdin"; exec sh -c ". /dev/stdin"'
        shell = f"sh -c {_q('[ ' + inner)}"
    return shell, "; ".join(body), f"RUNNER_STEP_{uuid.uuid4().hex}"


def launch(conn: Connection, directory: str, script: str) -> int:
    """Create the job directory and start the script detached: one round trip. Returns
    the job's process group id on the target.

    The script reaches the job's shell on its stdin, read whole before it starts: it is
    never written to a file (it may hold secrets a `no_log` step uses) nor put in a
    process's arguments."""
    d = shell_path(directory)
    marker = f"RUNNER_SCRIPT_{uuid.uuid4().hex}"
    job = 'c=$(cat) && exec </dev/null && eval "$c"'
    text = _check(
        conn,
        f"umask 077; mkdir -p {d} || exit 1\n"
        f"(cd / && setsid sh -c {_q(job)} > /dev/null 2>&1 <<'{marker}' &)\n{script}{marker}\n"
        f"i=0; while [ ! -s {d}/pid ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done; "
        f"cat {d}/pid",
        f"could not start the job in {directory}",
    )
    if not text.isdigit():
        raise OSError(f"{conn.host}: the job in {directory} did not start")
    return int(text)


def _check(conn: Connection, command: str, what: str) -> str:
    """Run a short command; its stdout, or OSError with its stderr."""
    output: list[bytes] = []
    errors: list[bytes] = []

    def collect(stream: str, data: bytes) -> None:
        (output if stream == "stdout" else errors).append(data)

    result = conn.run(command, on_output=collect, timeout=30)
    if result.rc != 0:
        why = b"".join(errors).decode(errors="replace").strip() or f"exit status {result.rc}"
        raise OSError(f"{conn.host}: {what}: {why}")
    return b"".join(output).decode(errors="replace").strip()


_STATUS = """d={dir}
[ -d "$d" ] || {{ echo missing; exit 0; }}
pid=$(cat "$d/pid" 2>/dev/null)
echo "pid $pid"
if [ -n "$pid" ] && kill -0 -"$pid" 2>/dev/null; then echo alive; fi
[ -f "$d/done" ] && echo "done $(cat "$d/done")"
for f in "$d"/*.out "$d"/*.err; do [ -f "$f" ] && echo "size ${{f##*/}} $(wc -c < "$f")"; done
for f in "$d"/*.rc; do [ -f "$f" ] && echo "rc ${{f##*/}} $(cat "$f")"; done
exit 0
"""


def status(conn: Connection, directory: str) -> RemoteStatus:
    """Read the job directory's state in one round trip."""
    return parse_status(
        _check(conn, _STATUS.format(dir=shell_path(directory)), "could not read status")
    )


def parse_status(text: str) -> RemoteStatus:
    lines = text.splitlines()
    if lines and lines[0] == "missing":
        return RemoteStatus(exists=False)
    result = RemoteStatus(exists=True)
    for line in lines:
        word, _, rest = line.partition(" ")
        if word == "pid" and rest.strip().isdigit():
            result.pid = int(rest)
        elif word == "alive":
            result.alive = True
        elif word == "done":
            result.done = rest.strip()
        elif word == "size":
            name, _, size = rest.partition(" ")
            step, _, ext = name.partition(".")
            if step.isdigit() and size.strip().isdigit():
                stream = "stdout" if ext == "out" else "stderr"
                result.sizes[(int(step), stream)] = int(size)
        elif word == "rc":
            name, _, rc = rest.partition(" ")
            step = name.partition(".")[0]
            if step.isdigit() and rc.strip().lstrip("-").isdigit():
                result.rcs[int(step)] = int(rc)
    return result


def read(
    conn: Connection,
    directory: str,
    step: int,
    stream: str,
    offset: int,
    length: int,
    on_data: Callable[[bytes], None],
) -> None:
    """Stream `length` bytes of step `step`'s `stream` from byte `offset` to `on_data`."""
    ext = "out" if stream == "stdout" else "err"
    path = f"{shell_path(directory)}/{int(step)}.{ext}"
    command = f"tail -c +{int(offset) + 1} {path} | head -c {int(length)}"
    result = conn.run(
        command, on_output=lambda s, d: on_data(d) if s == "stdout" else None, timeout=None
    )
    if result.rc != 0:
        raise OSError(f"could not read {directory}/{step}.{ext} on {conn.host}")


def mark_stopped(conn: Connection, directory: str, pgid: int | None) -> None:
    """End the job's process group on the target and record that it was stopped."""
    if pgid:
        conn.kill_process_group(pgid)
    d = shell_path(directory)
    _check(conn, f"[ -f {d}/done ] || echo {DONE_STOPPED} > {d}/done", "could not mark it stopped")


def remove_directory(conn: Connection, directory: str) -> None:
    """Delete the job directory on the target."""
    name = directory.rsplit("/", 1)[-1]
    if not re.fullmatch(r"\d+-[0-9a-f]{12}", name) or ".." in directory.split("/"):
        raise ValueError(f"refusing to remove {directory!r}: not a job directory")
    _check(conn, f"rm -rf {shell_path(directory)}", f"could not remove {directory}")
