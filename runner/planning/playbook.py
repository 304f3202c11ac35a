"""Load a playbook file into the frozen dataclasses of `runner.planning.model`.

Loading is three passes, each failing with a `PlaybookError` at the user's line: the
YAML itself (`runner.planning.yamlsource`), its structure (`runner.planning.schema`, the JSON
Schema is the only statement of it; `include:`d files are read and checked then, see
`runner.planning.includes`), then the rules that span the document and a schema cannot
state: job names are unique, sessions and `needs` name things that exist, and `needs`
has no cycle. What is left is normalised (lists for `needs`/`tags`, step names derived
from their action, blocks flattened by `runner.planning.blocks`) so the planner never has
to ask what form a user chose.
"""

from __future__ import annotations

import math
import os.path
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import LocatedError, TemplateError, gathered
from runner.planning.blocks import build_steps
from runner.planning.blocks import condition as _condition
from runner.planning.blocks import env_value as _env_value
from runner.planning.blocks import names as _names
from runner.planning.converge import CONVERGING, describe_converge
from runner.planning.files import MAX_TEMPLATE, FileRefused, read_text
from runner.planning.flow import as_handler, check_flow, step_specs
from runner.planning.includes import expand
from runner.planning.logic import LOGIC_ACTIONS, normalize, summary
from runner.planning.model import ACTIONS, NO_LOG_TEXT, JobDef, Playbook, Results, SessionDef, Step
from runner.planning.schema import did_you_mean, validate
from runner.planning.stateargs import check_state_args
from runner.planning.varsfiles import read_vars_files
from runner.planning.yamlsource import Document, KeyPath, format_path, load_yaml

STEP_NAME_WIDTH = 60
_MARKERS = ("{{", "{%", "{#")  # as runner.planning.templating, which this module imports lazily
# Keys whose values are names, never rendered; and the keys that hold bare expressions.
_NOT_RENDERED = frozenset(
    ("name", "needs", "tags", "register", "session", "targets", "type", "secrets", "queue")
)
_NOT_RENDERED |= {"notify"}  # handler names
_EXPRESSIONS = frozenset(("when", "until", "changed_when", "failed_when", "that", "var"))
_LISTED = frozenset(("when", "changed_when", "failed_when", "that"))  # lists of expressions
_FREE = frozenset(("vars", "env"))  # mappings of the user's own names to templates


def load_playbook(path: str | Path, schema_checked: bool = False) -> Playbook:
    """Read, validate and check a playbook file; raise a `PlaybookError` for its first
    problem, holding every problem found at that pass in `every`.

    `schema_checked`: these very bytes already passed the schema (see
    `runner.api.plans.load_playbook_cached`), so the costly schema pass is skipped; every other
    check still runs."""
    document = load_yaml(path, secret_key="vars")  # of a wholly encrypted playbook
    if not schema_checked:
        validate(document)
    document = expand(document)  # an included file is checked against the schema as it loads
    _check_not_nan(document)
    data = document.data
    sessions = {
        name: _session(document, name, spec) for name, spec in (data.get("sessions") or {}).items()
    }
    playbook_vars, problems = read_vars_files(document, ("vars_files",), data.get("vars_files"))
    jobs = tuple(_job(document, index, spec, problems) for index, spec in enumerate(data["jobs"]))
    problems += [
        *_check_unique_names(document, jobs),
        *_check_sessions(document, jobs, sessions),
        *_check_needs(document, jobs),
        *_check_kept_on_target(document, jobs, frozenset(data.get("secrets") or ())),
        *check_flow(document, jobs),
        *_check_no_rescue_on_target(document, jobs),
        *_check_templates(document),
        *_check_modes(document),
        *check_state_args(document),
        *_check_guards(document, jobs),
    ]
    if not any("needs" in (p.path or "") for p in problems):  # a cycle of known names only
        problems += _check_no_cycle(document, jobs)
    if problems:
        raise gathered(problems, document.file)
    return Playbook(
        file=document.file,
        name=data.get("name") or Path(path).stem,
        vars=dict(data.get("vars") or {}) | playbook_vars,
        sessions=sessions,
        jobs=jobs,
        secrets=tuple(data.get("secrets") or ()),
    )


