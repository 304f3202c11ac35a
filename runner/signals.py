"""Signal handling that cannot deadlock.

A Python signal handler runs in the main thread between two bytecodes, possibly while
that thread holds a lock the handler would need: `threading.Event.set` from a handler
hangs forever if the same signal arrives again while the first handler is inside it.
That happens for real: a worker started by a thread of the runner gets its parent-death
signal once for every thread of a SIGKILLed runner, one after another. So a handler here
only puts the signal number on a `queue.SimpleQueue` (its `put` is documented as safe to
re-enter from a signal handler), and a thread of its own does the work.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable, Iterable


def handle_signals(signals: Iterable[int], action: Callable[[int], object]) -> None:
    """Call `action(signal_number)` on a relay thread for each of `signals` received."""
    received: queue.SimpleQueue[int] = queue.SimpleQueue()

    def relay() -> None:
        while True:
            action(received.get())

    threading.Thread(target=relay, name="signals", daemon=True).start()
    for sig in signals:
        signal.signal(sig, lambda number, _frame: received.put(number))
