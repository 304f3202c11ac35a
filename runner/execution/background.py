"""`type: background` jobs: each child runs in its own OS process on the controller.

The runner starts a worker process per child (`runner.execution.worker`, started by
`worker_command`), hands it (on stdin, as JSON) a `runner.execution.context.BackgroundTask`:
the plan request, the values earlier jobs registered on its host, check and diff. The worker
plans again through the planner (which is pure, so the worker's plan is the runner's) and
runs its child with the `InProcessChild` a thread job runs with. It writes its output and
step results straight into the job store, and on stdout, as JSON lines, the events the
runner prints (step lines, commands, diffs, output) and at last how the child ended and what
it registered, which later jobs see. A stop ends the worker, which ends its step's process
group first. An attached worker ends with the runner, as an attached job must: the runner's
lifeline (`runner.connections.lifeline`) ends the worker's group should the runner die,
however it dies, and the worker also stops on PR_SET_PDEATHSIG or when its parent changes.
The worker's own step is held on the worker's lifeline, so a worker killed with SIGKILL (the
OOM killer's choice) does not leave it running either.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from runner.connections import lifeline
from runner.errors import RunnerError
from runner.execution.context import BackgroundTask, ChildTask, RunContext, remember
from runner.execution.relay import relay, report_of
from runner.execution.steps import ChildReport, Control
from runner.planning import vault

if TYPE_CHECKING:
    from runner.execution.events import StepEvents
    from runner.jobs.store import JobStore
    from runner.planning.planner import JobPlan

_GRACE = 3.0


def run_background_child(context: RunContext, task: ChildTask) -> ChildReport:
    """Start the worker process for one child and wait for it (the runner's side)."""
    jp, host, child = task.jp, task.host, task.child
    if context.request is None or context.store_location is None:
        raise RunnerError("a background job needs the run's plan request and job store path")
    job = BackgroundTask(
        request=context.request,
        job=jp.name,
        host=host,
        child=child,
        store=context.store_location,
        registered=dict(context.registered.get(host, {})),
        check=context.check,
        diff=context.diff,
        detach=jp.job.detach and not context.check,  # check mode leaves nothing running
        runner=os.getpid(),
        vault=[secret.to_json() for secret in vault.secrets()],  # on its stdin only
    )
    payload = json.dumps(dataclasses.asdict(job), default=str).encode()
    if job.detach:
        return _start_detached(context.store, child, payload)
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            worker_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,
        )
        lifeline.hold(proc.pid)  # its own group; it waits for the payload, written after
        assert proc.stdin is not None and proc.stdout is not None
        relayed = Relay(proc.stdout, context.events, jp, host)
        try:
            context.store.set_runtime(child, local_pid=proc.pid)
            proc.stdin.write(payload)
            proc.stdin.close()
            _wait(proc, task.control)
        finally:
            lifeline.release(proc.pid)
        relayed.join(_GRACE)
        proc.stdout.close()
        if task.control.stopped and proc.returncode != 0:
            return ChildReport("Failed" if task.control.fail else "Stopped", task.control.reason)
        try:
            data = relayed.report or {}
            report = report_of(data)
        except KeyError:
            errors.seek(0)
            tail = errors.read()[-500:].decode(errors="replace").strip().splitlines()
            why = tail[-1] if tail else f"exit status {proc.returncode}"
            return ChildReport("Failed", f"background worker {proc.pid} failed: {why}")
        # What its steps registered is there for later jobs, as a thread job's is.
        remember(
            context.plan, context.registered.setdefault(host, {}), data.get("registered") or {}
        )
        return report


class Relay(threading.Thread):
    """The runner's side of the worker's stdout: each event line goes to the runner's
    events as the worker's steps run (step lines, commands, output, diffs), and the last
    line, how the child ended, is kept in `report`."""

    def __init__(
        self, stream: Iterable[bytes], events: StepEvents | None, jp: JobPlan, host: str
    ) -> None:
        super().__init__(name=f"relay-{host}", daemon=True)
        self.stream, self.events, self.jp, self.host = stream, events, jp, host
        self.report: dict[str, Any] | None = None
        self.start()

    def run(self) -> None:
        for raw in self.stream:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if "event" not in line:
                self.report = line
            elif self.events is not None:
                relay(self.events, self.jp, self.host, line)


def _start_detached(store: JobStore, child: int, payload: bytes) -> ChildReport:
    """Start a worker that outlives the runner and owns its child's state from now on."""
    proc = subprocess.Popen(
        worker_command(),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(payload)
    proc.stdin.close()
    store.set_runtime(child, local_pid=proc.pid)
    store.claim(child, owner_pid=proc.pid)  # the worker answers for it from now on
    return ChildReport("Running", f"detached: background process {proc.pid}")


def _wait(proc: subprocess.Popen[bytes], control: Control) -> None:
    while True:
        try:
            proc.wait(timeout=0.1)
            return
        except subprocess.TimeoutExpired:
            pass
        if control.stopped:
            _end(proc)
            return


def _end(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=_GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()


def worker_command() -> list[str]:
    """The worker's command line: this interpreter, importing this very copy of runner.

    `python -m` would put the current directory first on sys.path, so a worker started
    from inside some other checkout of runner would run that copy's code; `-P` leaves it
    out, and the directory this runner was imported from goes first instead.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from runner.execution.worker import main; raise SystemExit(main())"
    )
    return [sys.executable, "-P", "-c", code, root]
