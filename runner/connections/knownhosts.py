"""The runner's own known_hosts file, checked like OpenSSH's ``StrictHostKeyChecking=accept-new``.

A host seen for the first time has its key appended (``[addr]:port`` for a port other than
22, as OpenSSH writes it); a host whose recorded key differs from the one it presents is
refused with an error naming the file and line, so a user knows what to remove when the
change is expected. The file is created mode 0600 and locked (flock) while it is checked
and appended, so many threads and runner processes can connect at once.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runner.connections.sshstack import load
from runner.errors import HostKeyError

if TYPE_CHECKING:
    import paramiko
else:
    _fabric, paramiko = load()

SSH_PORT = 22


@dataclass(frozen=True)
class KnownKey:
    """One usable line of a known_hosts file."""

    line: int
    patterns: tuple[str, ...]
    key_type: str
    key_base64: str

    def names(self, hostname: str) -> bool:
        """True when this line is about `hostname` (plain or hashed ``|1|salt|hash``)."""
        return any(_pattern_matches(p, hostname) for p in self.patterns)


def host_key_name(address: str, port: int) -> str:
    """The name OpenSSH records a host under: ``addr``, or ``[addr]:port`` off port 22."""
    return address if port == SSH_PORT else f"[{address}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class KnownHosts:
    """A known_hosts file with accept-new semantics."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def check(self, host: str, hostname: str, key: paramiko.PKey) -> None:
        """Accept `key` for `hostname` (recording it if new) or raise HostKeyError.

        `host` is the inventory name the error is reported under; `hostname` the name
        the key is recorded under (see `host_key_name`). A file that cannot be written
        (a full disk) is named, as the reason the host cannot be trusted.
        """
        try:
            self._check(host, hostname, key)
        except OSError as error:
            why = error.strerror or type(error).__name__
            raise HostKeyError(host, f"cannot record its host key in {self.path}: {why}") from None

    def _check(self, host: str, hostname: str, key: paramiko.PKey) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            entries = [e for e in parse(f.read(), hostname) if e.names(hostname)]
            if not entries:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
                return
            if any(_same_key(e, key) for e in entries):
                return
            raise HostKeyError(host, self._changed(hostname, key, entries))

    def _changed(self, hostname: str, key: paramiko.PKey, entries: list[KnownKey]) -> str:
        same_type = [e for e in entries if e.key_type == key.get_name()]
        recorded = (same_type or entries)[0]
        return (
            f"host key for {hostname} has changed and the connection was refused "
            f"(offered {key.get_name()} {fingerprint(key)}); the recorded key is at "
            f"{self.path}:{recorded.line} - remove that line if the change is expected"
        )


def parse(text: str, hostname: str | None = None) -> list[KnownKey]:
    """The usable lines of a known_hosts file (markers, comments and junk skipped); with
    `hostname`, only those that may name it (a file holds one line per host)."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if hostname is not None and hostname not in raw and "|1|" not in raw:
            continue
        fields = raw.split()
        if len(fields) < 3 or fields[0].startswith(("#", "@")):
            continue
        entries.append(KnownKey(number, tuple(fields[0].split(",")), fields[1], fields[2]))
    return entries


def _same_key(entry: KnownKey, key: paramiko.PKey) -> bool:
    return entry.key_type == key.get_name() and entry.key_base64 == key.get_base64()


def _pattern_matches(pattern: str, hostname: str) -> bool:
    if not pattern.startswith("|1|"):
        return pattern == hostname
    try:
        _, _, salt, digest = pattern.split("|")
        mac = hmac.new(base64.b64decode(salt), hostname.encode(), hashlib.sha1).digest()
    except ValueError:
        return False
    return hmac.compare_digest(base64.b64encode(mac).decode(), digest)


class AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Paramiko policy delegating every host key decision to a `KnownHosts` file.

    The client is given no keys of its own, so paramiko asks this policy about every
    host; the policy accepts a recorded key, records a new one, refuses a changed one.
    """

    def __init__(self, known_hosts: KnownHosts, host: str) -> None:
        self.known_hosts = known_hosts
        self.host = host

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.known_hosts.check(self.host, hostname, key)
