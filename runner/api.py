"""The library behind the command line: what `runner validate | plan | inventory` do.

A Python user can call these directly; `cli.py` only parses arguments, calls them and
formats the answers.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runner.errors import PlaybookError, UsageError


def load_inventory(path: str | None):  # -> Inventory
    """The inventory at `path`, or the implicit `localhost` one when none is given."""
    from runner import inventory

    if path is None:
        return inventory.implicit_localhost()
    return inventory.load_inventory(path)


def parse_extra_vars(values: Sequence[str]) -> dict[str, Any]:
    """`-e` values as ansible-playbook takes them: KEY=VALUE pairs, JSON/YAML, or @file."""
    import yaml

    from runner.yamlsource import check_depth

    result: dict[str, Any] = {}
    for value in values:
        value = value.strip()
        if value.startswith("@"):
            result.update(_extra_vars_file(value[1:]))
        elif value.startswith("{"):
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
            result.update(data)
        else:
            try:
                pairs = shlex.split(value)
            except ValueError as exc:  # an unbalanced quote
                raise UsageError(f"-e {value!r}: {exc}") from None
            for pair in pairs:
                key, sep, val = pair.partition("=")
                if not sep or not key.isidentifier():
                    raise UsageError(f"-e {pair!r}: expected KEY=VALUE, a JSON mapping or @FILE")
                result[key] = val
    return result


def _extra_vars_file(path: str) -> dict[str, Any]:
    from runner.yamlsource import load_yaml

    document = load_yaml(path, error_class=PlaybookError)
    if not isinstance(document.data, dict):
        raise PlaybookError("an extra-vars file must hold a mapping", path, 1, 1)
    return document.data


def load_playbook_cached(path: str):  # -> Playbook
    """`load_playbook`, skipping the JSON Schema pass for bytes that passed it before.

    `runner plan` and `runner run` of a playbook that has not changed since it last
    validated skip importing jsonschema (about a third of a run's start-up). The key is
    the file's bytes, the schema's bytes and this runner's version, kept as an empty
    file under $RUNNER_HOME/cache/; `runner validate` always runs the full check.
    """
    import hashlib

    from runner import __version__
    from runner.playbook import load_playbook
    from runner.schema import SCHEMA_PATH
    from runner.settings import runner_home

    try:
        digest = hashlib.sha256(Path(path).read_bytes())
        digest.update(SCHEMA_PATH.read_bytes())
    except OSError:
        return load_playbook(path)  # load_playbook reports it, with the file's name
    digest.update(__version__.encode())
    marker = runner_home() / "cache" / f"valid-{digest.hexdigest()}"
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
    from runner.playbook import load_playbook

    warnings: list[str] = []
    errors: list[LocatedError] = []
    inv = load_inventory(inventory) if inventory else None
    for path in paths:
        try:
            playbook = load_playbook(path)
            if inv is not None:
                from runner.planner import build_plan, render_plan

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
):  # -> Plan
    """Load, validate and resolve a playbook against an inventory; nothing runs."""
    from runner.planner import build_plan

    parsed_vars = parse_extra_vars(extra_vars)
    playbook = load_playbook_cached(playbook_path)
    inv = load_inventory(inventory)
    return build_plan(
        playbook,
        inv,
        extra_vars=parsed_vars,
        limit=limit,
        tags=list(tags),
        skip_tags=list(skip_tags),
        start_at_job=start_at_job,
    )


def select(inventory: str | None, pattern: str = "all", limit: str | None = None) -> dict:
    """The hosts a pattern selects and the groups they are in, in inventory order."""
    from runner.patterns import select_hosts

    inv = load_inventory(inventory)
    hosts = select_hosts(inv, pattern, limit)
    chosen = set(hosts)
    groups = {
        name: [h for h in members if h in chosen]
        for name, members in inv.groups_map().items()
    }
    return {"hosts": hosts, "groups": {k: v for k, v in groups.items() if v}}



# -- running and managing jobs ---------------------------------------------------------


def open_store():  # -> JobStore
    """The job store at $RUNNER_HOME/jobs.db, with orphans of dead runners reconciled."""
    from runner.settings import store_path
    from runner.store import JobStore

    store = JobStore(store_path())
    store.reconcile()
    return store


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
    events: Any = None,
    on_start: Any = None,
):  # -> tuple[Plan, RunReport]
    """Plan and run a playbook; `on_start(executor)` lets a caller hook signals to it."""
    from runner.children import PlanRequest, playbook_digest
    from runner.executor import Executor, RunOptions
    from runner.planner import render_plan
    from runner.progress import Reporter
    from runner.sessions import SessionPool
    from runner.settings import runner_home, store_path

    digest = playbook_digest(playbook_path)  # before planning: bytes read later may differ
    the_plan = plan(playbook_path, inventory, extra_vars, limit, tags, skip_tags, start_at_job)
    render_plan(the_plan)  # an undefined variable is an error before anything starts
    request = PlanRequest(  # how a background job's worker plans again
        playbook_path, inventory, dict(the_plan.extra_vars), limit, tuple(tags),
        tuple(skip_tags), start_at_job, digest,
    )
    options = RunOptions(
        forks=forks,
        check=check,
        diff=diff,
        known_hosts=runner_home() / "known_hosts",
        request=request,
        store_path=store_path(),
    )
    sessions = SessionPool(the_plan, options)
    sessions.prefetch(list(the_plan.jobs), forks)  # handshakes overlap the store's set-up
    store = open_store()
    executor = Executor(the_plan, store, options, events or Reporter(quiet=True), sessions)
    if on_start is not None:
        on_start(executor)
    return the_plan, executor.run()


def resolve_jobs(store: Any, tokens: Sequence[str | int]) -> list[int]:
    """The jobs named on the command line, each once, in the order given: an id, or a
    name (wildcards allowed, any case) standing for every parent job it matches, as
    PowerShell's -Name selects. `JobNotFoundError` for one that matches nothing."""
    from runner.errors import JobNotFoundError
    from runner.records import wildcard_match

    ids: list[int] = []
    parents: list[Any] | None = None
    for token in tokens:
        text = str(token).strip()
        if text.isascii() and text.isdigit():  # not '²', which int() refuses
            store.get(int(text))  # JobNotFoundError: no job with id N
            found = [int(text)]
        else:
            parents = store.list_jobs() if parents is None else parents
            found = [r.id for r in parents if wildcard_match(r.name, text)]
            if not found:
                raise JobNotFoundError(f"no job with id or name {text!r}")
        ids.extend(job_id for job_id in found if job_id not in ids)
    return ids


def wait_over(state: Any, force: bool = False) -> bool:
    """Whether waiting for a job in `state` ends, by Wait-Job's rule: it is finished, or
    Disconnected (a persistent state) unless `force`."""
    from runner.jobs import JobState, is_terminal

    return is_terminal(state) or (JobState(state) == JobState.Disconnected and not force)


def refresh(store: Any, job_ids: Sequence[int] | None = None) -> list[str]:
    """Reconnect to jobs kept on their targets (detached, remote results) and bring
    their state and output up to date; return the problems met (unreachable hosts)."""
    from runner.jobs import is_terminal
    from runner.reconnect import is_remote_kept, leaves
    from runner.reconnect import refresh as refresh_job

    records = (
        [store.get(i) for i in job_ids] if job_ids is not None else store.list_jobs()
    )
    problems: list[str] = []
    for record in records:
        children = leaves(store, record.id)
        if any(is_remote_kept(c) and (not is_terminal(c.state) or c.has_more_data)
               for c in children):
            problems.extend(refresh_job(store, record.id))
    return problems


def stop(store: Any, job_ids: Sequence[int], timeout: float = 15.0) -> list[int]:
    """Stop jobs and end their processes; return the ids still not finished after
    `timeout` (their owner has not ended them). Children kept on their targets, and
    those whose runner is gone, are ended here; the others by the runner that owns
    them."""
    from runner.errors import ConnectError, RunnerError
    from runner.executor import wait_for_terminal
    from runner.jobs import is_terminal
    from runner.orphans import owner_gone, stop_orphan
    from runner.reconnect import is_remote_kept, leaves, stop_child

    for job_id in job_ids:
        store.get(job_id)  # JobNotFoundError before anything is asked
    for job_id in job_ids:
        for child in leaves(store, job_id):
            if is_terminal(child.state):
                continue
            if not is_remote_kept(child):
                if owner_gone(child):  # nobody else will end its processes
                    stop_orphan(store, child)
                continue
            store.claim(child.id)
            try:
                stop_child(store, child)
            except (ConnectError, OSError) as error:
                raise RunnerError(
                    f"job {child.id} on {child.location}: cannot reach the host to end its "
                    f"process ({error}); the job is left as it was"
                ) from None
        store.request_stop(job_id)
    pending = []
    for job_id in job_ids:
        store.reconcile()
        if not wait_for_terminal(store, job_id, timeout):
            pending.append(job_id)
    return pending


def remove(
    store: Any, job_ids: Sequence[int], force: bool = False, keep_remote: bool = False
) -> None:
    """Remove finished jobs (with `force`, stop unfinished ones first) and their job
    directories on the targets, unless `keep_remote`."""
    from runner.errors import ConnectError, RunnerError
    from runner.jobs import is_terminal
    from runner.reconnect import is_remote_kept, leaves, remove_child

    for job_id in job_ids:
        record = store.get(job_id)
        if force and not is_terminal(record.state):
            stop(store, [job_id])
        elif not is_terminal(record.state):
            store.remove(job_id)  # refuses, with the reason
        if not keep_remote:
            for child in leaves(store, job_id):
                if not is_remote_kept(child):
                    continue
                try:
                    remove_child(child)
                except (ConnectError, OSError) as error:
                    raise RunnerError(
                        f"job {child.id}: cannot remove {child.remote_dir} on "
                        f"{child.location} ({error}); nothing was removed "
                        "(--keep-remote removes the job and leaves the directory)"
                    ) from None
        store.remove(job_id, force=force)


def wait(
    store: Any,
    job_ids: Sequence[int],
    any_: bool = False,
    timeout: float | None = None,
    force: bool = False,
) -> list[Any]:
    """Block until the jobs are finished (or Disconnected, unless `force`), reconnecting
    to detached ones; return the records of those still running when `timeout` passed
    (empty when all were done)."""
    import time

    def done(record: Any) -> bool:
        return wait_over(record.state, force)

    deadline = None if timeout is None else time.monotonic() + timeout
    next_refresh = 0.0
    while True:
        store.reconcile()
        if time.monotonic() >= next_refresh:
            refresh(store, job_ids)
            next_refresh = time.monotonic() + 0.5
        records = [store.get(job_id) for job_id in job_ids]
        finished = [r for r in records if done(r)]
        if (any_ and finished) or len(finished) == len(records):
            return []
        if deadline is not None and time.monotonic() >= deadline:
            return [r for r in records if not done(r)]
        time.sleep(0.1)


def receive(store: Any, job_id: int, keep: bool = False, host: str | None = None) -> Any:
    """Output not received yet, in order, marked received unless `keep`; reconnects to
    children kept on their targets first. An iterator of OutputRecords."""
    in_store = yield from _receive_kept(store, job_id, keep, host)
    if in_store:
        yield from store.iter_receive(job_id, keep=keep, host=host)


def deliver(
    store: Any,
    job_id: int,
    write: Callable[[Any], None],
    flush: Callable[[], None],
    keep: bool = False,
    host: str | None = None,
) -> None:
    """`receive`, handing each record to `write`; a record is marked received only once
    `flush` returned after it. An exception from either (a closed pipe, Ctrl-C) leaves
    every record not flushed unreceived, for the next receiver."""
    in_store = _write_each(_receive_kept(store, job_id, keep, host), write, flush)
    after = 0
    while in_store:
        with store.delivering(job_id, keep=keep, host=host, after=after) as delivery:
            if not delivery.records:
                return
            pending = 0
            for number, record in enumerate(delivery.records, 1):
                write(record)
                pending += len(record.data)
                if pending >= DELIVER_FLUSH_CHARS:
                    flush()
                    delivery.done, pending = number, 0
            flush()
            delivery.done = len(delivery.records)
            after = delivery.records[-1].id


DELIVER_FLUSH_CHARS = 64 * 1024  # written out and marked received this much at a time


def _write_each(records: Any, write: Callable[[Any], None], flush: Callable[[], None]) -> Any:
    """Write and flush each record of a generator; its return value."""
    while True:
        try:
            record = next(records)
        except StopIteration as end:
            return end.value
        write(record)
        flush()


def _receive_kept(store: Any, job_id: int, keep: bool, host: str | None) -> Any:
    """Yield the output kept on targets; return whether some output is in the store."""
    from runner.errors import ConnectError
    from runner.reconnect import is_remote_kept, leaves, receive_remote

    children = [c for c in leaves(store, job_id) if host is None or c.location == host]
    if any(is_remote_kept(c) for c in children):
        refresh(store, [job_id])
    for child in children:
        if is_remote_kept(child) and child.results_to == "remote":
            try:
                yield from receive_remote(store, child, keep)
            except ConnectError:
                continue  # left Disconnected with the reason by refresh
    return not all(c.results_to == "remote" for c in children)