def derive_step_name(action: str, args: Any) -> str:
    """A name for an unnamed step, from its action: ``run: uptime``, ``put: a -> b``."""
    if action in LOGIC_ACTIONS and isinstance(args, dict):
        text = summary(action, args)
    elif action in CONVERGING:
        text = describe_converge(action, args)
    elif isinstance(args, dict) and "path" in args:  # file, line
        text = str(args["path"])
    elif isinstance(args, dict):
        text = f"{args.get('src', '')} -> {args.get('dest', '')}"
    else:
        lines = str(args).strip().splitlines()
        text = lines[0] if lines else ""
    name = f"{action}: {text}"
    return name if len(name) <= STEP_NAME_WIDTH else name[: STEP_NAME_WIDTH - 3].rstrip() + "..."


def _session(document: Document, name: str, spec: dict[str, Any]) -> SessionDef:
    return SessionDef(
        name=name,
        targets=_pattern(spec["targets"]),
        where=document.location(("sessions", name)),
        user=spec.get("user"),
        port=spec.get("port"),
        connect_timeout=_seconds(spec.get("connect_timeout")),
        vars=dict(spec.get("vars") or {}),
    )


def _job(
    document: Document, index: int, spec: dict[str, Any], problems: list[LocatedError]
) -> JobDef:
    path = ("jobs", index)
    results = spec.get("results") or {}
    percentage = spec.get("max_fail_percentage")
    included = getattr(document, "included", {})
    steps, tree = build_steps(document, path + ("steps",), spec["steps"], _step, included)
    job_vars, found = read_vars_files(document, path + ("vars_files",), spec.get("vars_files"))
    problems += found
    return JobDef(
        name=spec["name"],
        type=spec.get("type", "remote"),
        steps=steps,
        tree=tree,
        where=document.location(path),
        session=spec.get("session"),
        targets=_pattern(spec["targets"]) if "targets" in spec else None,
        needs=_names(spec.get("needs")),
        detach=spec.get("detach", False),
        results=Results(to=results.get("to", "controller"), path=results.get("path")),
        throttle=spec.get("throttle"),
        serial=spec.get("serial"),
        max_fail_percentage=None if percentage is None else float(percentage),
        any_errors_fatal=spec.get("any_errors_fatal", False),
        retries=spec.get("retries", 0),
        tags=_names(spec.get("tags")),
        timeout=_seconds(spec.get("timeout")),
        vars=dict(spec.get("vars") or {}) | job_vars,
        queue=spec.get("queue"),
        handlers=tuple(
            as_handler(_step(document, (*path, "handlers", i), len(steps) + i, one))
            for i, one in enumerate(spec.get("handlers") or ())
        ),
    )


def _step(document: Document, path: KeyPath, index: int, spec: dict[str, Any]) -> Step:
    """A step (or a handler) at `path` as the model holds it."""
    action = next(name for name in ACTIONS if name in spec)
    args = normalize(action, spec[action]) if action in LOGIC_ACTIONS else spec[action]
    return Step(
        index=index,
        name=spec.get("name")
        or derive_step_name(action, NO_LOG_TEXT if spec.get("no_log") else args),
        action=action,
        args=dict(args) if isinstance(args, dict) else args,
        where=document.location(path),
        when=_condition(spec.get("when")),
        register=spec.get("register"),
        loop=spec.get("loop"),
        ignore_errors=spec.get("ignore_errors", False),
        timeout=_seconds(spec.get("timeout")),
        retries=spec.get("retries", 0),
        until=spec.get("until"),
        delay=float(spec.get("delay", 1.0)),
        env={str(key): _env_value(value) for key, value in (spec.get("env") or {}).items()},
        cwd=spec.get("cwd"),
        sudo=spec.get("sudo", False),
        no_log=spec.get("no_log", False),
        tags=_names(spec.get("tags")),
        changed_when=_condition(spec.get("changed_when")),
        failed_when=_condition(spec.get("failed_when")),
        creates=spec.get("creates"),
        removes=spec.get("removes"),
        notify=_names(spec.get("notify")),
        run_once=spec.get("run_once", False),
        delegate_to=spec.get("delegate_to"),
    )


