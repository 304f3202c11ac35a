"""One step rendered for one host: the only place a step's templates become values.

`runner plan`, an attached run (`StepRunner`) and a job kept on its target (`kept`) all
render a step here, so what `plan` accepts and shows is what `run` does: per loop item,
whether `when` holds and, when it does, the action's arguments, `env` and `cwd` as
rendered, and the step's label. Pure: it reads the plan and the variables, nothing else.
"""

from __future__ import annotations

import os.path
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from runner.errors import TemplateError
from runner.planning.converge import CONVERGING, describe_converge, render_converge_args
from runner.planning.logic import LOGIC_ACTIONS, expression_reads, render_logic_args, summary
from runner.planning.model import NO_LOG_TEXT, JobDef, Step

if TYPE_CHECKING:
    from runner.planning.planner import Plan
    from runner.planning.templating import Variables


class Unrendered:
    """Stands for a value not known yet (a loop's `item` in a step's label): renders as its
    own template text, `{{ item }}`. It holds no items: iterating it (`join`, `map`) is a
    TypeError, never an endless walk through indexes 0, 1, 2..."""

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

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"{self} is not known yet")


@dataclass(frozen=True)
class HostScope:
    """Where steps are rendered: `job` on `host`, with the results registered there so
    far, or None at plan time, when they are not known yet. Its variables are built once
    and serve every step rendered before `registered` changes."""

    plan: Plan
    job: JobDef
    host: str
    registered: Mapping[str, Any] | None = None

    @cached_property
    def variables(self) -> Variables:
        return self.plan.variables(self.host, self.job, self.registered)

    def step_variables(self, step: Step) -> Variables:
        """What `step` sees: with the `vars` of its blocks and includes over the job's."""
        if not step.scope_vars:
            return self.variables
        return self.plan.variables(self.host, self.job, self.registered, step.scope_vars)


@dataclass(frozen=True)
class RenderedItem:
    """A step for one loop item (the only one without a loop). When `when` is false
    nothing else is rendered: `args` is None and the label is the step's name."""

    item: Any
    when: bool
    label: str
    command: str  # describe_step of the rendered args (not masked), or NO_LOG_TEXT
    # What `when`, `until`, args, env, cwd and a template's content read: the host's
    # variables with `item`.
    scope: Variables = field(compare=False, repr=False)
    args: Any = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


@dataclass(frozen=True)
class RenderedStep:
    """A step rendered for one host. `deferred`: it reads a result registered at run time
    (at plan time), or one a check-mode run did not register, and was not rendered;
    `items` is then empty."""

    step: Step
    items: tuple[RenderedItem, ...]
    label: str  # the step's name on this host; a loop's shows its items as `{{ item }}`
    deferred: bool = False

    @property
    def written(self) -> str:
        """The command as written (for a step not rendered), or NO_LOG_TEXT."""
        return shown_command(self.step, self.step.args)


def describe_step(action: str, args: Any) -> str:
    """A short, one-line rendering of a step: the command, or `src -> dest`."""
    if action in LOGIC_ACTIONS:
        return summary(action, args)
    if action in CONVERGING:
        return describe_converge(action, args)
    if isinstance(args, dict) and "path" in args:  # file, line
        return str(args["path"])
    if isinstance(args, dict):
        return f"{args.get('src', '')} -> {args.get('dest', '')}"
    return str(args)


def shown_command(step: Step, args: Any) -> str:
    """The command a step runs as shown to a user: NO_LOG_TEXT for a no_log step."""
    return NO_LOG_TEXT if step.no_log else describe_step(step.action, args)


def render_step(
    scope: HostScope, step: Step, unknown: frozenset[str] = frozenset()
) -> RenderedStep:
    """`step` rendered for `scope`'s host: the loop's items, then per item `when` and,
    where it holds, args, env, cwd and label, in that order (the first error is the one
    raised: a TemplateError naming the step). A step reading a name not known yet is
    deferred, not rendered: at plan time any registered name; in a check-mode run
    `unknown`, the names registered by steps it did not run (their results are empty, and
    no stand-in for them renders as the real one would)."""
    plan = scope.plan
    runtime = plan.registered_names if scope.registered is None else unknown
    if runtime and reads(plan, step) & runtime:
        return RenderedStep(step, (), step.name, deferred=True)
    variables = scope.step_variables(step)
    items = _loop_items(plan, step, variables)
    rendered = tuple(
        _render_item(plan, step, item, _with_item(step, variables, item)) for item in items
    )
    if step.loop is None:
        return RenderedStep(step, rendered, rendered[0].label)
    return RenderedStep(step, rendered, _loop_label(plan, step, variables))


def kept_on_target(job: JobDef) -> bool:
    """A remote job whose children run on as scripts on their targets (detached, or
    results kept there): their output is read later, where no secret is known to mask it."""
    return job.type == "remote" and (job.detach or job.results.to == "remote")


def refuse_target_secret(scope: HostScope, rendered: RenderedStep) -> None:
    """Raise a TemplateError naming the job, step and secret when a step of a job kept on
    its target holds a secret's value in its rendered command, env or cwd without
    `no_log`: however the value got there (an alias, `hostvars`), its output would carry it
    unmasked into the job directory and the store. The value itself is never shown."""
    if rendered.step.no_log or not kept_on_target(scope.job):
        return
    redact = scope.plan.redactor
    for one in rendered.items:
        texts = [str(one.args), *one.env.values(), one.cwd or ""] if one.when else []
        if any(redact(text) != text for text in texts):
            step, where = rendered.step, rendered.step.where
            raise TemplateError(
                f"job '{scope.job.name}', step '{step.name}' on {scope.host}: its command "
                f"holds the value of {_secret_in(scope, one.scope, texts)} without no_log: a "
                "job kept on its target shows its output later, where the secret is not masked",
                where.file,
                where.line,
                where.col,
                where.path,
            )


