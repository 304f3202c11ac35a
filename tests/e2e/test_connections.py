"""SSHConnection against real sshd daemons on loopback (the `fleet` fixture)."""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import wait_until

from runner.connections.base import READ_SIZE
from runner.connections.ssh import SSHConnection
from runner.errors import ConnectError, HostKeyError
from tests.fleet import Fleet, live_processes, sshd_available


class Collector:
    """An on_output callback keeping each stream's bytes, for small outputs."""

    def __init__(self) -> None:
        self.streams: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def __call__(self, stream: str, data: bytes) -> None:
        self.streams[stream] += data

    @property
    def stdout(self) -> str:
        return self.streams["stdout"].decode()

    @property
    def stderr(self) -> str:
        return self.streams["stderr"].decode()


def connect(fleet: Fleet, i: int, home: Path, **kwargs: object) -> SSHConnection:
    name, address, port = fleet.hosts[i]
    options: dict[str, object] = {
        "user": "root",
        "key_file": fleet.client_key,
        "known_hosts": home / "known_hosts",
        "connect_timeout": 5.0,
    }
    options.update(kwargs)
    return SSHConnection(name, address, port, **options)  # type: ignore[arg-type]


@pytest.fixture(params=["step shell", "exec channels"])
def conn(
    fleet: Fleet, runner_home: Path, request: pytest.FixtureRequest
) -> Iterator[SSHConnection]:
    """A connection running steps in its step shell, and one running each on a channel."""
    step_shell = request.param == "step shell"
    with connect(fleet, 0, runner_home, step_shell=step_shell) as connection:
        yield connection


def unique_sleep() -> str:
    """A sleep command line no other process on this machine has."""
    return f"sleep 600.{uuid.uuid4().int % 10**9:09d}"


def test_run_returns_rc_and_streams_stdout_and_stderr_apart(conn: SSHConnection) -> None:
    out = Collector()
    result = conn.run("echo out; echo err >&2; exit 3", on_output=out)
    assert result.rc == 3
    assert not result.interrupted
    assert out.stdout == "out\n"
    assert out.stderr == "err\n"  # the process-group line is not shown


def test_the_session_is_encrypted_with_aes_gcm(conn: SSHConnection) -> None:
    # OpenSSH offers it; paramiko would pick AES-CTR with a MAC checked in Python.
    transport = conn._transport()
    assert (transport.local_cipher, transport.remote_cipher) == ("aes128-gcm@openssh.com",) * 2


def test_env_and_cwd_apply_to_the_command(conn: SSHConnection, tmp_path: Path) -> None:
    out = Collector()
    env = {"GREETING": "it's a 'quoted' $value"}
    result = conn.run('printf "%s|" "$GREETING"; pwd', on_output=out, env=env, cwd=str(tmp_path))
    assert result.rc == 0
    assert out.stdout == f"it's a 'quoted' $value|{tmp_path}\n"


def test_missing_cwd_fails_the_command(conn: SSHConnection) -> None:
    out = Collector()
    result = conn.run("echo never", on_output=out, cwd="/nonexistent/dir")
    assert result.rc != 0
    assert out.stdout == ""


def test_sudo_as_root_runs_the_command_as_is(conn: SSHConnection) -> None:
    out = Collector()
    assert conn.run("id -u", on_output=out, sudo=True).rc == 0
    assert out.stdout == "0\n"


def test_put_and_get_round_trip_with_mode(conn: SSHConnection, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(300_000))
    remote = f"/tmp/runner-put-{uuid.uuid4().hex}"
    back = tmp_path / "back.bin"
    try:
        conn.put(source, remote, mode=0o640)
        conn.get(remote, back)
        assert back.read_bytes() == source.read_bytes()
        assert Path(remote).stat().st_mode & 0o777 == 0o640  # every fleet host is this machine
    finally:
        Path(remote).unlink(missing_ok=True)


def test_timeout_ends_the_whole_remote_process_group(conn: SSHConnection) -> None:
    sleep = unique_sleep()
    out = Collector()
    result = conn.run(f"{sleep} & {sleep}; echo not reached", on_output=out, timeout=0.5)
    assert result.timed_out and not result.stopped
    assert result.rc != 0
    assert "not reached" not in out.stdout
    assert live_processes(sleep) == []


