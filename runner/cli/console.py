"""What `runner run` prints while it works, and the recap at the end.

On a terminal a status line at the bottom shows the hosts still in flight; elsewhere
(a pipe, a CI log, `CI=true`) every event is one plain line with no control characters.
`-v` shows each step's command and streams each host's output as it arrives; `-vv`
shows the commands as rendered for each host and when hosts connect and finish; `-q`
prints only the recap. `--diff` output is shown at every verbosity but `-q`.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import defaultdict
from typing import Any, TextIO

STAT_KEYS = ("ok", "changed", "failed", "skipped", "unreachable", "stopped", "rescued")
# Control characters but tab (newlines split lines before this applies).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def plain(text: str) -> str:
    """`text` with its control characters escaped (`\\x1b`, `\\r`, `\\x07`), so that a
    target's output cannot move the cursor, recolour or clear a log, or split a line."""
    if text.isprintable():
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def is_interactive(stream: object) -> bool:
    """A live display only on a real terminal, and never in CI."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


class _ClosedPipeGuard:
    """A text stream whose reader may go away (`runner run ... | head -1`): the first
    write that meets a closed pipe marks it, and later writes are dropped, so the run goes
    on and keeps every job's output in the store instead of failing where it printed."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_pipe = False

    def write(self, text: str) -> int:
        if not self.closed_pipe:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self.closed_pipe = True
        return len(text)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.closed_pipe = True

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Reporter:
    """Receives the executor's events and prints them; collects per-host stats."""

    def __init__(
        self,
        stream: TextIO | None = None,
        verbosity: int = 0,
        quiet: bool = False,
        check: bool = False,
    ):
        self._guard = _ClosedPipeGuard(stream or sys.stdout)
        self.stream: Any = self._guard
        self.verbosity = verbosity
        self.quiet = quiet
        self.check = check
        self.live = is_interactive(self.stream) and not quiet
        self.stats: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STAT_KEYS, 0))
        self._in_flight: dict[tuple[str, str], float] = {}
        self._done = 0
        self._lock = threading.Lock()
        self._status_shown = False

    @property
    def closed_pipe(self) -> bool:
        """Whether the reader of this reporter's stream went away during the run."""
        return self._guard.closed_pipe

    # -- printing --------------------------------------------------------------------

    def _line(self, *texts: str) -> None:
        """Print whole lines, all at once (another host's lines never come in between)."""
        with self._lock:
            if self._status_shown:
                self.stream.write("\r\x1b[K")
                self._status_shown = False
            if not self.live:
                texts = tuple(plain(text) for text in texts)
            self.stream.write("".join(text + "\n" for text in texts))
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
        check = " in check mode: nothing runs" if self.check else ""
        self._event(f"job {job_id} {jp.name} started{detached} [{len(jp.hosts)} host(s)]{check}")

    def host_started(self, jp: Any, host: str) -> None:
        with self._lock:
            self._in_flight[(jp.name, host)] = time.monotonic()
        if self.verbosity >= 2:
            self._event(f"  {host}: {jp.name} connecting")
        elif self.live:
            self._refresh()

    def command(self, jp: Any, host: str, step: Any, rendered: str) -> None:
        """A step is about to run: `-v` shows it as written, `-vv` as rendered for `host`."""
        if self.verbosity < 1 or self.quiet:
            return
        from runner.planning.render import shown_command

        text = rendered if self.verbosity >= 2 else shown_command(step, step.args)
        self._line(
            f"    {host} $ {step.action}: {text}"
            if step.action != "run"
            else f"    {host} $ {text}"
        )

    def diff(self, jp: Any, host: str, step: Any, text: str) -> None:
        """`--diff`: what a template or put step changes (or would, in check mode)."""
        if self.quiet:
            return
        self._line(
            f"  --- diff {host} {jp.name} | {step.name}",
            *(f"    {line}" for line in text.splitlines()),
        )

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
        detail = ""
        if outcome.rc not in (None, 0):
            detail = f" rc={outcome.rc}"
        if outcome.error:
            detail += f" {outcome.error}"
        line = f"  {status:<8} {host:<16} {jp.name} | {step.name}{detail} ({seconds:.2f}s)"
        # -v has streamed the output already; without it a failure shows its stderr's end.
        tail = outcome.stderr_tail if outcome.failed and self.verbosity < 1 else []
        said = (getattr(outcome, "message", None) or "").splitlines()  # debug's message
        if not self.quiet:
            self._line(
                line,
                *(f"    {host} | {text}" for text in said),
                *(f"    {host} ! {text}" for text in tail),
            )

    def output(self, jp: Any, host: str, stream: str, text: str) -> None:
        if self.verbosity < 1 or self.quiet:
            return
        mark = "|" if stream == "stdout" else "!"
        # Split at newlines only (and CRLF): a lone `\r` is shown, not taken for a line end.
        lines = text.removesuffix("\n").split("\n") if text else []
        lines = [line.removesuffix("\r") for line in lines]
        self._line(*(f"    {host} {mark} {line}" for line in lines))

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
        elif self.verbosity >= 2:
            self._event(f"  {host}: {jp.name} done")
        elif self.live:
            self._refresh()

    def job_done(self, job_id: int, jp: Any, state: str) -> None:
        self._event(f"job {job_id} {jp.name} {state}")

    def error(self, message: str) -> None:
        self._line(f"runner: error: {message}")

    def warning(self, message: str) -> None:
        self._line(f"warning: {message}")

    def note(self, message: str) -> None:
        """A line for the user after the recap (e.g. where the retry file is)."""
        self._line(message)

    def host_stats(self, hosts: list[str]) -> dict[str, dict[str, int]]:
        """Per-host counts for every host of the plan, zeros for a host that never ran."""
        with self._lock:
            return {
                h: dict(self.stats[h]) if h in self.stats else dict.fromkeys(STAT_KEYS, 0)
                for h in hosts
            }

    # -- the end ---------------------------------------------------------------------

    def recap(self, hosts: list[str]) -> None:
        stats = self.host_stats(hosts)
        rows = [[h, *(stats[h][k] for k in STAT_KEYS)] for h in hosts]
        title = "RECAP (check mode: nothing ran)" if self.check else "RECAP"
        with self._lock:
            if self._status_shown:
                self.stream.write("\r\x1b[K")
                self._status_shown = False
            self.stream.write(f"\n{title}\n")
            self.stream.write(recap_table(rows) + "\n")
            self.stream.flush()