def _secret_in(scope: HostScope, variables: Variables, texts: list[str]) -> str:
    """Which secret `texts` hold, named (a connection password has no name of its own)."""
    from runner.planning.guard import Redactor, secret_values

    plan = scope.plan
    for name in plan.playbook.secrets:
        try:
            value = plan.templar.render_native(variables.raw(name), variables)
        except (KeyError, TemplateError):
            continue
        redact = Redactor(secret_values(value))
        if any(redact(text) != text for text in texts):
            return f"secret '{name}'"
    return "an inventory password"


def reads(plan: Plan, step: Step) -> AbstractSet[str]:
    """Every variable name the step's templates read."""
    templar = plan.templar
    return (
        templar.names(step.args)
        | templar.expression_names(step.when)
        | templar.names(step.loop)
        | templar.names(step.env)
        | templar.names(step.cwd)
        | templar.names(step.creates)
        | templar.names(step.removes)
        | expression_reads(templar, step)
    )


def _loop_items(plan: Plan, step: Step, variables: Variables) -> list[Any]:
    if step.loop is None:
        return [None]
    items = plan.templar.render_native(step.loop, variables, step.where)
    if not isinstance(items, list):
        w = step.where
        raise TemplateError(
            f"loop must be a list, got {type(items).__name__}", w.file, w.line, w.col, w.path
        )
    return items


def _with_item(step: Step, variables: Variables, item: Any) -> Variables:
    return variables if step.loop is None else variables.child({"item": item})


def holds(plan: Plan, step: Step, expr: Any, variables: Variables) -> bool:
    """A condition (`when`, `until`) evaluated as Ansible reads its value."""
    from runner.planning.templating import _to_bool

    return _to_bool(plan.templar.evaluate(expr, variables, step.where))


def _render_item(plan: Plan, step: Step, item: Any, scope: Variables) -> RenderedItem:
    if step.when is not None and not holds(plan, step, step.when, scope):
        written = shown_command(step, step.args)
        return RenderedItem(item, False, step.name, written, scope)
    templar, where = plan.templar, step.where
    args = render_args(plan, step, scope)
    label = step_label(plan, step, scope, args)
    env = {k: str(templar.render(v, scope, where)) for k, v in step.env.items()}
    cwd = templar.render(step.cwd, scope, where) if step.cwd else None
    command = shown_command(step, args)
    return RenderedItem(item, True, label, command, scope, args, env, cwd)


def render_args(plan: Plan, step: Step, variables: Variables) -> Any:
    """The action's arguments rendered: a string, or a dict of them (put/get/template)."""
    templar = plan.templar
    if step.action in LOGIC_ACTIONS:
        return render_logic_args(plan, step, variables)
    if step.action in CONVERGING:
        return render_converge_args(plan, step, variables)
    if isinstance(step.args, dict):
        return {k: templar.render(v, variables, step.where) for k, v in step.args.items()}
    return templar.render(step.args, variables, step.where)


def render_source(plan: Plan, step: Step, args: dict[str, Any], variables: Variables) -> str:
    """A `template:` step's source file rendered for one host, read as the run reads it
    (beside the playbook, a regular file of at most MAX_TEMPLATE bytes); an error names
    the file and its line."""
    file, text, key = _read_source(plan, step, args)
    return plan.templar.render_file(text, variables, file, key)


def check_source(plan: Plan, step: Step, args: dict[str, Any], variables: Variables) -> None:
    """At plan time: `render_source`, unless the file reads a result registered at run
    time (then only the run can render it)."""
    file, text, key = _read_source(plan, step, args)
    if not plan.templar.names(text) & plan.registered_names:
        plan.templar.render_file(text, variables, file, key)


def _read_source(plan: Plan, step: Step, args: dict[str, Any]) -> tuple[str, str, str]:
    """(file, text, key path of `src`) of a `template:` step's source file."""
    from runner.planning.files import MAX_TEMPLATE, FileRefused, read_text

    where, src = step.where, str(args["src"])
    file = os.path.join(os.path.dirname(os.path.abspath(plan.playbook.file)), src)
    key = f"{where.path}.template.src"
    try:
        return file, read_text(file, MAX_TEMPLATE), key
    except FileRefused as why:
        message = f"template {file} {why}"
        raise TemplateError(message, where.file, where.line, where.col, key) from None


def _loop_label(plan: Plan, step: Step, variables: Variables) -> str:
    """A loop's name on this host, its items shown as `{{ item }}`."""
    shown = variables.child({"item": Unrendered("item")})
    try:
        args = render_args(plan, step, shown)
    except TemplateError:
        args = None
    return step_label(plan, step, shown, args)


def step_label(plan: Plan, step: Step, variables: Variables, args: Any = None) -> str:
    """A step's name as a run shows it on one host: a name derived from the command is
    derived again from the command as rendered (`run: echo web1`, given the rendered
    `args`), a written name is rendered; one that cannot be rendered stays as written."""
    from runner.planning.playbook import derive_step_name

    if step.no_log:
        return step.name
    if args is not None and step.name == derive_step_name(step.action, step.args):
        # masked before the name is cut short: a cut secret would escape its mask
        redact = plan.redactor
        masked = {k: redact(v) for k, v in args.items()} if isinstance(args, dict) else redact(args)
        return redact(derive_step_name(step.action, masked))
    try:
        return plan.redactor(str(plan.templar.render(step.name, variables, step.where)))
    except TemplateError:
        return step.name
