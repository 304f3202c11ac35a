"""Every byte of a job's output delivered exactly once, and a store that fails said so.

`receive --wait` racing a job's last line, a reader that goes away (`| head -1`), a
receive killed with SIGKILL, a full disk under the store, and a damaged, empty or
read-only store: each checked by what a user sees (exit code, the one line, the output).
Every host uses the local connection: no SSH server is needed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.jobs.store import JobStore
from tests.cli import wait_until

INVENTORY = "localhost ansible_connection=local\n"
PIPE_BYTES = 65536  # a Linux pipe's capacity: what a reader that went away may have lost
WIDE = 200  # characters in each line of the stored outputs below


def write(cli: Any, name: str, text: str) -> str:
    path = cli.cwd / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# -- 1. receive --wait never ends before the job's last line -------------------------------


def _receiver(home: Path, name: str, out: Path) -> None:
    """A forked `runner job receive NAME --wait`, stdout to `out`; exits with its code."""
    code = 250
    try:
        sys.stdout = open(out, "w", encoding="utf-8")  # noqa: SIM115 - this process's stdout
        os.environ["RUNNER_HOME"] = str(home)
        from runner.cli.main import main

        code = main(["job", "receive", name, "--wait"])
        sys.stdout.flush()
    finally:
        os._exit(code)


def wave_playbook(cli: Any, waves: int, per_wave: int) -> str:
    """Jobs that end right after their last line, let go a wave at a time: each wave
    needs a gate job that waits for the file `go-W`."""
    text = ["name: lastline", "jobs:"]
    for wave in range(waves):
        gate = f"while [ ! -e {cli.cwd}/go-{wave} ]; do sleep 0.05; done"
        text += [
            f"  - name: gate{wave}",
            "    targets: localhost",
            "    steps:",
            f"      - run: '{gate}'",
        ]
        for number in range(wave * per_wave, (wave + 1) * per_wave):
            text += [
                f"  - name: j{number}",
                "    targets: localhost",
                f"    needs: [gate{wave}]",
                "    steps:",
                f"      - run: echo first-{number}; sleep 0.2; echo last-line-{number}",
            ]
    return write(cli, "play.yml", "\n".join(text) + "\n")


def test_receive_wait_ends_with_the_last_line_in_200_runs(cli: Any) -> None:
    waves, per_wave = 10, 20
    play = wave_playbook(cli, waves, per_wave)
    run = cli.start("run", play, "-i", write(cli, "hosts.ini", INVENTORY), "-f", "40", "-q")
    store_file = cli.home / "jobs.db"
    created = waves * (per_wave + 1)

    def all_created() -> bool:
        assert run.poll() is None, run.communicate()
        return store_file.exists() and len(JobStore(store_file).list_jobs()) >= created

    wait_until(all_created, timeout=120, what=f"the run to create its {created} jobs")
    short = []
    for wave in range(waves):
        receivers = {}
        for number in range(wave * per_wave, (wave + 1) * per_wave):
            out = cli.cwd / f"received-{number}.txt"
            pid = os.fork()
            if pid == 0:
                _receiver(cli.home, f"j{number}", out)
            receivers[number] = (pid, out)
        (cli.cwd / f"go-{wave}").touch()  # the wave's jobs start, their receivers waiting
        for number, (pid, out) in receivers.items():
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            if not out.read_text().endswith(f"last-line-{number}\n"):
                short.append((number, out.read_text()))
    assert run.wait(timeout=120) == 0, run.communicate()
    assert short == []


# -- 2. a reader that goes away, a receive killed: nothing unwritten is lost -------------------


def stored_job(home: Path, lines: int) -> int:
    """A finished job with `lines` output records of WIDE characters, in a real store."""
    home.mkdir(mode=0o700, exist_ok=True)
    store = JobStore(home / "jobs.db")
    job = store.create_job("big", "thread", "seq", "localhost")
    for start in range(1, lines + 1, 1000):
        store.append_output(
            [
                (job, "localhost", 0, "stdout", f"line {n:06d} ".ljust(WIDE - 1, ".") + "\n", n)
                for n in range(start, min(lines, start + 999) + 1)
            ]
        )
    store.close()
    return job


def numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"^line (\d+) ", text, flags=re.MULTILINE)]


def received_numbers(cli: Any, job: int) -> list[int]:
    return numbers("".join(r["data"] for r in cli.receive(job)))


def assert_rest_is_whole(rest: list[int], total: int) -> None:
    """The later receive: no more than a pipe's worth missing at the front, then every
    line once, in order, to the last."""
    assert rest, "the later receive got nothing"
    assert (rest[0] - 1) * WIDE <= PIPE_BYTES, f"lines 1..{rest[0] - 1} were consumed"
    assert rest == list(range(rest[0], total + 1))


def first_line(proc: subprocess.Popen[bytes]) -> bytes:
    """Read the receive's stdout up to its first newline, with the raw file descriptor."""
    assert proc.stdout is not None
    seen = b""
    while b"\n" not in seen:
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, "the receive wrote nothing"
        seen += chunk
    return seen