def _pattern(value: str | list[str]) -> str:
    """One host pattern; a list of patterns is their union, which ':' spells."""
    return value if isinstance(value, str) else ":".join(value)


def _seconds(value: float | None) -> float | None:
    return None if value is None else float(value)


def _check_not_nan(document: Document) -> None:
    """NaN passes every bound of the schema (no comparison with it holds): refuse it."""
    data = document.data
    places: list[tuple[KeyPath, Any]]
    places = [(("sessions", name), spec) for name, spec in (data.get("sessions") or {}).items()]
    for index, job in enumerate(data["jobs"]):
        places.append((("jobs", index), job))
        places += step_specs(job, ("jobs", index))
    for path, spec in places:
        for key in ("timeout", "connect_timeout", "delay", "max_fail_percentage"):
            value = spec.get(key)
            if isinstance(value, float) and math.isnan(value):
                raise document.error("must be a number, not NaN", path + (key,))


def _check_unique_names(document: Document, jobs: tuple[JobDef, ...]) -> Iterator[LocatedError]:
    first: dict[str, JobDef] = {}
    for index, job in enumerate(jobs):
        if job.name in first:
            line = first[job.name].where.line
            message = f"duplicate job name '{job.name}' (first at line {line})"
            yield document.error(message, ("jobs", index, "name"))
            continue
        first[job.name] = job


def _check_sessions(
    document: Document, jobs: tuple[JobDef, ...], sessions: dict[str, SessionDef]
) -> Iterator[LocatedError]:
    for index, job in enumerate(jobs):
        if job.session is None or job.session in sessions:
            continue
        hint = did_you_mean(job.session, sessions) if sessions else " (no sessions are declared)"
        yield document.error(f"unknown session '{job.session}'{hint}", ("jobs", index, "session"))


def _needs_path(document: Document, index: int, position: int) -> KeyPath:
    """The key path of a job's `position`-th need, whether written as a list or one name."""
    path = ("jobs", index, "needs")
    return path if isinstance(document.data["jobs"][index]["needs"], str) else path + (position,)


def _check_needs(document: Document, jobs: tuple[JobDef, ...]) -> Iterator[LocatedError]:
    names = [job.name for job in jobs]
    for index, job in enumerate(jobs):
        for position, need in enumerate(job.needs):
            if need == job.name:
                message = f"job '{job.name}' needs itself"
            elif need not in names:
                message = f"needs unknown job '{need}'{did_you_mean(need, names)}"
            else:
                continue
            yield document.error(message, _needs_path(document, index, position))


def _check_modes(document: Document) -> list[LocatedError]:
    """A file mode written as a number (`mode: 644`) is read as octal digits: a digit 8
    or 9 (`mode: 999`) cannot be one. The schema bounds the number; this its digits."""
    problems = []
    for index, job in enumerate(document.data.get("jobs") or []):
        for where, step in step_specs(job, ("jobs", index)):
            for action in ("put", "template", "script", "file", "line"):
                args = step.get(action)
                mode = args.get("mode") if isinstance(args, dict) else None
                if type(mode) is int and mode >= 0o1000 and set(str(mode)) - set("01234567"):
                    message = f"{mode} is not an octal file mode: write it as a string like '0644'"
                    path = (*where, action, "mode")
                    problems.append(document.error(message, path))
    return problems


def _check_guards(document: Document, jobs: tuple[JobDef, ...]) -> Iterator[LocatedError]:
    """`creates` and `removes` say whether a command is run: only run and script steps."""
    for index, job in enumerate(jobs):
        for step in job.steps:
            for key in ("creates", "removes"):
                if getattr(step, key) is not None and step.action not in ("run", "script"):
                    message = f"'{key}' applies to run and script steps, not to {step.action}"
                    yield document.error(message, ("jobs", index, "steps", step.index, key))


