"""Running one child job's steps on one host: when, loop, retries/until, register, actions.

A `StepRunner` is given an open connection and a sink for output; it renders each step
with the host's variables (registered results included), runs it, streams its output,
records the step's result in the store, and decides whether the child goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import os
import posixpath
import shlex
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.connections.base import Connection, RunResult
from runner.connections.local import LocalConnection
from runner.connections.transfer import (
    TargetFile,
    into_directory,
    local_sha256,
    parse_probe,
    probe_script,
)
from runner.errors import ConnectError, RunnerError, StepError, TemplateError
from runner.execution.actions.converge import ACTIONS
from runner.execution.actions.target import converged
from runner.execution.blocks import BlockFlow
from runner.execution.conditions import (
    GUARDED,
    ON_CONTROLLER,
    apply_conditions,
    guard_reason,
    run_on_controller,
)
from runner.execution.flow import OnceBoard, Turn, changed, taken
from runner.execution.sinks import LineBuffer
from runner.jobs.states import StepStatus
from runner.planning.converge import CONVERGING
from runner.planning.files import MAX_TEMPLATE, FileRefused, read_text
from runner.planning.flow import CONTROLLER
from runner.planning.guard import confine, secret_values
from runner.planning.model import Step
from runner.planning.planner import JobPlan, Plan
from runner.planning.render import (
    NO_LOG_TEXT,
    HostScope,
    RenderedItem,
    holds,
    render_source,
    render_step,
)

if TYPE_CHECKING:
    from runner.execution.events import StepEvents
    from runner.execution.sinks import StoreWriter
    from runner.jobs.store import JobStore

Sink = Callable[[int, str, int, str, str], None]  # (job_id, host, step, stream, data)

STATUS_OK = StepStatus.OK.value
STATUS_CHANGED = StepStatus.CHANGED.value
STATUS_FAILED = StepStatus.FAILED.value
STATUS_SKIPPED = StepStatus.SKIPPED.value
STATUS_STOPPED = StepStatus.STOPPED.value
STATUS_TIMEDOUT = StepStatus.TIMEDOUT.value
STATUS_UNREACHABLE = StepStatus.UNREACHABLE.value

TAIL_LINES = 10  # the stderr lines a failed step shows, as ansible-playbook's does
COMPARED = ("put", "template", "get", *ACTIONS)  # steps --check compares instead of skipping
_TAIL_CHARS = 4000


class Control:
    """A stop switch with the reason it was thrown; stopping a parent stops its children."""

    def __init__(self, parent: Control | None = None) -> None:
        self.event = threading.Event()
        self.reason = ""
        self.fail = False  # a job timeout fails the job; a user's stop stops it
        self._children: list[Control] = []
        # Re-entrant, so that a stop reaching this control twice over can never hang.
        self._lock = threading.RLock()
        if parent is not None:
            parent._adopt(self)

    def _adopt(self, child: Control) -> None:
        with self._lock:
            self._children.append(child)
            stopped = self.event.is_set()
        if stopped:
            child.stop(self.reason, self.fail)

    def stop(self, reason: str, fail: bool = False) -> None:
        with self._lock:
            if self.event.is_set():
                return
            self.reason, self.fail = reason, fail
            self.event.set()
            children = list(self._children)
        for child in children:
            child.stop(reason, fail)

    @property
    def stopped(self) -> bool:
        return self.event.is_set()


class _Waker(Control):
    """A child's stop switch that also wakes it where it waits for another host."""

    def __init__(self, parent: Control, wake: Callable[[], None]) -> None:
        self._wake = wake  # before adoption: a stopped parent stops this one at once
        super().__init__(parent)

    def stop(self, reason: str, fail: bool = False) -> None:
        super().stop(reason, fail)
        self._wake()


@dataclass
class StepOutcome:
    """What one step did on one host (one loop item, or the whole loop)."""

    status: str
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)  # its last lines, masked
    facts: dict[str, Any] = field(default_factory=dict)  # an action's own registered keys
    message: str | None = None  # shown under the step's line (debug), masked

    @property
    def failed(self) -> bool:
        return self.status in (STATUS_FAILED, STATUS_TIMEDOUT, STATUS_UNREACHABLE)

    def registered(self, attempts: int = 1) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rc": self.rc,
            "stdout": self.stdout.rstrip("\n"),
            "stderr": self.stderr.rstrip("\n"),
            "stdout_lines": self.stdout.splitlines(),
            "stderr_lines": self.stderr.splitlines(),
            "failed": self.failed,
            "changed": self.status == STATUS_CHANGED,
            "skipped": self.status == STATUS_SKIPPED,
            "attempts": attempts,
            "msg": self.error or self.message or "",
        }
        if self.results:
            data["results"] = self.results
        return {**data, **self.facts}


