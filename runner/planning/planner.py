"""The pure planner: (playbook, inventory, extra vars, limit, tags) -> Plan.

Nothing here opens a connection or writes state. `build_plan` resolves every job's
hosts and filters steps by tags; `render_plan` renders every job x host x step the way
the executor will, so an undefined variable is reported before anything runs. Values
that only exist at run time (registered results) are left unrendered and marked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from runner.errors import LocatedError, PatternError, TemplateError, UsageError
from runner.planning.guard import Redactor, confine_located, secret_values
from runner.planning.inventory import Inventory
from runner.planning.model import JobDef, Playbook, SessionDef, Step
from runner.planning.patterns import select_hosts
from runner.planning.templating import Literal, Templar, Variables

ALWAYS_TAG = "always"
NO_LOG_COMMAND = "(hidden: no_log)"
CONTROLLER = "localhost"  # where a thread or background job without targets runs


@dataclass(frozen=True)
class JobPlan:
    """A job with its resolved hosts (Ansible's order) and the steps its tags keep."""

    job: JobDef
    hosts: tuple[str, ...]
    steps: tuple[Step, ...]
    session: SessionDef | None = None

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def pattern(self) -> str:
        if self.session is None and self.job.targets is None:
            return CONTROLLER
        return self.session.targets if self.session else _pattern(self.job.targets)


@dataclass(frozen=True)
class PlannedStep:
    """One row of `runner plan`: a step as it will run on one host."""

    job: str
    type: str
    host: str
    index: int
    step: str
    action: str
    command: str
    when: str | None = None
    deferred: bool = False  # reads a value known only at run time (a registered result)
    item: Any = None


@dataclass(frozen=True)
class Plan:
    """Everything the executor needs, resolved, and nothing it has done yet."""

    playbook: Playbook
    inventory: Inventory
    extra_vars: Mapping[str, Any]
    jobs: tuple[JobPlan, ...]
    warnings: tuple[str, ...] = ()
    templar: Templar = field(default_factory=Templar, compare=False, repr=False)

    @cached_property
    def registered_names(self) -> frozenset[str]:
        """Names some step registers: undefined at plan time, known at run time."""
        return frozenset(
            step.register for job in self.playbook.jobs for step in job.steps if step.register
        )

    @cached_property
    def _groups(self) -> dict[str, list[str]]:
        return self.inventory.groups_map()

    @cached_property
    def redactor(self) -> Redactor:
        """Masks the values of the playbook's `secrets:` variables, for every host."""
        names = self.playbook.secrets
        passwords = [v for p in self.inventory.secrets() for v in secret_values(p)]
        if not names and not passwords:
            return Redactor()
        values = [v for n in names if n in self.extra_vars for v in secret_values(self.extra_vars[n])]
        values += passwords
        for jp in self.jobs:  # a job's own `vars:` may hold a secret too
            for host in jp.hosts:
                variables = self.variables(host, jp.job)
                for name in names:
                    if name in variables:
                        value = self.templar.render_native(variables.raw(name), variables)
                        values.extend(secret_values(value))
        return Redactor(values, active=True)

    def job(self, name: str) -> JobPlan:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def variables(
        self, host: str, job: JobDef | None = None, registered: Mapping[str, Any] | None = None
    ) -> Variables:
        """The templating variables for `host` in `job`, by the README's precedence:
        inventory (group < host) < playbook vars < job vars < registered < extra vars."""
        magic = {
            "inventory_hostname": host,
            "inventory_hostname_short": host.split(".", 1)[0],
            "group_names": self.inventory.group_names(host),
            "groups": self._groups,
            "hostvars": HostVars(self),
            "playbook_dir": _dirname(self.playbook.file),
            "job": job.name if job else "",
        }
        return self.templar.variables(
            self.inventory.host_vars(host),
            self.playbook.vars,
            job.vars if job else {},
            Literal(registered or {}),
            self.extra_vars,
            Literal(magic),
        )


class HostVars(Mapping[str, Any]):
    """Ansible's `hostvars`: every host's variables, built only for the hosts asked for."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan

    def __getitem__(self, host: str) -> Variables:
        if host not in self._plan.inventory.hosts:
            raise KeyError(host)
        return self._plan.variables(host)

    def __iter__(self) -> Iterator[str]:
        return iter(self._plan.inventory.hosts)

    def __len__(self) -> int:
        return len(self._plan.inventory.hosts)


def _dirname(path: str) -> str:
    import os.path

    return os.path.dirname(os.path.abspath(path))


def _pattern(targets: Any) -> str:
    if isinstance(targets, (list, tuple)):
        return ":".join(str(t) for t in targets)
    return str(targets or "")


def _as_set(tags: Sequence[str] | str | None) -> frozenset[str]:
    if not tags:
        return frozenset()
    if isinstance(tags, str):
        tags = [tags]
    return frozenset(t.strip() for tag in tags for t in tag.split(",") if t.strip())


def _keeps(tags: frozenset[str], only: frozenset[str], skip: frozenset[str]) -> bool:
    """Ansible's rule: `always` runs unless skipped by name; --skip-tags beats --tags."""
    if tags & skip:
        return False
    if not only or "all" in only:
        return True
    return bool(tags & only) or ALWAYS_TAG in tags


def build_plan(
    playbook: Playbook,
    inventory: Inventory,
    extra_vars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    tags: Sequence[str] | str | None = None,
    skip_tags: Sequence[str] | str | None = None,
    start_at_job: str | None = None,
) -> Plan:
    """Resolve hosts and tags for every job. Pure: reads nothing but its arguments."""
    only, skip = _as_set(tags), _as_set(skip_tags)
    jobs: list[JobPlan] = []
    warnings: list[str] = inventory.warnings()  # ansible_* variables runner does not use
    started = start_at_job is None
    for job in playbook.jobs:
        started = started or job.name == start_at_job
        if not started:
            continue
        session = playbook.sessions.get(job.session) if job.session else None
        pattern = session.targets if session else _pattern(job.targets)
        if session is None and job.targets is None:  # a thread or background job
            hosts: tuple[str, ...] = (CONTROLLER,)  # runs once, on the controller
        else:
            hosts = _select(inventory, pattern, limit, job, session)
        if not hosts:
            where = job.where
            warnings.append(
                f"{where.file}:{where.line}:{where.col}: {where.path}: "
                f"pattern '{pattern}' selects no hosts"
                + (f" (with --limit '{limit}')" if limit else "")
            )
        job_tags = frozenset(job.tags)
        steps = tuple(s for s in job.steps if _keeps(job_tags | frozenset(s.tags), only, skip))
        if steps:
            jobs.append(JobPlan(job=job, hosts=hosts, steps=steps, session=session))
    if start_at_job is not None and not started:
        raise UsageError(f"--start-at-job: no job named '{start_at_job}' in {playbook.file}")
    return Plan(
        playbook=playbook,
        inventory=inventory,
        extra_vars=dict(extra_vars or {}),
        jobs=tuple(jobs),
        warnings=tuple(warnings),
    )


def _select(
    inventory: Inventory, pattern: str, limit: str | None, job: JobDef, session: SessionDef | None
) -> tuple[str, ...]:
    """The job's hosts; a malformed pattern is reported at the job (or session) that has it."""
    try:
        return tuple(select_hosts(inventory, pattern, limit))
    except PatternError as error:
        if error.file:
            raise
        where, key = (session.where, "targets") if session else (job.where, "targets")
        raise PatternError(
            f"bad host pattern {pattern!r}: {error.message}"
            + (f" (with --limit {limit!r})" if limit else ""),
            where.file, where.line, where.col, f"{where.path}.{key}",
        ) from None


def describe_step(action: str, args: Any) -> str:
    """A short, one-line rendering of a step: the command, or `src -> dest`."""
    if isinstance(args, dict):
        return f"{args.get('src', '')} -> {args.get('dest', '')}"
    return str(args)


class Unrendered:
    """Stands for a value not known yet (a loop's `item` in a step's label, a result a
    check-mode run did not register): renders as its own template text, `{{ item }}`."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __str__(self) -> str:
        return "{{ " + self._text + " }}"

    def __getattr__(self, name: str) -> Unrendered:
        if name.startswith("_"):
            raise AttributeError(name)
        return Unrendered(f"{self._text}.{name}")

    def __getitem__(self, key: Any) -> Unrendered:
        return Unrendered(f"{self._text}[{key!r}]")


def step_label(plan: Plan, step: Step, variables: Variables, args: Any = None) -> str:
    """A step's name as a run shows it on one host: a name derived from the command is
    derived again from the command as rendered (`run: echo web1`, given the rendered
    `args`), a written name is rendered; one that cannot be rendered stays as written."""
    from runner.planning.playbook import derive_step_name

    if step.no_log:
        return step.name
    if args is not None and step.name == derive_step_name(step.action, step.args):
        return plan.redactor(derive_step_name(step.action, args))
    try:
        return plan.redactor(str(plan.templar.render(step.name, variables, step.where)))
    except TemplateError:
        return step.name


def render_plan(plan: Plan) -> list[PlannedStep]:
    """Every job x host x step rendered as the executor will; raises TemplateError early,
    its message masked: a template's error may quote a secret's value."""
    try:
        return _render_rows(plan)
    except LocatedError as error:
        try:
            redact = plan.redactor
        except LocatedError:
            raise error from None  # a secret's own template failed: it has no value to show
        error.message = redact(error.message)
        raise


def _render_rows(plan: Plan) -> list[PlannedStep]:
    rows: list[PlannedStep] = []
    templar = plan.templar
    for jp in plan.jobs:
        for host in jp.hosts:
            variables = plan.variables(host, jp.job)
            if jp.job.results.path:
                rendered = str(templar.render(jp.job.results.path, variables, jp.job.where))
                confine_located(jp.job.results.path, rendered, "results.path", jp.job.where)
            for step in jp.steps:
                rows.extend(_render_step(plan, jp, host, step, variables))
    return rows


def _render_step(
    plan: Plan, jp: JobPlan, host: str, step: Step, variables: Variables
) -> Iterator[PlannedStep]:
    templar = plan.templar
    runtime = plan.registered_names
    when = step.when if step.when is None else str(step.when)
    row = {"job": jp.name, "type": jp.job.type, "host": host, "index": step.index,
           "step": step.name, "action": step.action, "when": when}
    loop_deferred = step.loop is not None and bool(templar.names(step.loop) & runtime)
    reads = templar.names(step.args) | templar.expression_names(step.when)
    if loop_deferred or reads & runtime:
        command = NO_LOG_COMMAND if step.no_log else describe_step(step.action, step.args)
        yield PlannedStep(command=command, deferred=True, **row)
        return
    items: list[Any] = [None]
    if step.loop is not None:
        items = templar.render_native(step.loop, variables, step.where)
        if not isinstance(items, list):
            w = step.where
            raise TemplateError(
                f"loop must be a list, got {type(items).__name__}", w.file, w.line, w.col, w.path
            )
    for item in items:
        scope = variables if step.loop is None else variables.child({"item": item})
        if step.when is not None:
            templar.evaluate(step.when, scope, step.where)
        args = step.args
        if isinstance(args, dict):
            args = {k: templar.render(v, scope, step.where) for k, v in args.items()}
        else:
            args = templar.render(args, scope, step.where)
        for value in step.env.values():
            templar.render(value, scope, step.where)
        if step.cwd:
            templar.render(step.cwd, scope, step.where)
        command = NO_LOG_COMMAND if step.no_log else describe_step(step.action, args)
        yield PlannedStep(command=plan.redactor(command), item=item, **row)
