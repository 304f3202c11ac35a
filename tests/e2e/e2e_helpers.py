"""Process helpers shared by the end-to-end tests (`wait_until` is tests/cli.py's)."""

from __future__ import annotations

import os
from typing import Any

from tests.cli import wait_until


def processes_matching(text: str) -> list[int]:
    """PIDs whose command line contains `text` (fleet hosts all run on this machine)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and "pytest" not in cmdline:
            found.append(int(entry))
    return found


def started_job(cli: Any, name: str, timeout: float = 30) -> dict[str, Any]:
    """The parent job called `name`, once a run has created it and it is Running."""

    def find() -> dict[str, Any] | None:
        for job in cli.jobs():
            if job["Name"] == name and job["State"] == "Running":
                return job
        return None

    return wait_until(find, timeout, f"job {name} Running")


def tcp_connections(pid: int, address: str, port: int) -> set[int]:
    """Socket inodes of process `pid` connected to address:port (IPv4, established)."""
    remote = "".join(f"{int(part):02X}" for part in reversed(address.split("."))) + f":{port:04X}"
    inodes = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[2] == remote and fields[3] == "01":
                inodes.add(int(fields[9]))
    mine = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and int(link[8:-1]) in inodes:
                mine.add(int(link[8:-1]))
    except OSError:
        pass  # the process has just ended
    return mine