@dataclass
class ChildReport:
    """How a child ended, for its state, the recap and the JSON report."""

    state: str  # a JobState name
    reason: str | None = None
    unreachable: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    lost: bool = False  # its worker fell silent: it ended without a step's own failure


class StepRunner:
    """Runs the steps of `jp` for `host` over `conn`; the executor owns connection and state."""

    def __init__(
        self,
        plan: Plan,
        jp: JobPlan,
        host: str,
        child_id: int,
        conn: Connection,
        local: LocalConnection,
        sink: Sink,
        results: StoreWriter | JobStore,
        control: Control,
        registered: dict[str, Any],
        events: StepEvents | None = None,
        check: bool = False,
        diff: bool = False,
        runtime: Callable[..., None] | None = None,
        once: OnceBoard | None = None,
        delegate: Callable[[str], Connection] | None = None,
    ) -> None:
        self.plan, self.jp, self.host, self.child_id = plan, jp, host, child_id
        # `JobStore.set_runtime` for this child: each step's process group is recorded
        # while it runs, so that the group can be ended should this runner die.
        self.runtime = runtime
        self.conn, self.local, self.sink = conn, local, sink
        self._results = results
        self.record_step = results.record_step  # a StoreWriter (batched) or the JobStore
        self.control, self.registered, self.events, self.check = (
            control,
            registered,
            events,
            check,
        )
        self.diff = diff
        self.templar = plan.templar
        self.redact = plan.redactor
        self._label = ""  # the running step's name as shown on this host (see step_label)
        self._not_run: set[str] = set()  # registered by steps check mode did not run
        self.once = once  # the run's `run_once` results, shared by the batch's hosts
        self._waker: Control | None = None  # wakes this host waiting on `once` when stopped
        self.delegate = delegate  # a connection to a `delegate_to` host, opened once a run
        self._notified: set[str] = set()  # handlers notified on this host

    # -- the child -------------------------------------------------------------------

    def run_all(self) -> ChildReport:
        counts = {s: 0 for s in (STATUS_OK, STATUS_CHANGED, STATUS_FAILED, STATUS_SKIPPED)}
        report = self._run_steps(BlockFlow(self.jp, counts), counts)
        handlers = tuple(h for h in self.jp.handlers if h.handler in self._notified)
        if handlers and (report is None or self._forced(report)):
            after = self._run_steps(BlockFlow(self.jp, counts, handlers), counts)
            report = report or after
        return report or ChildReport("Completed", None, False, counts)

    def _forced(self, report: ChildReport) -> bool:
        """`--force-handlers`: a host whose step failed still runs the handlers notified
        before; one stopped, timed out or unreachable does not."""
        failed = report.state == "Failed" and not report.unreachable
        return self.plan.force_handlers and failed and not self.control.stopped

    def _run_steps(self, flow: BlockFlow, counts: dict[str, int]) -> ChildReport | None:
        """Run the steps `flow` gives (through blocks: a failure goes on to a rescue),
        counting them; the child's report once one ends it, None when all ran."""
        for step in flow:
            if self._halted():
                return self._stopped(counts)
            started = time.time()
            turn = self._turn(step)
            if turn is None:
                return self._stopped(counts)
            try:
                outcome, source = self._outcome(step, turn)
            except ConnectError as exc:
                self._record(step, StepOutcome(STATUS_UNREACHABLE, error=exc.reason), started)
                counts[STATUS_FAILED] += 1
                return ChildReport("Failed", f"unreachable: {exc.reason}", True, counts)
            step = self._record(step, outcome, started)
            self._remember(step, source)
            if outcome.status == STATUS_STOPPED or self.control.stopped:
                return self._stopped(counts)
            if outcome.failed and step.ignore_errors:
                counts[STATUS_OK] += 1
                continue
            counts[STATUS_FAILED if outcome.failed else outcome.status] += 1
            if outcome.failed:
                flow.fail(self._failure_reason(step, outcome))  # on to a rescue, or the end
        if flow.failure is not None:
            return ChildReport("Failed", flow.failure, False, counts)
        return None

    def _remember(self, step: Step, source: StepOutcome) -> None:
        """What a step leaves for later ones on this host: its registered result, and the
        handlers it notified when it changed something."""
        if step.register:
            self._register(step, source)
        if step.notify and changed(source):
            self._notified.update(step.notify)

    def _outcome(self, step: Step, turn: Turn) -> tuple[StepOutcome, StepOutcome]:
        """Run `step` here, or take the result of the host that ran it (`run_once`): this
        host's outcome, and the one it registers and notifies by."""
        if turn.result is not None:
            outcome, self._label = taken(turn.result)
            return outcome, turn.result.outcome
        try:
            outcome = self._run_step(step)
        except TemplateError as exc:
            self._label = ""  # the step as written: it could not be rendered
            outcome = StepOutcome(STATUS_FAILED, error=str(exc))
            self._emit_error(step, str(exc))
        except ConnectError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unforeseen error fails its step, counted
            outcome = StepOutcome(STATUS_FAILED, error=f"{type(exc).__name__}: {exc}")
            self._emit_error(step, outcome.error or "")
        if step.run_once and self.once is not None and outcome.status != STATUS_STOPPED:
            shared = dataclasses.replace(outcome, error=self.redact(outcome.error))
            self.once.publish(self.jp.name, self.host, step.index, shared, self._label)
        return outcome, outcome

    def _turn(self, step: Step) -> Turn | None:
        """This host's turn at `step`: a `run_once` step waits for the host running it
        (None: stopped meanwhile); any other step runs at once."""
        if not step.run_once or self.once is None:
            return Turn()
        if self._waker is None:
            self._waker = _Waker(self.control, self.once.wake)
        return self.once.turn(self.jp.name, self.host, step.index, lambda: self.control.stopped)

    def _register(self, step: Step, outcome: StepOutcome) -> None:
        """Keep the step's result under its `register` name for later steps and jobs."""
        assert step.register is not None
        self.registered[step.register] = outcome.registered()
        if self.check and step.action not in COMPARED:
            self._not_run.add(step.register)
        if step.register in self.plan.playbook.secrets:
            self.redact.add(secret_values(self.registered[step.register]))

    def _halted(self) -> bool:
        """Whether the child must start no further step: stopped, or the store refused."""
        if self._store_refused():
            self.control.stop(f"the job store refused a write: {self._store_refused()}", fail=True)
        return self.control.stopped

    def _store_refused(self) -> BaseException | None:
        """The output writer's error once the store refused a batch: no step may start
        after that, as its output and result could not be kept."""
        return getattr(self._results, "error", None)

    def _stopped(self, counts: dict[str, int]) -> ChildReport:
        if self.control.fail:
            counts[STATUS_FAILED] += 1
            return ChildReport("Failed", self.control.reason, False, counts)
        return ChildReport("Stopped", self.control.reason or "stopped", False, counts)

    @staticmethod
    def _failure_reason(step: Step, outcome: StepOutcome) -> str:
        if outcome.status == STATUS_TIMEDOUT:
            return f"step '{step.name}' timed out after {step.timeout:g} s"
        if outcome.error:
            return f"step '{step.name}': {outcome.error}"
        return f"step '{step.name}' exited with status {outcome.rc}"

    def _record(self, step: Step, outcome: StepOutcome, started: float) -> Step:
        """Store and show the step's result under its name as shown on this host; the
        step so named."""
        ended = time.time()
        outcome.error = self.redact(outcome.error)
        step = dataclasses.replace(step, name=self._label or step.name)
        self._label = ""
        self.record_step(
            self.child_id,
            step.index,
            step.name,
            outcome.rc,
            outcome.status,
            started,
            ended,
            outcome.error,
        )
        if self.events is not None:
            self.events.step_done(self.jp, self.host, step, outcome, ended - started)
        return step

    def _emit_error(self, step: Step, message: str) -> None:
        self.sink(self.child_id, self.host, step.index, "stderr", message + "\n")

    # -- one step --------------------------------------------------------------------

    def _run_step(self, step: Step) -> StepOutcome:
        unknown = frozenset(self._not_run) if self.check else frozenset()
        scope = HostScope(self.plan, self.jp.job, self.host, self.registered)
        rendered = render_step(scope, step, unknown)
        if rendered.deferred:
            return self._not_checked(step, rendered.written)
        if step.loop is None:
            (one,) = rendered.items
            if not one.when:
                return StepOutcome(STATUS_SKIPPED)
            return self._with_retries(step, one)
        results: list[dict[str, Any]] = []
        final = StepOutcome(STATUS_SKIPPED)
        for one in rendered.items:
            started = time.time()
            if not one.when:
                skipped = StepOutcome(STATUS_SKIPPED)
                results.append({**skipped.registered(), "item": one.item})
                self._item_done(step, one, skipped, started)
                continue
            outcome = self._with_retries(step, one)
            results.append({**outcome.registered(), "item": one.item})
            self._item_done(step, one, outcome, started)
            final = _combine(final, outcome)
            if outcome.failed and not step.ignore_errors or outcome.status == STATUS_STOPPED:
                break
        final.results = results
        if self.check and final.status == STATUS_SKIPPED and final.error:
            final.error = f"check mode: not run ({len(results)} items)"
        self._label = rendered.label
        return final

    def _not_checked(self, step: Step, written: str) -> StepOutcome:
        """A step check mode does not render: it reads a result a step not run would have
        registered. It is skipped, shown as written, and what it registers is not known
        either."""
        if step.register:
            self._not_run.add(step.register)
        if step.action == "vars":
            self._not_run.update(step.args)
        return StepOutcome(STATUS_SKIPPED, error=f"check mode: not run ({step.action}: {written})")

    def _item_done(
        self, step: Step, one: RenderedItem, outcome: StepOutcome, started: float
    ) -> None:
        """Show one item of a loop (as Ansible's `changed: [web1] => (item=a)`); a no_log
        step's items are never shown."""
        if self.events is not None:
            name = one.label if step.no_log else f"{one.label} (item={self.redact(str(one.item))})"
            shown = dataclasses.replace(step, name=name)
            self.events.step_done(self.jp, self.host, shown, outcome, time.time() - started)

    def _with_retries(self, step: Step, one: RenderedItem) -> StepOutcome:
        attempts = step.retries + 1 if step.until else 1
        outcome = StepOutcome(STATUS_FAILED)
        for attempt in range(1, attempts + 1):
            outcome = self._judged(step, one, self._act(step, one), attempt)
            if not step.until or outcome.status in (STATUS_STOPPED, STATUS_TIMEDOUT):
                return outcome
            name = step.register or "result"
            if holds(
                self.plan, step, step.until, one.scope.child({name: outcome.registered(attempt)})
            ):
                return outcome
            if attempt < attempts and self.control.event.wait(step.delay):
                return StepOutcome(STATUS_STOPPED)
        outcome.status = STATUS_FAILED
        outcome.error = f"'until' still false after {attempts} attempts"
        return outcome

    def _execute(self, step: Step, one: RenderedItem) -> StepOutcome:
        """Run one rendered item of `step`, on the host it is delegated to if any."""
        if step.delegate_to is None:
            return self._perform(step, one)
        try:
            conn = self._delegate_connection(step, one)
        except ConnectError as exc:  # the delegated host's, not this one's: the step fails
            return self._failed(step, f"delegate_to: {exc.host} is unreachable: {exc.reason}")
        own, self.conn, runtime, self.runtime = self.conn, conn, self.runtime, None
        try:  # its process group is on another host: not recorded as this child's
            return self._perform(step, one)
        except ConnectError as exc:
            return self._failed(step, f"delegate_to: {exc.host}: {exc.reason}")
        finally:
            self.conn, self.runtime = own, runtime

    def _delegate_connection(self, step: Step, one: RenderedItem) -> Connection:
        """The connection of the host `step` is delegated to (rendered with this host's
        variables): the controller's for localhost, else the run's one to that host."""
        target = str(self.templar.render(step.delegate_to, one.scope, step.where))
        if target == CONTROLLER:
            return self.local
        if target not in self.plan.inventory.hosts:
            where = step.where
            message = f"delegate_to: unknown host '{target}': not in the inventory"
            raise TemplateError(message, where.file, where.line, where.col, where.path)
        if self.delegate is None:
            raise StepError(f"delegate_to: no connection to {target} can be opened here")
        return self.delegate(target)

    def _failed(self, step: Step, message: str) -> StepOutcome:
        self._emit_error(step, message)
        return StepOutcome(STATUS_FAILED, error=message)

    def _perform(self, step: Step, one: RenderedItem) -> StepOutcome:
        """Run one rendered item of `step` (see runner.planning.render)."""
        args, env, cwd, command = one.args, one.env, one.cwd, one.command
        self._label = one.label
        self._notify("command", step, command)
        action = step.action
        if self.check and action not in COMPARED:
            return StepOutcome(STATUS_SKIPPED, error=f"check mode: not run ({action}: {command})")
        if action in ("run", "local"):
            conn = self.local if action == "local" else self.conn
            return self._command(step, conn, str(args), env, cwd)
        if action == "script":
            return self._script(step, str(args), env, cwd)
        try:
            if "dest" in args:
                confine(str(step.args["dest"]), str(args["dest"]), f"{action} dest")
            if self.check and action == "template" and self._content_not_known(args):
                return self._not_checked(step, command)
            if action in ("put", "template"):
                return self._write_file(step, args, one.scope)
            if action in ACTIONS:
                return self._converge(step, args)
            return self._fetch(step, str(args["src"]), args["dest"])  # get
        except (OSError, RunnerError) as exc:
            if isinstance(exc, ConnectError):
                raise
            message = str(exc) if isinstance(exc, RunnerError) else f"{exc.strerror or exc}"
            self._emit_error(step, message)
            return StepOutcome(STATUS_FAILED, rc=1, error=message)

    def _act(self, step: Step, one: RenderedItem) -> StepOutcome:
        """One item's action: on the controller (`--check` runs these too: they change
        nothing), not at all where `creates`/`removes` say so, else `_execute`."""
        self._label = one.label
        if step.action in ON_CONTROLLER:
            return self._on_controller(step, one)
        if step.action in GUARDED and not self.check:
            try:
                reason = guard_reason(self.plan, step, one, self.conn, self.control.event)
            except StepError as exc:
                self._emit_error(step, str(exc))
                return StepOutcome(STATUS_FAILED, error=str(exc))
            if reason is not None:
                return StepOutcome(STATUS_OK, rc=0, error=reason)
        if step.action in CONVERGING:
            return self._manage(step, one)
        return self._execute(step, one)

    def _on_controller(self, step: Step, one: RenderedItem) -> StepOutcome:
        """An `assert`, `fail`, `debug` or `vars` step: no connection; its message is
        kept in the job's output and shown under its line, its variables set on the host."""
        done = run_on_controller(self.plan, step, one)
        self.registered.update(done.facts)
        for name in set(done.facts) & set(self.plan.playbook.secrets):
            self.redact.add(secret_values(done.facts[name]))
        message = None if step.no_log or done.message is None else self.redact(done.message)
        if message is not None:
            self.sink(self.child_id, self.host, step.index, "stdout", message + "\n")
        error = NO_LOG_TEXT if step.no_log and done.error else done.error  # a fail_msg too
        return StepOutcome(done.status, error=error, message=message)

    def _judged(
        self, step: Step, one: RenderedItem, outcome: StepOutcome, attempt: int
    ) -> StepOutcome:
        """`outcome` once the step's `changed_when` and `failed_when` are applied."""
        result = outcome.registered(attempt)
        if step.action in ("run", "local", "script") and outcome.status == STATUS_FAILED:
            result["changed"] = True  # a command that ran changed something, as Ansible's
        status, why = apply_conditions(self.plan, step, one, outcome.status, result)
        if status != outcome.status:
            outcome.status = status
            outcome.error = why if status == STATUS_FAILED else None
        return outcome

    def _manage(self, step: Step, one: RenderedItem) -> StepOutcome:
        """package/service: one sh script on the target checks, acts (not in --check) and
        reports (runner.execution.actions.system); what the manager printed is the step's
        output."""
        from runner.execution.actions import system as converge

        self._label = one.label
        self._notify("command", step, one.command)
        facts = converge.host_facts(self.conn)
        script = converge.script(step.action, one.args, self.check, facts)
        result, out, err = self._captured(step, script, one.env or None, one.cwd)
        text = {"stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace")}
        reply = converge.Reply.read(result.rc, text["stdout"], text["stderr"])
        tail = Tail()
        for stream in ("stdout", "stderr"):
            shown = getattr(reply, stream)
            if shown:
                self._emitter(step, stream, {stream: []}, tail)(shown)
        if step.no_log:
            self.sink(self.child_id, self.host, step.index, "stdout", NO_LOG_TEXT + "\n")
        if result.interrupted:
            return self._interrupted(step, result)
        done = converge.outcome(step.action, one.args, self.check, facts, reply)
        return StepOutcome(
            done.status, result.rc, reply.stdout, reply.stderr, done.error, stderr_tail=tail.lines()
        )

    def _captured(
        self,
        step: Step,
        script: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> tuple[RunResult, bytes, bytes]:
        """Run an action's script on the target, its output kept (not shown) for the
        action to read: the result, stdout and stderr."""
        output: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        with self._recorded(self.conn) as on_start:
            result = self.conn.run(
                script,
                on_output=lambda stream, data: output[stream].append(data),
                timeout=step.timeout,
                env=env,
                cwd=cwd,
                sudo=step.sudo,
                stop_event=self.control.event,
                on_start=on_start,
            )
        return result, b"".join(output["stdout"]), b"".join(output["stderr"])

    def _local_path(self, path: str, create: bool = False) -> Path:
        p = Path(path)
        if not p.is_absolute():
            p = Path(os.path.dirname(os.path.abspath(self.plan.playbook.file))) / p
        if create:
            p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def _notify(self, event: str, step: Step, text: str) -> None:
        handler = getattr(self.events, event, None)
        if handler is not None:
            handler(self.jp, self.host, step, self.redact(text))

    def _write_file(self, step: Step, args: dict[str, Any], variables: Any) -> StepOutcome:
        """put/template: compare with what the target holds (its checksum and mode, asked
        on the target) and write only what differs, so a file already as the step would
        leave it is `ok`; --check stops before writing, --diff shows the content's diff."""
        mode = _mode(args.get("mode"))
        with self._source_file(step, args, variables) as source:
            target = self._inspect(step, str(args["dest"]), source.name)
            if isinstance(target, StepOutcome):
                return target
            if not target.directory:  # found before writing, so --check fails as a run does
                folder = posixpath.dirname(target.path) or "."
                raise StepError(f"cannot write {target.path}: no directory {folder}")
            with open(source, "rb") as reader:
                digest = hashlib.file_digest(reader, "sha256").hexdigest()
            content_changed = not target.exists or target.sha256 != digest
            mode_changed = mode is not None and target.mode != mode
            if self.diff and content_changed:
                self._show_diff(step, source.read_bytes(), target)
            if not content_changed and not mode_changed:
                return StepOutcome(STATUS_OK, rc=0)
            if self.check:
                return StepOutcome(STATUS_CHANGED, error="check mode: not written")
            if content_changed:
                self.conn.put(source, args["dest"], mode)
                return StepOutcome(STATUS_CHANGED, rc=0)
        assert mode is not None
        return self._chmod(step, target.path, mode)

    def _converge(self, step: Step, args: dict[str, Any]) -> StepOutcome:
        """A converging action (runner.execution.actions): its script inspects, decides
        and changes on the target in one round trip, or in check mode only says whether
        it would change; --diff shows what changed."""
        make_script, read_result = ACTIONS[step.action]
        result, stdout, stderr = self._captured(step, make_script(args, self.check, self.diff))
        if result.interrupted:
            return self._interrupted(step, result)
        done = read_result(args, converged(result.rc, stdout, stderr))
        if self.diff and done.diff is not None:
            self._emit_diff(step, *done.diff, f"{self.host}:{args['path']}")
        if not done.changed:
            return StepOutcome(STATUS_OK, rc=0, facts=done.facts)
        note = "check mode: not changed" if self.check else None
        return StepOutcome(STATUS_CHANGED, rc=0, error=note, facts=done.facts)

    def _fetch(self, step: Step, src: str, dest: str) -> StepOutcome:
        """get: compare the target file's checksum (asked on the target) with the local
        destination's and fetch only when they differ, so an identical copy is `ok`;
        --check stops before fetching, --diff shows what the local file would become."""
        local = into_directory(self._local_path(dest, create=not self.check), src)
        target = self._inspect(step, src, src, follow=True)
        if isinstance(target, StepOutcome):
            return target
        is_file = target.exists and target.path == src
        kept = local_sha256(local)
        if is_file and target.sha256 is not None and target.sha256 == kept:
            return StepOutcome(STATUS_OK, rc=0)
        before = local.read_bytes() if self.diff and kept is not None else b""
        if self.check:
            if not is_file:
                raise StepError(f"cannot read {src}: no such file on the target")
            if self.diff:
                self._emit_diff(step, before, self._remote_content(src), str(local))
            return StepOutcome(STATUS_CHANGED, error="check mode: not fetched")
        self.conn.get(src, str(local))
        if self.diff:
            self._emit_diff(step, before, local.read_bytes(), str(local))
        return StepOutcome(STATUS_CHANGED, rc=0)

    @contextlib.contextmanager
    def _source_file(self, step: Step, args: dict[str, Any], variables: Any) -> Iterator[Path]:
        """The local file a put/template writes: put's `src`, or the rendered template
        staged in a private directory under the source's name."""
        if step.action == "put":
            yield self._local_path(args["src"])
            return
        content = self._render_template(args, variables, step).encode("utf-8")
        with tempfile.TemporaryDirectory(prefix="runner-put-") as folder:
            staged = Path(folder) / Path(str(args["src"])).name
            staged.write_bytes(content)
            yield staged

    def _inspect(
        self, step: Step, dest: str, source_name: str, follow: bool = False
    ) -> TargetFile | StepOutcome:
        """What `dest` holds on the target (through a link with `follow`), asked with one
        small command; the step's outcome instead when that command is stopped or times
        out."""
        output: list[bytes] = []

        def collect(stream: str, data: bytes) -> None:
            if stream == "stdout":
                output.append(data)

        result = self.conn.run(
            probe_script(dest, source_name, follow),
            on_output=collect,
            timeout=step.timeout,
            stop_event=self.control.event,
        )
        if result.interrupted:
            return self._interrupted(step, result)
        text = b"".join(output).decode("utf-8", "replace")
        found = parse_probe(dest, source_name, text) if result.rc == 0 else None
        if found is None:
            raise StepError(f"cannot inspect {dest} on the target (exit status {result.rc})")
        return found

    def _chmod(self, step: Step, path: str, mode: int) -> StepOutcome:
        """Give a file whose content is already right the step's mode."""
        result = self.conn.run(
            f"chmod {mode:o} -- {shlex.quote(path)}",
            on_output=lambda *_: None,
            timeout=step.timeout,
            stop_event=self.control.event,
        )
        if result.interrupted:
            return self._interrupted(step, result)
        if result.rc != 0:
            raise StepError(f"cannot set the mode of {path} (exit status {result.rc})")
        return StepOutcome(STATUS_CHANGED, rc=0)

    @staticmethod
    def _interrupted(step: Step, result: RunResult) -> StepOutcome:
        if result.timed_out:
            return StepOutcome(STATUS_TIMEDOUT, error=f"timed out after {step.timeout:g} s")
        return StepOutcome(STATUS_STOPPED)

    def _show_diff(self, step: Step, content: bytes, target: TargetFile) -> None:
        """Print (and keep in the job's output) the diff from the target's file."""
        before = self._remote_content(target.path) if target.exists else b""
        self._emit_diff(step, before, content, f"{self.host}:{target.path}")

    def _emit_diff(self, step: Step, before: bytes, after: bytes, name: str) -> None:
        text = unified_diff(before, after, name)
        if not step.no_log:
            self.sink(self.child_id, self.host, step.index, "stdout", text)
            self._notify("diff", step, text)

    def _remote_content(self, path: str) -> bytes:
        """The target's file at `path`, or b"" when it cannot be read."""
        fd, local = tempfile.mkstemp(prefix=".runner-diff-")
        os.close(fd)
        try:
            self.conn.get(path, local)
            return Path(local).read_bytes()
        except ConnectError:
            raise
        except (OSError, RunnerError):
            return b""
        finally:
            os.unlink(local)

    def _render_template(self, args: dict[str, Any], variables: Any, step: Step) -> str:
        return render_source(self.plan, step, args, variables)

    def _content_not_known(self, args: dict[str, Any]) -> bool:
        """Whether a template's content reads a result check mode did not register."""
        return bool(self.templar.names(self._template_text(args)) & self._not_run)

    def _template_text(self, args: dict[str, Any]) -> str:
        source = self._local_path(args["src"])
        try:
            return read_text(str(source), MAX_TEMPLATE)
        except FileRefused as why:
            raise RunnerError(f"template {source} {why}") from None

    def _script(self, step: Step, text: str, env: dict[str, str], cwd: str | None) -> StepOutcome:
        path, _, rest = text.strip().partition(" ")
        remote = f"/tmp/.runner-script-{uuid.uuid4().hex}"
        try:
            self.conn.put(self._local_path(path), remote, 0o700)
        except OSError as exc:
            self._emit_error(step, f"cannot upload script {path}: {exc.strerror or exc}")
            return StepOutcome(STATUS_FAILED, rc=1, error=f"cannot upload script {path}")
        command = f"{remote} {rest}; rc=$?; rm -f {remote}; exit $rc"
        return self._command(step, self.conn, command, env, cwd)

    def _command(
        self, step: Step, conn: Connection, command: str, env: dict[str, str], cwd: str | None
    ) -> StepOutcome:
        captured: dict[str, list[str]] = {"stdout": [], "stderr": []}
        tail = Tail()
        hold = self.redact.partial_tail if self.redact else None
        buffers = {
            s: LineBuffer(self._emitter(step, s, captured, tail), hold)
            for s in ("stdout", "stderr")
        }

        def on_output(stream: str, data: bytes) -> None:
            buffers[stream].feed(data)

        with self._recorded(conn) as on_start:
            result = conn.run(
                command,
                on_output=on_output,
                timeout=step.timeout,
                env=env or None,
                cwd=cwd,
                sudo=step.sudo,
                stop_event=self.control.event,
                on_start=on_start,
            )
        for buffer in buffers.values():
            buffer.close()
        if step.no_log:
            self.sink(self.child_id, self.host, step.index, "stdout", NO_LOG_TEXT + "\n")
        outcome = StepOutcome(
            STATUS_CHANGED if result.rc == 0 else STATUS_FAILED,
            rc=result.rc,
            stdout="".join(captured["stdout"]),
            stderr="".join(captured["stderr"]),
            stderr_tail=tail.lines(),
        )
        if result.timed_out:
            outcome.status = STATUS_TIMEDOUT
            outcome.error = f"timed out after {step.timeout:g} s"
        elif result.stopped:
            outcome.status = STATUS_STOPPED
        return outcome

    def _emitter(
        self, step: Step, stream: str, captured: dict[str, list[str]], tail: Tail
    ) -> Callable[[str], None]:
        """Where one stream's lines go: kept for `register`/`until`, into the store, the
        stderr tail and the run's events (the last three not for a `no_log` step)."""
        keep = bool(step.register or step.until or step.changed_when or step.failed_when)

        def emit(text: str) -> None:
            if keep:
                captured[stream].append(text)
            if not step.no_log:
                self.sink(self.child_id, self.host, step.index, stream, text)
                if stream == "stderr":
                    tail.add(self.redact(text))
            if self.events is not None and not step.no_log:
                self.events.output(self.jp, self.host, stream, self.redact(text))

        return emit

    @contextmanager
    def _recorded(self, conn: Connection) -> Iterator[Callable[[int], None] | None]:
        """Record the step's process group while it runs: `local_pid` on the controller,
        `remote_pgid` on a target; cleared when the step ends."""
        runtime = self.runtime
        if runtime is None:
            yield None
            return
        field_name = "local_pid" if isinstance(conn, LocalConnection) else "remote_pgid"
        started: list[int] = []
        failures: list[Exception] = []

        def on_start(pgid: int) -> None:
            try:
                runtime(**{field_name: pgid})
            except Exception as error:  # noqa: BLE001 - raised once the step is over
                failures.append(error)  # raising here would leave the step unwatched
                return
            started.append(pgid)

        try:
            yield on_start
        finally:
            if started:
                runtime(**{field_name: None})
        if failures:
            raise failures[0]


def _combine(current: StepOutcome, new: StepOutcome) -> StepOutcome:
    """A loop's overall outcome: failed if any item failed, changed if any changed."""
    rank = [
        STATUS_SKIPPED,
        STATUS_OK,
        STATUS_CHANGED,
        STATUS_FAILED,
        STATUS_TIMEDOUT,
        STATUS_STOPPED,
    ]
    worse = new if rank.index(new.status) >= rank.index(current.status) else current
    return StepOutcome(
        worse.status,
        worse.rc,
        current.stdout + new.stdout,
        current.stderr + new.stderr,
        worse.error,
        stderr_tail=(current.stderr_tail + new.stderr_tail)[-TAIL_LINES:],
    )


class Tail:
    """The last TAIL_LINES lines of a stream, however long the stream."""

    def __init__(self) -> None:
        self._text = ""

    def add(self, text: str) -> None:
        self._text = (self._text + text)[-_TAIL_CHARS:]

    def lines(self) -> list[str]:
        return self._text.splitlines()[-TAIL_LINES:]


def unified_diff(before: bytes, after: bytes, name: str) -> str:
    """A unified diff of a file's content, as `diff -u` prints it; binary files in a line."""
    if b"\0" in before or b"\0" in after:
        return f"Binary files {name} (before) and {name} (after) differ\n"
    old = before.decode("utf-8", "replace").splitlines(keepends=True)
    new = after.decode("utf-8", "replace").splitlines(keepends=True)
    lines = difflib.unified_diff(old, new, f"{name} (before)", f"{name} (after)")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _mode(mode: Any) -> int | None:
    """A file mode as written in a playbook ("0644", 644 or 0o644) as an int."""
    if mode is None or isinstance(mode, int) and not isinstance(mode, bool) and mode < 0o1000:
        return mode
    return int(str(mode), 8)
