"""Ending what a job whose runner is gone left running, before anyone calls it Stopped.

A child records the process group its current step runs in: `local_pid` (with its
leader's start time) on the controller, `remote_pgid` on its target, reached again
over a fresh connection from the spec the child keeps. `JobStore.reconcile` and
`runner job stop` end them here; a host that cannot be reached is named in the reason,
and the group stays recorded so that a later `runner job stop` tries again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from runner.errors import ConnectError, RunnerError
from runner.jobs.processes import Liveness, end_group, judge

if TYPE_CHECKING:
    from runner.jobs.records import JobRecord
    from runner.jobs.store import JobStore

MAX_HOSTS_AT_ONCE = 8


def owner_gone(record: JobRecord) -> bool:
    """Whether this process can see that the runner answering for `record` is gone."""
    return judge(record.owner) == Liveness.GONE


def end_processes(store: JobStore, records: list[JobRecord]) -> dict[int, str]:
    """End each child's recorded process groups, local and remote, and forget them.

    Returns, by child id, why a group could not be ended (its host unreachable); that
    group stays recorded. Hosts are reached side by side, so a fleet of orphans costs
    about one connection timeout, not one per host.
    """
    for record in records:
        if record.local_pid:
            end_group(record.local_pid, record.local_start)
            store.set_runtime(record.id, local_pid=None)
    remote = [record for record in records if record.remote_pgid]
    if not remote:
        return {}
    with ThreadPoolExecutor(min(MAX_HOSTS_AT_ONCE, len(remote))) as pool:
        outcomes = list(pool.map(_end_remote, remote))
    problems = {}
    for record, problem in zip(remote, outcomes, strict=True):
        if problem is None:
            store.set_runtime(record.id, remote_pgid=None)
        else:
            problems[record.id] = problem
    return problems


def _end_remote(record: JobRecord) -> str | None:
    """End a child's process group on its target; None when done, else why not."""
    from runner.execution.ontarget import jobdir as remote
    from runner.execution.ontarget.reconnect import connect

    pgid, host = record.remote_pgid, record.location
    assert pgid is not None  # only a child with a recorded group comes here
    if not (record.spec or {}).get("connection"):
        return f"no record of how to reach {host} to end its process group {pgid}"
    try:
        conn = connect(record)
    except (RunnerError, OSError) as error:
        why = error.reason if isinstance(error, ConnectError) else str(error)
        return (
            f"cannot reach {host} to end its process group {pgid} ({why}); "
            f"'runner job stop {record.id}' tries again"
        )
    try:
        if record.remote_dir:
            remote.mark_stopped(conn, record.remote_dir, pgid)
        else:
            conn.kill_process_group(pgid)
    except (RunnerError, OSError) as error:
        return (
            f"lost {host} while ending its process group {pgid} ({error}); "
            f"'runner job stop {record.id}' tries again"
        )
    finally:
        conn.close()
    return None


def stop_orphan(store: JobStore, record: JobRecord) -> None:
    """`runner job stop` of a child whose runner is gone: end its processes, then record
    it Stopped. Raises RunnerError, leaving the job as it was, when its host cannot be
    reached."""
    from runner.jobs.states import JobState

    problem = end_processes(store, [record]).get(record.id)
    if problem is not None:
        raise RunnerError(
            f"job {record.id} on {record.location}: {problem}; the job is left as it was"
        )
    store.request_stop(record.id)
    store.finish(record.id, JobState.Stopped, "stopped by 'runner job stop'")
