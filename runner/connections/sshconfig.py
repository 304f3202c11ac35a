"""The user's ~/.ssh/config, as OpenSSH reads it, for what the inventory leaves unsaid.

An inventory's `ansible_host`, `ansible_port`, `ansible_user` and
`ansible_ssh_private_key_file` win; for the rest, a `Host` block of ~/.ssh/config that
matches the host's address gives `HostName`, `Port`, `User` and `IdentityFile`, as it
does for `ssh` and for ansible's ssh connection.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import Any

from runner.planning.inventory.hostnames import check_hostname

_lock = threading.Lock()


@lru_cache(maxsize=1)
def _config(path: str) -> Any:
    from runner.connections.sshstack import load

    _fabric, paramiko = load()
    try:
        return paramiko.SSHConfig.from_path(path)
    except (OSError, ValueError):
        return None


def lookup(alias: str, path: str | None = None) -> dict[str, Any]:
    """The options ~/.ssh/config gives for `alias` (empty when there is no such file).

    paramiko runs a `Match exec` line through a shell with the alias in place of `%h`,
    so an alias that is not a valid host name is refused (ValueError) before it is read;
    the inventory refuses such names when it loads, this is the last line of defence."""
    check_hostname(alias)
    path = path or os.path.expanduser("~/.ssh/config")
    if not os.path.isfile(path):
        return {}
    with _lock:
        config = _config(path)
    if config is None:
        return {}
    found = config.lookup(alias)
    result: dict[str, Any] = {}
    if found.get("hostname") and found["hostname"] != alias:
        result["address"] = found["hostname"]
    if "port" in found:
        result["port"] = int(found["port"])
    if "user" in found:
        result["user"] = found["user"]
    if found.get("identityfile"):
        result["key_file"] = os.path.expanduser(found["identityfile"][0])
    return result