def _check_kept_on_target(
    document: Document, jobs: tuple[JobDef, ...], secrets: frozenset[str]
) -> Iterator[LocatedError]:
    """Jobs that run on without the runner (detach, results kept on the target) are
    rendered whole when they start: only shell steps, nothing that needs the runner."""
    from runner.planning.templating import Templar

    templar = Templar()
    for index, job in enumerate(jobs):
        path = ("jobs", index)
        if job.detach and job.type == "thread":
            yield document.error(
                "a thread job cannot be detached: it lives in the runner's process "
                "(use type: background)",
                path + ("detach",),
            )
        if job.results.to == "remote" and job.type != "remote":
            yield document.error(
                f"results.to: remote needs a remote job (this one is {job.type})",
                path + ("results", "to"),
            )
        if job.retries and (job.detach or job.results.to == "remote"):
            yield document.error(
                "retries cannot be used in a job kept on its target (detach or results.to:"
                " remote): it runs on without the runner, which is not there to run it again",
                path + ("retries",),
            )
        if job.type != "remote" or not (job.detach or job.results.to == "remote"):
            continue
        registered: set[str] = set()
        for position, step in enumerate(job.steps):
            where = path + ("steps", position)
            why = _not_on_target(step, registered, secrets, templar)
            kind = "a detached job" if job.detach else "a job with results.to: remote"
            if why:
                yield document.error(f"{why}: {kind} runs on the target without the runner", where)
            if step.register:
                why = "its output stays on the target, where no later step or job could read it"
                yield document.error(f"cannot register in {kind}: {why}", where + ("register",))
            if step.register:
                registered.add(step.register)


def _check_no_rescue_on_target(
    document: Document, jobs: tuple[JobDef, ...]
) -> Iterator[LocatedError]:
    """A job kept on its target runs its steps as one script there: a block's steps run
    in it, but no `rescue` or `always`, which need the runner to decide."""
    for index, job in enumerate(jobs):
        if job.type != "remote" or not (job.detach or job.results.to == "remote"):
            continue
        for where, spec in _blocks(document.data["jobs"][index]["steps"], ("jobs", index, "steps")):
            for part in ("rescue", "always"):
                if part in spec:
                    message = (
                        f"'{part}' cannot be used in a job kept on its target "
                        "(detach or results.to: remote): the runner is not there to decide"
                    )
                    yield document.error(message, (*where, part))


def _blocks(steps: list[Any], path: KeyPath) -> Iterator[tuple[KeyPath, dict[str, Any]]]:
    for position, spec in enumerate(steps):
        if isinstance(spec, dict) and "block" in spec:
            yield path + (position,), spec
            for part in ("block", "rescue", "always"):
                yield from _blocks(spec.get(part) or [], path + (position, part))


def _not_on_target(
    step: Step, registered: set[str], secrets: frozenset[str], templar: Any
) -> str | None:
    if step.action not in ("run",):
        return f"'{step.action}' steps cannot run in it, only 'run'"
    if step.until or step.retries:
        return "'retries'/'until' cannot be used in it"
    if step.changed_when or step.failed_when or step.creates or step.removes:
        return "'changed_when'/'failed_when'/'creates'/'removes' cannot be used in it"
    if step.run_once or step.delegate_to:
        return "'run_once'/'delegate_to' cannot be used in it"
    reads = (
        templar.names(step.args)
        | templar.expression_names(step.when)
        | templar.names(step.loop)
        | templar.names(step.env)
        | templar.names(step.cwd)
    )
    if reads & registered:
        return f"uses '{min(reads & registered)}', registered by an earlier step of the same job"
    if reads & secrets and not step.no_log:
        return (
            f"uses secret '{min(reads & secrets)}' without no_log: its output is read "
            "later, where the secret is not known to mask it"
        )
    return None


