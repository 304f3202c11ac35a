"""The pure planner: (playbook, inventory, extra vars, limit, tags) -> Plan.

Nothing here opens a connection or writes state. `build_plan` resolves every job's
hosts and filters steps by tags; `render_plan` renders every job x host x step with
`runner.planning.render`, as the executor does, so an undefined variable is reported before
anything runs. Values that only exist at run time (registered results) are left
unrendered and marked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from runner.errors import LocatedError, PatternError, UsageError
from runner.planning import vault
from runner.planning.flow import check_delegates
from runner.planning.guard import Redactor, confine_located, secret_values
from runner.planning.inventory import Inventory
from runner.planning.model import JobDef, Playbook, SessionDef, Step
from runner.planning.patterns import check_limit, select_hosts
from runner.planning.render import HostScope, check_source, refuse_target_secret, render_step
from runner.planning.templating import Literal, Templar, Variables

ALWAYS_TAG = "always"
CONTROLLER = "localhost"  # where a thread or background job without targets runs


@dataclass(frozen=True)
class JobPlan:
    """A job with its resolved hosts (Ansible's order) and the steps its tags keep."""

    job: JobDef
    hosts: tuple[str, ...]
    steps: tuple[Step, ...]
    session: SessionDef | None = None
    handlers: tuple[Step, ...] = ()  # the job's, whatever the tags: they run when notified

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
    skipped: bool = False  # its `when` is false on this host (for this item): not rendered
    handler: bool = False  # runs only when a step notified it
    section: str = ""  # the blocks it is in ("deploy > rescue"), empty outside any


@dataclass(frozen=True)
class Plan:
    """Everything the executor needs, resolved, and nothing it has done yet."""

    playbook: Playbook
    inventory: Inventory
    extra_vars: Mapping[str, Any]
    jobs: tuple[JobPlan, ...]
    warnings: tuple[str, ...] = ()
    force_handlers: bool = False  # notified handlers run even after a failed step
    templar: Templar = field(default_factory=Templar, compare=False, repr=False)

    @cached_property
    def registered_names(self) -> frozenset[str]:
        """Names some step registers: undefined at plan time, known at run time."""
        from runner.planning.logic import sets

        return frozenset(
            name for job in self.playbook.jobs for step in job.steps for name in sets(step)
        )

    @cached_property
    def _groups(self) -> dict[str, list[str]]:
        return self.inventory.groups_map()

    @cached_property
    def redactor(self) -> Redactor:
        """Masks the values of the playbook's `secrets:` variables, for every host, and the
        inventory's passwords and ansible-vault's decrypted values."""
        names = self.playbook.secrets
        passwords = [v for p in self.inventory.secrets() for v in secret_values(p)]
        passwords += vault.revealed()  # every value decrypted from ansible-vault
        if not names and not passwords:
            return Redactor()
        values = [
            v for n in names if n in self.extra_vars for v in secret_values(self.extra_vars[n])
        ]
        values += passwords
        for jp in self.jobs:  # a job's own `vars:` may hold a secret too, or a block's
            blocks = [{}, *(s.scope_vars for s in jp.job.steps if set(s.scope_vars) & set(names))]
            for host, scope in ((host, scope) for host in jp.hosts for scope in blocks):
                variables = self.variables(host, jp.job, blocks=scope)
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
        self,
        host: str,
        job: JobDef | None = None,
        registered: Mapping[str, Any] | None = None,
        blocks: Mapping[str, Any] | None = None,
    ) -> Variables:
        """The templating variables for `host` in `job`, by the README's precedence:
        inventory (group < host) < playbook vars (vars_files over them) < job vars
        (vars_files over them) < `blocks`, the vars of a step's blocks and includes <
        registered < extra vars.
        Without a job (a `hostvars` entry) there is no `job`, as Ansible's hostvars have
        no `ansible_play_name`."""
        magic = {
            "inventory_hostname": host,
            "inventory_hostname_short": host.split(".", 1)[0],
            "group_names": self.inventory.group_names(host),
            "groups": self._groups,
            "hostvars": HostVars(self),
            "playbook_dir": _dirname(self.playbook.file),
        }
        if job is not None:
            magic["job"] = job.name
        return self.templar.variables(
            self.inventory.host_vars(host),
            self.playbook.vars,
            job.vars if job else {},
            blocks or {},
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


def queue_for(plan: Plan, jp: JobPlan, host: str) -> str | None:
    """The queue of workers that runs `jp`'s child on `host` in the distributed mode: the
    job's `queue:`, else the host's inventory variable `runner_queue` (a playbook key wins
    over the inventory, as in the variable precedence), else None. Both names were checked
    when their files loaded; neither is a template."""
    if jp.job.queue is not None:
        return jp.job.queue
    queue = plan.inventory.host_vars(host).get("runner_queue")
    return None if queue is None else str(queue)


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
    force_handlers: bool = False,
) -> Plan:
    """Resolve hosts and tags for every job. Pure: reads nothing but its arguments."""
    check_delegates(playbook, inventory)
    only, skip = _as_set(tags), _as_set(skip_tags)
    jobs: list[JobPlan] = []
    warnings: list[str] = []
    targeted: dict[str, None] = {}
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
            targeted.update(dict.fromkeys(hosts))
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
            jobs.append(JobPlan(job, hosts, steps, session, job.handlers))
    check_limit(inventory, limit)  # after the jobs: a malformed limit is named at its job
    warnings[:0] = inventory.warnings(targeted)  # ansible_* variables runner does not use
    if start_at_job is not None and not started:
        raise UsageError(f"--start-at-job: no job named '{start_at_job}' in {playbook.file}")
    return Plan(
        playbook=playbook,
        inventory=inventory,
        extra_vars=dict(extra_vars or {}),
        jobs=tuple(jobs),
        warnings=tuple(warnings),
        force_handlers=force_handlers,
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
            where.file,
            where.line,
            where.col,
            f"{where.path}.{key}",
        ) from None


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
            scope = HostScope(plan, jp.job, host)
            if jp.job.results.path:
                rendered = str(templar.render(jp.job.results.path, scope.variables, jp.job.where))
                confine_located(jp.job.results.path, rendered, "results.path", jp.job.where)
            for step in jp.steps + jp.handlers:
                rows.extend(_render_step(plan, jp, scope, step))
    return rows


def _render_step(plan: Plan, jp: JobPlan, scope: HostScope, step: Step) -> Iterator[PlannedStep]:
    when = step.when if step.when is None else str(step.when)
    row: dict[str, Any] = {
        "job": jp.name,
        "type": jp.job.type,
        "host": scope.host,
        "index": step.index,
        "step": step.name,
        "action": step.action,
        "when": when,
        "handler": step.handler is not None,
        "section": step.section,
    }
    rendered = render_step(scope, step)
    refuse_target_secret(scope, rendered)
    if rendered.deferred:
        yield PlannedStep(command=plan.redactor(rendered.written), deferred=True, **row)
        return
    for one in rendered.items:
        if one.when and step.action == "template":  # its file, as the run will render it
            check_source(plan, step, one.args, one.scope)
        yield PlannedStep(
            command=plan.redactor(one.command), item=one.item, skipped=not one.when, **row
        )