def test_stop_event_ends_the_command_and_its_children(conn: SSHConnection) -> None:
    sleep = unique_sleep()
    stop = threading.Event()
    started: list[int] = []

    def on_start(pgid: int) -> None:
        started.append(pgid)
        threading.Timer(0.3, stop.set).start()

    # The shell ignores TERM, so only the KILL after the grace ends it.
    result = conn.run(
        f"trap '' TERM; {sleep}", on_output=Collector(), stop_event=stop, on_start=on_start
    )
    assert result.stopped and not result.timed_out
    assert started == [result.pgid]
    assert live_processes(sleep) == []


def test_a_stop_on_a_host_running_thousands_of_processes_ends_the_step(
    conn: SSHConnection,
) -> None:
    """The kill script's grace is wall time: on a host with 2,500 more processes each
    check of /proc is slow, and forty checks outlasted the runner's wait for an answer
    ("no answer while ending process group")."""
    crowd = []
    try:
        for _ in range(2500):
            crowd.append(subprocess.Popen(["sleep", "120"], stdin=subprocess.DEVNULL))
        test_stop_event_ends_the_command_and_its_children(conn)
    finally:
        for proc in crowd:
            proc.kill()
        for proc in crowd:
            proc.wait()


def test_another_connection_can_kill_a_process_group(
    fleet: Fleet, conn: SSHConnection, runner_home: Path
) -> None:
    sleep = unique_sleep()
    killers: list[threading.Thread] = []
    with connect(fleet, 0, runner_home) as other:

        def killer(pgid: int) -> None:
            killers.append(threading.Thread(target=other.kill_process_group, args=(pgid,)))
            killers[-1].start()

        result = conn.run(sleep, on_output=Collector(), on_start=killer)
        for thread in killers:  # its answer comes back before `other` closes
            thread.join(timeout=30)
    assert result.rc == 128 + signal.SIGTERM
    assert live_processes(sleep) == []


def test_many_connections_opened_and_closed_at_once_all_work(
    fleet: Fleet, runner_home: Path
) -> None:
    # As a fleet run opens, uses and closes its connections from many threads at once.
    hosts = range(len(fleet.hosts))
    before = [fleet.count_connections(i) for i in hosts]
    problems: list[str] = []

    def cycle(i: int) -> None:
        try:
            for _ in range(3):
                with connect(fleet, i % len(fleet.hosts), runner_home) as connection:
                    rc = connection.run("true", on_output=Collector()).rc
                    if rc != 0:
                        problems.append(f"exit status {rc}")
        except Exception as error:  # noqa: BLE001 - each is what a host would fail with
            problems.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=cycle, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    # Every connection was closed: sshd's side goes away too (the next tests count them).
    wait_until(
        lambda: all(fleet.count_connections(i) <= before[i] for i in hosts),
        what=f"sshd's connections to go back to {before}",
    )


