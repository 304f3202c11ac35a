"""What `runner run` prints while it works, and the recap at the end.

On a terminal a status line at the bottom shows the hosts still in flight; elsewhere
(a pipe, a CI log, `CI=true`) every event is one plain line with no control characters.
`-v` streams each host's output as it arrives; `-q` prints only the recap.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict
from typing import Any, TextIO

STAT_KEYS = ("ok", "changed", "failed", "skipped", "unreachable", "stopped")


def is_interactive(stream: TextIO) -> bool:
    """A live display only on a real terminal, and never in CI."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


class Reporter:
    """Receives the executor's events and prints them; collects per-host stats."""

    def __init__(self, stream: TextIO | None = None, verbosity: int = 0, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.verbosity = verbosity
        self.quiet = quiet
        self.live = is_interactive(self.stream) and not quiet
        self.stats: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STAT_KEYS, 0))
        self._in_flight: dict[tuple[str, str], float] = {}
        self._done = 0
        self._lock = threading.Lock()
        self._status_shown = False

    # -- printing --------------------------------------------------------------------

    def _line(self, text: str) -> None:
        with self._lock:
            if self._status_shown:
                self.stream.write("\r\x1b[K")
                self._status_shown = False
            self.stream.write(text + "\n")
            self._draw_status()
            self.stream.flush()

    def _draw_status(self) -> None:
        if not self.live or not self._in_flight:
            return
        hosts = sorted({host for _, host in self._in_flight})
        shown = ", ".join(hosts[:6]) + (f" +{len(hosts) - 6}" if len(hosts) > 6 else "")
        self.stream.write(f"\x1b[2m  in flight ({len(hosts)}): {shown}  [{self._done} done]\x1b[0m")
        self._status_shown = True

    def _event(self, text: str) -> None:
        if not self.quiet:
            self._line(text)

    # -- events from the executor ----------------------------------------------------

    def job_started(self, job_id: int, jp: Any) -> None:
        detached = " (detached)" if jp.job.detach else ""
        self._event(f"job {job_id} {jp.name} started{detached} [{len(jp.hosts)} host(s)]")

    def host_started(self, jp: Any, host: str) -> None:
        with self._lock:
            self._in_flight[(jp.name, host)] = time.monotonic()
        if self.live:
            self._line(f"  {host}: {jp.name} running") if self.verbosity else self._refresh()

    def _refresh(self) -> None:
        with self._lock:
            if self._status_shown:
                self.stream.write("\r\x1b[K")
                self._status_shown = False
            self._draw_status()
            self.stream.flush()

    def step_done(self, jp: Any, host: str, step: Any, outcome: Any, seconds: float) -> None:
        status = outcome.status
        if status == "failed" and step.ignore_errors:
            status = "ignored"
        if self.verbosity == 0 and status in ("ok", "changed") and self.live:
            return
        detail = ""
        if outcome.rc not in (None, 0):
            detail = f" rc={outcome.rc}"
        if outcome.error and status != "skipped":
            detail += f" {outcome.error}"
        self._event(f"  {status:<8} {host:<16} {jp.name} | {step.name}{detail} ({seconds:.2f}s)")

    def output(self, jp: Any, host: str, stream: str, text: str) -> None:
        if self.verbosity < 1 or self.quiet:
            return
        mark = "|" if stream == "stdout" else "!"
        for line in text.splitlines():
            self._line(f"    {host} {mark} {line}")

    def host_done(self, jp: Any, host: str, result: Any) -> None:
        with self._lock:
            self._in_flight.pop((jp.name, host), None)
            self._done += 1
            stats = self.stats[host]
            for key, value in result.counts.items():
                if key in stats:
                    stats[key] += value
            if result.unreachable:
                stats["unreachable"] += 1
            elif result.state == "Stopped":
                stats["stopped"] += 1
        if result.state != "Completed":
            self._event(f"  {result.state:<8} {host:<16} {jp.name}: {result.reason}")
        elif self.live:
            self._refresh()

    def job_done(self, job_id: int, jp: Any, state: str) -> None:
        self._event(f"job {job_id} {jp.name} {state}")

    def error(self, message: str) -> None:
        self._line(f"runner: error: {message}")

    def warning(self, message: str) -> None:
        self._line(f"warning: {message}")

    # -- the end ---------------------------------------------------------------------

    def recap(self, hosts: list[str]) -> None:
        from tabulate import tabulate

        rows = [[h, *(self.stats[h][k] for k in STAT_KEYS)] for h in hosts if h in self.stats]
        with self._lock:
            if self._status_shown:
                self.stream.write("\r\x1b[K")
                self._status_shown = False
            self.stream.write("\nRECAP\n")
            self.stream.write(tabulate(rows, headers=["host", *STAT_KEYS]) + "\n")
            self.stream.flush()
