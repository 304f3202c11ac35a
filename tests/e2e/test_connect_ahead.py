"""Connections opened ahead of a run's children: bounded, and dropped when the run stops."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import wait_until

from runner.execution.sessions import HANDSHAKES_AT_ONCE

HOSTS = HANDSHAKES_AT_ONCE + 50


class SilentServer:
    """A TCP server that accepts every connection and never says a word (a host whose
    sshd hangs before its banner), counting the connections it was offered."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=HOSTS * 2)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_ctrl_c_dials_no_more_hosts_and_waits_for_no_handshake(
    cli, tmp_path: Path, silent: SilentServer
):
    # More hosts than are opened ahead at once, all hanging before their banner, with a
    # connect timeout of 10 minutes: the run waits on the first HANDSHAKES_AT_ONCE. Ctrl-C
    # must neither dial the rest nor wait out the handshakes under way.
    inventory = tmp_path / "hang.ini"
    lines = [f"h{i} ansible_host=127.0.0.1 ansible_port={silent.port}" for i in range(HOSTS)]
    inventory.write_text("[all]\n" + "\n".join(lines) + "\n")
    play = cli.playbook(
        """
        sessions:
          slow: {targets: all, connect_timeout: 600}
        jobs:
          - name: work
            session: slow
            steps:
              - run: "true"
        """
    )
    run = cli.start("run", play, "-i", str(inventory), "-f", str(HOSTS))
    # every child recorded first: a Ctrl-C while the run still creates them is another case
    wait_until(lambda: [j for j in cli.jobs() if len(j["ChildJobs"]) == HOSTS], 60, "the children")
    wait_until(lambda: len(silent.accepted) >= HANDSHAKES_AT_ONCE, what="the first handshakes")
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=300)  # waiting out the handshakes takes 600 s
    assert run.returncode == 99, out + err
    assert len(silent.accepted) == HANDSHAKES_AT_ONCE  # none dialled after Ctrl-C
    children = [j for j in cli.jobs("--children") if not j["ChildJobs"]]
    assert len(children) == HOSTS
    assert {c["State"] for c in children} == {"Stopped"}  # Ctrl-C, not a host's failure
