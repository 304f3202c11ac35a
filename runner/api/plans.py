"""Planning and running playbooks: what `runner validate | plan | inventory | run` do.

A Python user can call these directly; the command line only parses arguments, calls
them and formats the answers.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import PlaybookError, UsageError

if TYPE_CHECKING:
    from runner.execution.events import RunEvents
    from runner.execution.executor import Executor, RunReport
    from runner.jobs.store import JobStore
    from runner.planning.inventory import Inventory
    from runner.planning.model import Playbook
    from runner.planning.planner import Plan
    from runner.planning.request import PlanRequest


def load_inventory(path: str | None) -> Inventory:
    """The inventory at `path`, or the implicit `localhost` one when none is given."""
    from runner.planning import inventory

    if path is None:
        return inventory.implicit_localhost()
    if not path.strip():  # else the current directory would be read as an inventory
        raise UsageError("-i/--inventory: empty value: give a file, a directory or 'h1,h2,'")
    return inventory.load_inventory(path)


def parse_extra_vars(values: Sequence[str]) -> dict[str, Any]:
    """`-e` values as ansible-playbook takes them: KEY=VALUE pairs, JSON/YAML, or @file."""
    result: dict[str, Any] = {}
    for value in values:
        value = value.strip()
        if value.startswith("@"):
            result.update(_extra_vars_file(value[1:]))
        elif value.startswith("{"):
            result.update(_extra_vars_mapping(value))
        else:
            result.update(_extra_vars_pairs(value))
    return result


def _extra_vars_mapping(value: str) -> dict[str, Any]:
    """One `-e '{...}'`: a JSON or YAML mapping."""
    import yaml

    from runner.planning.yamlsource import check_depth

    try:
        check_depth(value, "-e", PlaybookError)  # nesting and alias expansion
        data = yaml.safe_load(value)
    except PlaybookError as exc:
        raise UsageError(f"-e {value[:60]!r}: {exc.message}") from None
    except RecursionError:
        raise UsageError(f"-e {value!r}: nested too deep") from None
    except yaml.YAMLError as exc:  # its text spans lines: keep the first
        why = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"-e {value!r}: not valid JSON or YAML: {why}") from None
    if not isinstance(data, dict):
        raise UsageError(f"-e {value!r}: expected a mapping")
    return data


def _extra_vars_pairs(value: str) -> dict[str, Any]:
    """One `-e 'a=1 b=2'`: shell-quoted KEY=VALUE pairs, each value a string."""
    try:
        pairs = shlex.split(value)
    except ValueError as exc:  # an unbalanced quote
        raise UsageError(f"-e {value!r}: {exc}") from None
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, val = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"-e {pair!r}: expected KEY=VALUE, a JSON mapping or @FILE")
        result[key] = val
    return result


def _extra_vars_file(path: str) -> dict[str, Any]:
    """The mapping in an `-e @FILE`: a file that cannot be opened is a bad option (exit 5),
    one whose content is bad a located error in it (exit 4)."""
    from runner.planning.files import MAX_SOURCE, special
    from runner.planning.yamlsource import load_yaml

    refused = special(path, MAX_SOURCE)  # a FIFO would wait for ever, /dev/zero fill memory
    if refused is not None:
        raise UsageError(f"-e @{path}: cannot read the file: it {refused}")
    try:
        with open(path, "rb"):
            pass
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        why = exc.strerror if isinstance(exc, OSError) else "the name holds a NUL byte"
        raise UsageError(f"-e @{path}: cannot read the file: {why}") from None
    document = load_yaml(path, error_class=PlaybookError)
    if not isinstance(document.data, dict):
        raise PlaybookError("an extra-vars file must hold a mapping", path, 1, 1)
    return document.data


def load_playbook_cached(path: str) -> Playbook:
    """`load_playbook`, skipping the JSON Schema pass for bytes that passed it before.

    `runner plan` and `runner run` of a playbook that has not changed since it last
    validated skip importing jsonschema (about a third of a run's start-up). The key is
    the file's bytes, the schema's bytes and this runner's version, kept as an empty
    file under $RUNNER_HOME/cache/; `runner validate` always runs the full check.
    """
    import hashlib

    from runner import __version__
    from runner.planning.playbook import load_playbook
    from runner.planning.schema import SCHEMA_PATH
    from runner.settings import cache_dir

    try:
        digest = hashlib.sha256(Path(path).read_bytes())
        digest.update(SCHEMA_PATH.read_bytes())
    except OSError:
        return load_playbook(path)  # load_playbook reports it, with the file's name
    digest.update(__version__.encode())
    marker = cache_dir() / f"valid-{digest.hexdigest()}"
    if marker.exists():
        return load_playbook(path, schema_checked=True)
    playbook = load_playbook(path)
    try:
        marker.parent.mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
    except OSError:
        pass  # a cache that cannot be written only costs time
    return playbook


def validate(paths: Sequence[str], inventory: str | None = None) -> tuple[list[str], list[Any]]:
    """Check every playbook (schema + semantics; with an inventory, also host patterns and
    templates). Returns (warnings, errors): one bad file does not hide the next one's."""
    from runner.errors import LocatedError
    from runner.planning.playbook import load_playbook

    warnings: list[str] = []
    errors: list[LocatedError] = []
    inv = load_inventory(inventory) if inventory is not None else None
    for path in paths:
        try:
            playbook = load_playbook(path)
            if inv is not None:
                from runner.planning.planner import build_plan, render_plan

                the_plan = build_plan(playbook, inv)
                render_plan(the_plan)
                warnings.extend(the_plan.warnings)
        except LocatedError as error:
            errors.extend(error.every or [error])
    return warnings, errors


def plan(
    playbook_path: str,
    inventory: str | None = None,
    extra_vars: Sequence[str] = (),
    limit: str | None = None,
    tags: Sequence[str] = (),
    skip_tags: Sequence[str] = (),
    start_at_job: str | None = None,
) -> Plan:
    """Load, validate and resolve a playbook against an inventory; nothing runs."""
    request = _request(playbook_path, inventory, extra_vars, limit, tags, skip_tags, start_at_job)
    return _plan(request)


def _request(
    playbook_path: str,
    inventory: str | None,
    extra_vars: Sequence[str],
    limit: str | None,
    tags: Sequence[str],
    skip_tags: Sequence[str],
    start_at_job: str | None,
    digest: str = "",
) -> PlanRequest:
    """The command line's planning options as a `PlanRequest` (extra vars parsed)."""
    from runner.planning.request import PlanRequest

    parsed_vars = parse_extra_vars(extra_vars)
    return PlanRequest(
        playbook_path,
        inventory,
        parsed_vars,
        limit,
        tuple(tags),
        tuple(skip_tags),
        start_at_job,
        digest,
    )


def _plan(request: PlanRequest) -> Plan:
    from runner.planning.request import plan_for

    playbook = load_playbook_cached(request.playbook)
    return plan_for(request, playbook, load_inventory(request.inventory))


def select(inventory: str | None, pattern: str = "all", limit: str | None = None) -> dict:
    """The hosts a pattern selects and the groups they are in, in inventory order, with
    the warnings about the variables of those hosts that runner does not use."""
    from runner.planning.patterns import check_limit, select_hosts

    inv = load_inventory(inventory)
    check_limit(inv, limit)  # as `ansible --list-hosts`: a limit matching nothing is an error
    hosts = select_hosts(inv, pattern, limit)
    chosen = set(hosts)
    groups = {
        name: [h for h in members if h in chosen] for name, members in inv.groups_map().items()
    }
    return {
        "hosts": hosts,
        "groups": {k: v for k, v in groups.items() if v},
        "warnings": inv.warnings(hosts),
    }


def run(
    playbook_path: str,
    inventory: str | None = None,
    extra_vars: Sequence[str] = (),
    limit: str | None = None,
    tags: Sequence[str] = (),
    skip_tags: Sequence[str] = (),
    start_at_job: str | None = None,
    forks: int = 5,
    check: bool = False,
    diff: bool = False,
    events: RunEvents | None = None,
    on_start: Callable[[Executor], None] | None = None,
    dispatch: str = "auto",
    force_handlers: bool = False,
) -> tuple[Plan, RunReport]:
    """Plan and run a playbook; `on_start(executor)` lets a caller hook signals to it.

    With a broker (`RUNNER_BROKER`) and `dispatch` not "local", children run on workers
    (`runner worker`), which needs a PostgreSQL store every machine can reach."""
    from runner.api.jobs import open_store
    from runner.execution.children import kept_on_target
    from runner.execution.events import NullEvents
    from runner.execution.executor import Executor, RunOptions
    from runner.execution.sessions import SessionPool
    from runner.planning.planner import render_plan
    from runner.planning.request import playbook_digest
    from runner.settings import known_hosts_path, store_location

    digest = playbook_digest(playbook_path)  # before planning: bytes read later may differ
    # the request is also how a background job's worker plans again
    request = _request(
        playbook_path, inventory, extra_vars, limit, tags, skip_tags, start_at_job, digest
    )
    request = dataclasses.replace(request, force_handlers=force_handlers)
    the_plan = _plan(request)
    render_plan(the_plan)  # an undefined variable is an error before anything starts
    options = RunOptions(
        forks=forks,
        check=check,
        diff=diff,
        known_hosts=known_hosts_path(),
        request=request,
        store=store_location(),
    )
    broker = _broker(dispatch)  # a malformed URL is refused before the store is opened
    sessions = SessionPool(the_plan, options)
    # handshakes overlap the store's set-up; children sent to workers connect there
    here = [jp for jp in the_plan.jobs if broker is None or kept_on_target(jp)]
    sessions.prefetch(here, forks)
    store = open_store()
    dispatcher = _dispatcher(store, broker)
    executor = Executor(the_plan, store, options, events or NullEvents(), sessions)
    executor.context.dispatcher = dispatcher
    if on_start is not None:
        on_start(executor)
    try:
        return the_plan, executor.run()
    finally:
        if dispatcher is not None:
            dispatcher.close()


def _broker(dispatch: str) -> str | None:
    """The broker children go through, if any (checked: a URL runner can use)."""
    from runner.settings import broker_url

    broker = broker_url()
    if broker is None or dispatch == "local":
        return None
    from runner.distributed.app import check_broker_url

    check_broker_url(broker)
    return broker


def _dispatcher(store: JobStore, broker: str | None) -> Any:
    """The run's link to its workers when children may leave this process; refuses a
    broker beside a SQLite store (no worker could reach it)."""
    if broker is None:
        return None
    if not store.url.split("://", 1)[0].startswith("postgres"):
        raise UsageError(
            "a broker needs a PostgreSQL job store that workers can reach: set RUNNER_STORE"
            " (or --store) to postgresql://..., or run with --dispatch local"
        )
    from runner.distributed.dispatch import Dispatcher

    return Dispatcher(store, broker)