def start_receive(cli: Any, job: int) -> subprocess.Popen[bytes]:
    return cli.start("job", "receive", str(job), text=False)


def test_receive_into_a_pipe_closed_early_leaves_the_rest_unreceived(cli: Any) -> None:
    job = stored_job(cli.home, 5000)
    proc = start_receive(cli, job)  # runner job receive ID | head -1
    assert first_line(proc).startswith(b"line 000001 ")
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr is not None and proc.stderr.read() == b""  # quiet, as a filter ends
    assert_rest_is_whole(received_numbers(cli, job), 5000)


def test_receive_killed_with_sigkill_leaves_the_rest_unreceived(cli: Any) -> None:
    job = stored_job(cli.home, 20000)
    proc = start_receive(cli, job)
    first_line(proc)  # it is writing; the full pipe now holds it
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert_rest_is_whole(received_numbers(cli, job), 20000)


# -- 3. a full disk under the store stops the run ---------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB file system (tmpfs), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "small"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_full_disk_stops_the_run_and_names_the_store(cli: Any, small_disk: Path) -> None:
    home = small_disk / "home"
    cli.env["RUNNER_HOME"] = str(home)
    inventory = write(cli, "hosts.ini", INVENTORY)
    play = write(
        cli,
        "play.yml",
        """\
        name: full
        jobs:
          - name: big
            targets: localhost
            steps:
              - run: seq 1 1000000
              - run: echo second-step
        """,
    )
    proc = cli("run", play, "-i", inventory, "--format", "json", timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc.stderr)
    assert lines[-1].startswith("runner: error: ") and str(home / "jobs.db") in lines[-1]
    assert "Traceback" not in proc.stderr
    document = json.loads(proc.stdout)
    assert document["exit_code"] == 1 and str(home / "jobs.db") in document["error"]
    child = document["jobs"][0]["children"][0]
    assert child["State"] == "Failed"
    listed = cli.jobs("--children")
    assert [j["State"] for j in listed] == ["Failed", "Failed"]
    assert str(home / "jobs.db") in listed[1]["Reason"]
    data = "".join(r["data"] for r in cli.receive(1, "--keep"))
    kept = [int(n) for n in data.split()]
    assert kept == list(range(1, len(kept) + 1)), "a hole in the stored output"
    assert len(kept) < 1000000


# -- 4. a damaged, empty or read-only store ---------------------------------------------------

SMALL_PLAY = """\
    name: small
    jobs:
      - name: small
        targets: localhost
        steps:
          - run: seq 1 300
    """


def assert_refused(cli: Any, store: Path, *commands: tuple[str, ...]) -> None:
    """Each command exits 1 with one line naming the store file, and no traceback."""
    for command in commands:
        proc = cli(*command)
        lines = error_lines(proc.stderr)
        assert proc.returncode == 1, (command, proc.stderr)
        assert len(lines) == 1 and str(store) in lines[0], (command, proc.stderr)
        assert lines[0].startswith("runner: error: ")


def everything(cli: Any) -> list[tuple[str, ...]]:
    inventory = write(cli, "hosts.ini", INVENTORY)
    play = write(cli, "play.yml", SMALL_PLAY)
    return [
        ("job", "list"),
        ("job", "receive", "1"),
        ("job", "show", "1"),
        ("run", play, "-i", inventory),
    ]


