"""The system actions, `package` and `service`: the script a step sends, its outcome.

Such a step is one POSIX sh script on the target (on its stdin, like every command) that
checks the state, acts unless in --check, and reports on MARK lines (`reply.py`).
`script` builds it; `outcome` reads the reply: `changed` only when the target's state
changed (or, in --check, would).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from runner.connections.base import Connection
from runner.execution.actions import package, service
from runner.execution.actions.reply import Converged, Reply

# What is known of each host (its package manager), kept with its connection: found by
# the first step that needs it, then given to every later step over that connection.
_FACTS: weakref.WeakKeyDictionary[Connection, dict[str, str]] = weakref.WeakKeyDictionary()
_FACTS_LOCK = threading.Lock()


def host_facts(conn: Connection) -> dict[str, str]:
    """The facts learnt so far about the host `conn` reaches (filled in by `outcome`)."""
    with _FACTS_LOCK:
        return _FACTS.setdefault(conn, {})


def script(action: str, args: dict[str, Any], check: bool, facts: dict[str, str]) -> str:
    """The sh script of a `package` or `service` step; `facts` is what is known of the
    host already (its package manager, once found)."""
    if action == "package":
        return package.script(args, check, facts)
    return service.script(args, check)


def outcome(
    action: str, args: dict[str, Any], check: bool, facts: dict[str, str], reply: Reply
) -> Converged:
    """What the step did, read from its script's reply; learns facts of the host."""
    if action == "package":
        return package.outcome(args, check, facts, reply)
    return service.outcome(args, check, reply)
