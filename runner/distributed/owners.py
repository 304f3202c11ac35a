"""Controllers and workers known by an identity and a heartbeat in the store, not by a pid:
they run on different machines. An owner silent for longer than the heartbeat timeout is
taken for lost."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from runner.jobs.store import JobStore
from runner.settings import heartbeat_timeout


@dataclass(frozen=True)
class Identity:
    """Who owns jobs: a unique id, and a name people read (`host:pid`, or a worker's
    `--name`)."""

    id: str
    kind: str  # "runner" or "worker"
    name: str

    @staticmethod
    def new(kind: str, name: str | None = None) -> Identity:
        return Identity(uuid.uuid4().hex, kind, name or f"{socket.gethostname()}:{os.getpid()}")


class Heartbeat:
    """Beats for `identity` in the store several times per timeout, from its own thread
    and store connection."""

    def __init__(self, store: JobStore, identity: Identity, queues: tuple[str, ...] = ()) -> None:
        self.store, self.identity, self.queues = store, identity, queues
        self.timeout = heartbeat_timeout()
        self._stop = threading.Event()
        store.beat(identity.id, identity.kind, identity.name, queues)  # before any job is
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.timeout / 6):
            try:
                identity = self.identity
                self.store.beat(identity.id, identity.kind, identity.name, self.queues)
            except Exception:  # noqa: BLE001 - a store away for a moment: beat again later
                continue

    def stop(self) -> None:
        """Stop beating, and leave the store: an owner that ends cleanly is not lost."""
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):  # a store out of reach: the row just ages
            self.store.forget_owner(self.identity.id)


def silent_for(store: JobStore, owner_id: str) -> tuple[str, float]:
    """(the owner's name, seconds since its last heartbeat); an unknown owner has been
    silent forever."""
    beat = store.owner_beat(owner_id)
    if beat is None:
        return owner_id, float("inf")
    name, when = beat
    return name, max(0.0, time.time() - when)