def recap_table(rows: list[list[Any]]) -> str:
    """The recap's table, as tabulate's "simple" format lays it out: host names on the
    left, counts on the right, each column two wider than its header at least.

    tabulate guesses every cell's type, which took about half a second for 500 hosts
    (BENCHMARKS.md, "Where a 500-host run's time goes"); the counts are ints and the
    names text, so only names tabulate could read as numbers still go through it.
    """
    headers = ["host", *STAT_KEYS]
    if not rows or any(_numeric_looking(str(row[0])) for row in rows):
        from tabulate import tabulate

        return tabulate(rows, headers=headers)
    cells = [[str(row[0]), *(str(count) for count in row[1:])] for row in rows]
    widths = [
        max([len(header) + 2, *(len(line[i]) for line in cells)])
        for i, header in enumerate(headers)
    ]
    lines = [_recap_line(headers, widths), "  ".join("-" * width for width in widths)]
    lines += [_recap_line(line, widths) for line in cells]
    return "\n".join(lines)


def _recap_line(cells: list[str], widths: list[int]) -> str:
    first = cells[0].ljust(widths[0])
    return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])


def _numeric_looking(name: str) -> bool:
    """A host name tabulate might take for a number or lay out otherwise (wide or
    control characters): the recap leaves such names to tabulate."""
    if not name.isascii() or not name.isprintable() or name != name.strip():
        return True
    try:
        float(name)
    except ValueError:
        pass
    else:
        return True
    try:
        int(name, 0)
    except ValueError:
        return False
    return True