def test_commands_share_one_ssh_connection(fleet: Fleet, runner_home: Path) -> None:
    before = fleet.count_connections(1)
    with connect(fleet, 1, runner_home) as connection:
        threads = [
            threading.Thread(
                target=connection.run, args=("sleep 0.2",), kwargs={"on_output": Collector()}
            )
            for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        during = fleet.count_connections(1)
        for thread in threads:
            thread.join()
    assert during - before == 1


def test_new_host_key_is_recorded_in_a_private_known_hosts(fleet: Fleet, runner_home: Path) -> None:
    _, address, port = fleet.hosts[2]
    with connect(fleet, 2, runner_home):
        pass
    known_hosts = runner_home / "known_hosts"
    assert known_hosts.stat().st_mode & 0o777 == 0o600
    host_key = Path(f"{fleet.host(2).host_key}.pub").read_text().split()
    assert known_hosts.read_text() == f"[{address}]:{port} {host_key[0]} {host_key[1]}\n"
    with connect(fleet, 2, runner_home):  # the recorded key is accepted again, once
        pass
    assert len(known_hosts.read_text().splitlines()) == 1


def test_changed_host_key_is_refused_naming_the_known_hosts_line(
    fleet: Fleet, runner_home: Path
) -> None:
    _, address, port = fleet.hosts[3]
    known_hosts = runner_home / "known_hosts"
    wrong = Path(f"{fleet.client_key}.pub").read_text().split()[:2]
    known_hosts.write_text(f"# first line\n[{address}]:{port} {wrong[0]} {wrong[1]}\n")
    with pytest.raises(HostKeyError) as caught:
        connect(fleet, 3, runner_home).open()
    assert f"{known_hosts}:2" in str(caught.value)
    assert str(caught.value).startswith(f"{fleet.hosts[3][0]}: host key for [{address}]:{port}")


def test_wrong_client_key_fails_authentication(
    fleet: Fleet, runner_home: Path, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {stranger}")
    with pytest.raises(ConnectError) as caught:
        connect(fleet, 0, runner_home, key_file=stranger).open()
    assert f"authentication failed for user root with key {stranger}" in str(caught.value)


def test_silent_server_times_out_after_connect_timeout(runner_home: Path, fleet: Fleet) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        connection = SSHConnection(
            "silent",
            "127.0.0.1",
            port,
            key_file=fleet.client_key,
            connect_timeout=1,
            known_hosts=runner_home / "known_hosts",
        )
        with pytest.raises(ConnectError) as caught:
            connection.open()
    assert str(caught.value) == f"silent: connection to 127.0.0.1:{port} timed out after 1 s"


def test_closed_port_is_connection_refused(runner_home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: nobody accepts
        connection = SSHConnection("closed", "127.0.0.1", port, known_hosts=runner_home / "kh")
        with pytest.raises(ConnectError) as caught:
            connection.open()
    assert str(caught.value) == f"closed: connection refused by 127.0.0.1:{port}"


def test_100_mb_of_output_streams_through_in_small_chunks(conn: SSHConnection) -> None:
    counts = {"stdout": 0, "stderr": 0}
    largest = 0

    def count(stream: str, data: bytes) -> None:
        nonlocal largest
        counts[stream] += len(data)
        largest = max(largest, len(data))

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    result = conn.run("head -c 100M /dev/zero | base64 -w 0", on_output=count)
    peak_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert result.rc == 0
    assert counts == {"stdout": 4 * ((100 * 2**20 + 2) // 3), "stderr": 0}
    assert largest <= READ_SIZE
    assert peak_growth_mb < 64


def test_dead_peer_is_noticed_through_keepalive(runner_home: Path) -> None:
    if not sshd_available():
        pytest.skip("OpenSSH server not installed")
    with Fleet(1, prefix="frozen") as own:
        connection = connect(own, 0, runner_home, keepalive=1)
        connection.open()
        frozen: list[int] = []

        def freeze(pgid: int) -> None:  # the host stops answering, the TCP connection stays
            frozen.extend(own.connection_pids(0))
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):  # a child that just ended
                    os.kill(pid, signal.SIGSTOP)

        try:
            with pytest.raises(ConnectError) as caught:
                connection.run("sleep 30", on_output=Collector(), on_start=freeze)
        finally:
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):  # ended while listed
                    os.kill(pid, signal.SIGCONT)
            connection.close()
    assert str(caught.value) == "frozen1: connection lost: no answer for 1 s"


def test_host_restarted_with_same_key_is_accepted_again(fleet: Fleet, runner_home: Path) -> None:
    with connect(fleet, 4, runner_home) as connection:
        fleet.stop_host(4)
        with pytest.raises(ConnectError):
            connection.run("true", on_output=Collector())
        fleet.start_host(4)
        connection.open()
        assert connection.run("true", on_output=Collector()).rc == 0


def test_print_latency_of_true_on_an_open_connection(conn: SSHConnection) -> None:
    for _ in range(5):
        conn.run("true", on_output=Collector())
    count = 50
    started = time.perf_counter()
    for _ in range(count):
        conn.run("true", on_output=Collector())
    print(f"\nSSH run('true') latency: {(time.perf_counter() - started) / count * 1000:.2f} ms")


# -- the step shell (runner.connections.stepshell) ------------------------------------------


def test_steps_on_one_connection_run_in_one_shell_on_the_target(
    fleet: Fleet, runner_home: Path
) -> None:
    def parents(step_shell: bool) -> set[str]:
        seen = set()
        with connect(fleet, 2, runner_home, step_shell=step_shell) as connection:
            for _ in range(3):
                out = Collector()
                assert connection.run('echo "$PPID $(cat /proc/$PPID/comm)"', on_output=out).rc == 0
                seen.add(out.stdout)
        return seen

    in_shell = parents(step_shell=True)
    assert len(in_shell) == 1 and in_shell.pop().split()[1] == "bash"
    on_channels = {line.split()[1] for line in parents(step_shell=False)}
    assert len(on_channels) == 1 and on_channels.pop().startswith("sshd")


def test_a_step_in_the_shell_has_default_signals_and_a_group_of_its_own(
    conn: SSHConnection,
) -> None:
    # `cmd &` in a shell without job control would start the step with SIGINT ignored.
    out = Collector()
    script = "trap 'echo got INT' INT; kill -INT $$; ps -o pgid= -p $$"
    result = conn.run(script, on_output=out)
    assert result.rc == 0
    assert out.stdout.split() == ["got", "INT", str(result.pgid)]


def test_output_of_processes_a_step_leaves_behind_is_still_the_steps(conn: SSHConnection) -> None:
    out = Collector()
    result = conn.run("(sleep 0.3; echo late; echo late-err >&2) & echo early", on_output=out)
    assert result.rc == 0
    assert out.stdout == "early\nlate\n"
    assert out.stderr == "late-err\n"
    after = Collector()
    assert conn.run("echo next", on_output=after).rc == 0
    assert after.stdout == "next\n"


def test_a_detached_background_process_does_not_hold_the_step(conn: SSHConnection) -> None:
    sleep = unique_sleep()
    out = Collector()
    result = conn.run(f"nohup {sleep} >/dev/null 2>&1 & echo started", on_output=out)
    try:
        assert result.rc == 0 and out.stdout == "started\n"
        assert live_processes(sleep) != []  # the step ended while its sleep goes on
        follow = Collector()
        assert conn.run("echo next", on_output=follow).rc == 0
        assert follow.stdout == "next\n"
    finally:
        for pid in live_processes(sleep):
            os.kill(pid, signal.SIGKILL)


def test_output_without_a_last_newline_and_blank_lines_arrive_exactly(conn: SSHConnection) -> None:
    for text in ["", "no newline", "\n", "a\n\n\n", "x\n" * 5000 + "end"]:
        out = Collector()
        result = conn.run(
            f"printf '%s' {shlex.quote(text)}; printf '%s' {shlex.quote(text)} >&2", on_output=out
        )
        assert result.rc == 0
        assert (out.stdout, out.stderr) == (text, text)


def test_a_line_is_shown_while_the_step_still_runs(conn: SSHConnection, tmp_path: Path) -> None:
    # The step waits for a file that is made only once its first line has been seen.
    flag = tmp_path / "seen"
    out = Collector()

    def on_output(stream: str, data: bytes) -> None:
        out(stream, data)
        if out.stdout == "waiting\n":
            flag.touch()

    script = f"echo waiting; while [ ! -e {flag} ]; do sleep 0.05; done; echo done"
    result = conn.run(script, on_output=on_output, timeout=30)
    assert not result.timed_out, f"only {out.stdout!r} arrived while the step ran"
    assert out.stdout == "waiting\ndone\n"


def test_a_script_too_long_for_the_shell_runs_on_a_channel(conn: SSHConnection) -> None:
    script = "# " + "x" * 20000 + "\necho long script ran"
    out = Collector()
    assert conn.run(script, on_output=out).rc == 0
    assert out.stdout == "long script ran\n"


def test_steps_at_once_on_one_connection_each_get_their_own_output(conn: SSHConnection) -> None:
    outs = [Collector() for _ in range(6)]
    results: list[int] = [-1] * 6

    def one(i: int) -> None:
        results[i] = conn.run(f"sleep 0.1; echo step {i}; exit {i}", on_output=outs[i]).rc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == list(range(6))
    assert [o.stdout for o in outs] == [f"step {i}\n" for i in range(6)]


def test_a_step_that_kills_its_shell_leaves_the_next_step_working(
    fleet: Fleet, runner_home: Path
) -> None:
    with connect(fleet, 2, runner_home) as connection:
        out = Collector()
        result = connection.run("kill -KILL $PPID; echo still here", on_output=out)
        assert out.stdout == "still here\n"
        assert result.rc == -1  # the shell that would have reported the status is gone
        after = Collector()
        assert connection.run("echo next", on_output=after).rc == 0
        assert after.stdout == "next\n"
