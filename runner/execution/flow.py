"""`run_once` across the hosts of a batch: one host runs the step, the others wait for its
result and take it as their own.

Handlers need no more than the step runner's own note of what a host notified, so they
run wherever its steps run (in this process, a background process, a worker).

The children of a batch run in parallel threads of one process (a job with a `run_once`
step is never sent to workers, and a background job may not have one), so a `OnceBoard`
shared by the run is enough. The step runs on the first host of the batch still running
when it is reached (as Ansible's first host of the play batch); if that host ends without
running it (it failed earlier, was unreachable or stopped), the next one still running
takes its place. A waiting host sleeps on a condition, woken by a result, by a host's end
or by its own stop: never a busy wait, and a stop or a job timeout never leaves it hung.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.jobs.states import StepStatus

_Slot = tuple[str, tuple[str, ...], int]  # (job, batch, step index)


@dataclass(frozen=True)
class OnceResult:
    """What a `run_once` step did on the host that ran it."""

    host: str
    outcome: Any  # a StepOutcome
    label: str


@dataclass(frozen=True)
class Turn:
    """A host's turn at a `run_once` step: run it (`result` None) or take `result`."""

    result: OnceResult | None = None


class OnceBoard:
    """The run's `run_once` results and who is running each, per job and batch."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._batches: dict[tuple[str, str], tuple[str, ...]] = {}
        self._ended: set[tuple[str, str]] = set()
        self._running: dict[_Slot, str] = {}
        self._results: dict[_Slot, OnceResult] = {}

    def batch(self, job: str, hosts: list[str]) -> None:
        """The hosts of `job` that run together (a `serial` batch; all of them without)."""
        members = tuple(hosts)
        with self._cond:
            for host in members:
                self._batches[(job, host)] = members

    def ended(self, job: str, host: str) -> None:
        """`host`'s child of `job` is over: another host runs what it did not."""
        with self._cond:
            self._ended.add((job, host))
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake every waiting host to look at its stop switch."""
        with self._cond:
            self._cond.notify_all()

    def turn(self, job: str, host: str, step: int, stopped: Callable[[], bool]) -> Turn | None:
        """Wait until `host` may run step `step` of `job`, or another host has run it;
        None once `stopped()` holds."""
        batch = self._batches.get((job, host), (host,))
        slot = (job, batch, step)
        with self._cond:
            while True:
                if stopped():
                    return None
                if slot in self._results:
                    return Turn(self._results[slot])
                runner = self._running.get(slot)
                if runner is None or (job, runner) in self._ended:
                    first = next((h for h in batch if (job, h) not in self._ended), host)
                    if first == host:
                        self._running[slot] = host
                        return Turn()
                self._cond.wait()

    def publish(self, job: str, host: str, step: int, outcome: Any, label: str) -> None:
        """The result of step `step` that `host` ran, for the rest of its batch."""
        batch = self._batches.get((job, host), (host,))
        with self._cond:
            self._results[(job, batch, step)] = OnceResult(host, outcome, label)
            self._cond.notify_all()


def taken(result: OnceResult) -> tuple[Any, str]:
    """A `run_once` step's outcome on a host of the batch that did not run it, and its
    label there: failed when it failed where it ran, else `ok` (`skipped` when it was
    skipped there), with no output of its own."""
    outcome = dataclasses.replace(
        result.outcome, stdout="", stderr="", error=None, results=[], stderr_tail=[]
    )
    label = f"{result.label} (run_once: ran on {result.host})"
    if outcome.failed:
        return dataclasses.replace(outcome, error=f"run_once: failed on {result.host}"), label
    skipped = outcome.status == StepStatus.SKIPPED.value
    status = StepStatus.SKIPPED if skipped else StepStatus.OK
    return dataclasses.replace(outcome, status=status.value), label


def changed(outcome: Any) -> bool:
    """Whether a step (a loop: any of its items) reported changed, which notifies."""
    if outcome.status == StepStatus.CHANGED.value:
        return True
    return any(item.get("changed") for item in outcome.results)