def real_store(cli: Any) -> Path:
    """A store with one finished job, its log folded into the file."""
    cli(
        "run",
        write(cli, "play.yml", SMALL_PLAY),
        "-i",
        write(cli, "hosts.ini", INVENTORY),
        check=True,
    )
    path = cli.home / "jobs.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def test_a_store_of_garbage_bytes_is_named_with_what_to_do(cli: Any) -> None:
    cli.home.mkdir(mode=0o700)
    store = cli.home / "jobs.db"
    store.write_bytes(os.urandom(20000))
    assert_refused(cli, store, *everything(cli))
    assert "move it aside" in cli("job", "list").stderr


def test_a_truncated_store_is_named_with_what_to_do(cli: Any) -> None:
    store = real_store(cli)
    assert store.stat().st_size > 3 * 4096
    with open(store, "r+b") as handle:
        handle.truncate(2 * 4096)
    assert_refused(cli, store, *everything(cli))


def test_an_empty_store_is_refused_not_recreated(cli: Any) -> None:
    cli.home.mkdir(mode=0o700)
    store = cli.home / "jobs.db"
    store.touch(mode=0o600)
    assert_refused(cli, store, *everything(cli))
    assert store.stat().st_size == 0


def test_an_empty_store_beside_its_write_ahead_log_is_refused(cli: Any) -> None:
    """Truncated while its -wal file (where the jobs are until a checkpoint) stays."""
    cli(
        "run",
        write(cli, "play.yml", SMALL_PLAY),
        "-i",
        write(cli, "hosts.ini", INVENTORY),
        check=True,
    )
    store = cli.home / "jobs.db"
    assert store.with_name("jobs.db-wal").stat().st_size > 0
    store.write_bytes(b"")
    assert_refused(cli, store, *everything(cli))
    assert store.stat().st_size == 0


def test_a_store_that_is_not_a_file_is_named(cli: Any) -> None:
    """Root reads any file whatever its mode; a directory in its place it cannot open."""
    (cli.home / "jobs.db").mkdir(parents=True)
    assert_refused(cli, cli.home / "jobs.db", *everything(cli))


def test_a_read_only_runner_home_is_named(cli: Any, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    real_store(cli)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(readonly)], check=True)
    try:
        subprocess.run(["cp", "-a", f"{cli.home}/.", str(readonly)], check=True)
        subprocess.run(["mount", "-o", "remount,ro", str(readonly)], check=True)
        cli.env["RUNNER_HOME"] = str(readonly)
        inventory = write(cli, "hosts.ini", INVENTORY)
        play = write(cli, "play.yml", SMALL_PLAY)
        assert_refused(
            cli, readonly / "jobs.db", ("job", "receive", "1"), ("run", play, "-i", inventory)
        )
        cli.env["RUNNER_HOME"] = str(readonly / "new")
        assert_refused(cli, readonly / "new", ("job", "list"))
    finally:
        subprocess.run(["umount", str(readonly)], check=True)


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_a_run_into_a_pipe_closed_early_finishes_keeps_its_output_and_says_so(
    cli: Any, verbose: list[str]
) -> None:
    """`runner run ... | head -1`: the jobs go on and keep their output; exit 1 with one
    line, no traceback (it used to end 0 with the jobs Failed and their output lost)."""
    hosts = write(cli, "hosts.ini", INVENTORY)
    play = write(
        cli,
        "p.yml",
        """
        jobs:
          - name: a
            targets: localhost
            steps:
              - run: "echo one; sleep 1; echo two"
              - run: "echo three"
        """,
    )
    proc = cli.start("run", play, "-i", hosts, *verbose, text=False)
    assert first_line(proc)  # `head -1` read its line and went away
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.wait(timeout=60) == 1
    assert proc.stderr is not None
    errors = error_lines(proc.stderr.read().decode())
    assert len(errors) == 1 and "standard output was closed" in errors[0], errors
    [job] = cli.jobs()
    assert job["State"] == "Completed"
    received = cli("job", "receive", str(job["Id"]), check=True)
    assert received.stdout.split() == ["one", "two", "three"]