def _check_templates(document: Document) -> Iterator[LocatedError]:
    """Parse every template of the playbook and every `template:` source file, so a
    syntax error is reported by `validate` and before a run starts anything. Jinja2 is
    imported only when the playbook has a template or an expression."""
    strings = list(_template_strings(document.data, (), free=False))
    sources = list(_template_sources(document))
    if not strings and not sources:
        return
    from runner.planning.templating import describe_error, syntax_error

    for path, text, expression in strings:
        problem = syntax_error(text, expression)
        if problem is not None:
            yield document.error(describe_error(problem, text), path)
    for path, file, source in sources:
        if isinstance(source, _Unreadable):
            yield document.error(source.reason, path)
            continue
        problem = syntax_error(source)
        if problem is not None:
            message = f"template syntax error: {problem.message}"
            yield TemplateError(message, file, problem.lineno, None, format_path(path))


def _template_strings(value: Any, path: KeyPath, free: bool) -> Iterator[tuple[KeyPath, str, bool]]:
    """(key path, text, is an expression) of each string the runner renders."""
    if isinstance(value, str):
        if not free and _is_expression(path):
            yield path, value, True
        elif any(marker in value for marker in _MARKERS):
            yield path, value, False
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _template_strings(item, path + (index,), free)
    elif isinstance(value, dict):
        for key, item in value.items():
            if free or key not in _NOT_RENDERED:
                yield from _template_strings(item, path + (key,), free or key in _FREE)


def _is_expression(path: KeyPath) -> bool:
    """`when:`, `until:`, `changed_when:`, `failed_when:`, `assert`'s `that:`, `debug`'s
    `var:`, or an item of a list of them."""
    if path and path[-1] in _EXPRESSIONS:
        return True
    return len(path) >= 2 and path[-2] in _LISTED and isinstance(path[-1], int)


@dataclass(frozen=True)
class _Unreadable:
    """A `template:` source file that cannot be read: why, in a few words."""

    reason: str


def _template_sources(document: Document) -> Iterator[tuple[KeyPath, str, str | _Unreadable]]:
    """(key path of `src`, file, text) of each `template:` step's source file, or why it
    cannot be read (missing, not a regular file, too large, not UTF-8), as the run would
    find it: relative to the playbook's directory. A source whose name is a template is
    left to the plan."""
    base = os.path.dirname(document.file)
    for index, job in enumerate(document.data["jobs"]):
        for where, step in step_specs(job, ("jobs", index)):
            spec = step.get("template")
            src = spec.get("src") if isinstance(spec, dict) else None
            if not isinstance(src, str) or any(marker in src for marker in _MARKERS):
                continue
            file = src if os.path.isabs(src) else os.path.join(base, src)
            path = (*where, "template", "src")
            try:
                yield path, file, read_text(file, MAX_TEMPLATE)
            except FileRefused as why:
                yield path, file, _Unreadable(f"template {file} {why}")


def _check_no_cycle(document: Document, jobs: tuple[JobDef, ...]) -> list[LocatedError]:
    """Refuse jobs that wait for each other, naming the cycle: a -> b -> a."""
    order = {job.name: index for index, job in enumerate(jobs)}
    needs = {job.name: job.needs for job in jobs}
    done: set[str] = set()
    for job in jobs:
        found = _find_cycle(job.name, needs, done, [])
        if found:
            start = min(range(len(found) - 1), key=lambda i: order[found[i]])
            cycle = found[start:-1] + found[:start] + [found[start]]
            message = "needs cycle: " + " -> ".join(cycle)
            return [document.error(message, ("jobs", order[cycle[0]], "needs"))]
    return []


def _find_cycle(
    name: str, needs: dict[str, tuple[str, ...]], done: set[str], stack: list[str]
) -> list[str] | None:
    """Depth-first search from `name`; a cycle comes back closed (first name repeated)."""
    if name in stack:
        return stack[stack.index(name) :] + [name]
    if name in done:
        return None
    stack.append(name)
    for need in needs.get(name, ()):
        cycle = _find_cycle(need, needs, done, stack)
        if cycle:
            return cycle
    stack.pop()
    done.add(name)
    return None
