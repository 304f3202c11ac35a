"""The raw paramiko floor of a fleet run: connect to every host at once, then each step on all.

    python bench/paramiko_floor.py HOSTS.json STEPS [COMMAND]

HOSTS.json is a list of [address, port, user, key_file]. Each connection uses a socket
with TCP_NODELAY (as runner does); a step is `COMMAND` (default `true`) run on every host
in parallel, and the next step starts when all hosts have finished the previous one (as
a playbook step barrier would). Prints one JSON line: seconds to connect and to run.
Run as its own process, so its wall time includes the interpreter and paramiko imports,
like any whole-command figure of the benchmark.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko


def nodelay_socket(address: str, port: int) -> socket.socket:
    """A connected TCP socket with Nagle off, as an SSH client wants it."""
    sock = socket.create_connection((address, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect(address: str, port: int, user: str, key_file: str) -> paramiko.SSHClient:
    """An open paramiko client (host keys not checked: loopback benchmark only)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.MissingHostKeyPolicy())
    client.connect(
        address,
        port=port,
        username=user,
        key_filename=key_file,
        sock=nodelay_socket(address, port),
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
        banner_timeout=30,
        auth_timeout=30,
    )
    return client


def exec_status(transport: paramiko.Transport, command: str) -> int:
    """Run `command` on a new channel, read its output away, return its exit status."""
    channel = transport.open_session()
    try:
        channel.exec_command(command)
        while channel.recv(65536):
            pass
        return channel.recv_exit_status()
    finally:
        channel.close()


def main() -> int:
    hosts = json.loads(Path(sys.argv[1]).read_text())
    steps = int(sys.argv[2])
    command = sys.argv[3] if len(sys.argv) > 3 else "true"
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        started = time.perf_counter()
        clients = list(pool.map(lambda h: connect(*h), hosts))
        connected = time.perf_counter()
        transports = [c.get_transport() for c in clients]
        for _ in range(steps):
            statuses = list(pool.map(lambda t: exec_status(t, command), transports))
            if any(statuses):
                print(f"a step failed: {statuses}", file=sys.stderr)
                return 1
        ran = time.perf_counter()
    for client in clients:
        client.close()
    print(json.dumps({"connect": connected - started, "run": ran - connected}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
