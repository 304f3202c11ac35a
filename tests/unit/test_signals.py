"""A flood of signals must not hang a process that stops on them.

The background worker gets its parent-death signal once for every thread of a runner
killed with SIGKILL, in quick succession; a handler that took a lock hung it for good.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import signal, sys, threading, time
    from runner.signals import handle_signals
    from runner.execution.steps import Control

    control = Control()
    busy = threading.Lock()

    def stop(number):
        # Stopping takes a lock and some time, as ending a step's processes does.
        with busy:
            if not control.stopped:
                end = time.monotonic() + 0.05
                while time.monotonic() < end:
                    pass
            control.stop(f"signal {number}")

    handle_signals([signal.SIGTERM], stop)
    print("ready", flush=True)
    while not control.event.wait(0.001):
        pass  # busy in Python code, as a worker is, so handlers run between bytecodes
    sys.stdin.read()  # until the sender is done
    print(control.reason, flush=True)
""")


def test_a_flood_of_sigterm_stops_the_process_once_and_never_hangs_it():
    for _round in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "ready\n"
        for _ in range(2000):
            os.kill(child.pid, signal.SIGTERM)
        try:
            out, _ = child.communicate("", timeout=20)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0
        assert out == f"signal {int(signal.SIGTERM)}\n"
