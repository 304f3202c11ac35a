"""LocalConnection: the same run contract as SSH, on the controller itself."""

from __future__ import annotations

import os
import signal
import threading
import uuid
from pathlib import Path

from runner.connections.base import READ_SIZE
from runner.connections.local import LocalConnection
from tests.fleet import live_processes


class Collector:
    """An on_output callback keeping each stream's bytes."""

    def __init__(self) -> None:
        self.streams: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def __call__(self, stream: str, data: bytes) -> None:
        self.streams[stream] += data


def unique_sleep() -> str:
    return f"sleep 600.{uuid.uuid4().int % 10**9:09d}"


def test_run_returns_rc_and_streams_apart() -> None:
    out = Collector()
    result = LocalConnection().run("echo out; echo err >&2; exit 7", on_output=out)
    assert result.rc == 7 and not result.interrupted
    assert out.streams == {"stdout": b"out\n", "stderr": b"err\n"}


def test_env_and_cwd_apply(tmp_path: Path) -> None:
    out = Collector()
    result = LocalConnection().run(
        'printf "%s|" "$X"; pwd', on_output=out, env={"X": "a 'b' $c"}, cwd=str(tmp_path)
    )
    assert result.rc == 0
    assert out.streams["stdout"].decode() == f"a 'b' $c|{tmp_path}\n"


def test_each_command_is_its_own_process_group() -> None:
    out = Collector()
    started: list[int] = []
    result = LocalConnection().run("ps -o pgid= -p $$", on_output=out, on_start=started.append)
    assert int(out.streams["stdout"]) == result.pgid == started[0] != os.getpgrp()


def test_timeout_kills_the_process_group() -> None:
    sleep = unique_sleep()
    result = LocalConnection().run(f"{sleep} & {sleep}", on_output=Collector(), timeout=0.3)
    assert result.timed_out and result.rc == 128 + signal.SIGTERM
    assert live_processes(sleep) == []


def test_stop_event_kills_even_a_command_ignoring_term() -> None:
    sleep = unique_sleep()
    stop = threading.Event()
    result = LocalConnection().run(
        f"trap '' TERM; {sleep}",
        on_output=Collector(),
        stop_event=stop,
        on_start=lambda pgid: threading.Timer(0.2, stop.set).start(),
    )
    assert result.stopped and result.rc == 128 + signal.SIGKILL
    assert live_processes(sleep) == []


def test_stop_event_already_set_runs_nothing(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    marker = tmp_path / "ran"
    result = LocalConnection().run(f"touch {marker}", on_output=Collector(), stop_event=stop)
    assert result.stopped and not marker.exists()


def test_large_output_arrives_in_small_chunks() -> None:
    total = 0
    largest = 0

    def count(stream: str, data: bytes) -> None:
        nonlocal total, largest
        total += len(data)
        largest = max(largest, len(data))

    assert LocalConnection().run("head -c 20M /dev/zero", on_output=count).rc == 0
    assert total == 20 * 2**20 and largest <= READ_SIZE


def test_put_and_get_copy_files(tmp_path: Path) -> None:
    source = tmp_path / "a"
    source.write_bytes(b"payload")
    connection = LocalConnection()
    connection.put(source, str(tmp_path / "b"), mode=0o600)
    connection.get(str(tmp_path / "b"), tmp_path / "c")
    assert (tmp_path / "c").read_bytes() == b"payload"
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o600


def test_put_renames_into_place_with_ansible_copy_modes(tmp_path: Path) -> None:
    """A put replaces the destination by rename (new inode, a link replaced, not
    followed); without a mode an existing file keeps its mode and a new one gets the
    umask default, not the source's; a directory receives the file under its name."""
    source = tmp_path / "tool"
    source.write_bytes(b"payload")
    source.chmod(0o755)
    (tmp_path / "kept").write_bytes(b"old")
    (tmp_path / "kept").chmod(0o604)
    inode = (tmp_path / "kept").stat().st_ino
    (tmp_path / "victim").write_bytes(b"precious")
    (tmp_path / "link").symlink_to(tmp_path / "victim")
    (tmp_path / "into").mkdir()
    connection = LocalConnection()
    old = os.umask(0o022)
    try:
        for dest in ("kept", "fresh", "link", "into"):
            connection.put(source, str(tmp_path / dest))
    finally:
        os.umask(old)
    assert (tmp_path / "kept").stat().st_ino != inode
    modes = {name: (tmp_path / name).lstat().st_mode & 0o777 for name in ("kept", "fresh")}
    assert modes == {"kept": 0o604, "fresh": 0o644}
    assert (tmp_path / "victim").read_bytes() == b"precious"
    assert not (tmp_path / "link").is_symlink()
    for name in ("kept", "fresh", "link", "into/tool"):
        assert (tmp_path / name).read_bytes() == b"payload"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fresh",
        "into",
        "kept",
        "link",
        "tool",
        "victim",
    ]
