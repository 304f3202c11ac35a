"""`runner run` and `runner job list | show | receive | wait | stop | remove`."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from runner.cli.distributed import add_store_options
from runner.errors import (
    EXIT_HOSTS_FAILED,
    EXIT_HOSTS_UNREACHABLE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_WAIT_TIMEOUT,
    RunnerError,
    UsageError,
)

LIST_COLUMNS = ["Id", "Name", "PSJobTypeName", "State", "HasMoreData", "Location", "Command"]


def add_commands(sub: Any, parser_class: type, add_plan_options: Any) -> None:
    p = sub.add_parser("run", help="run a playbook: every job becomes a persistent job")
    p.add_argument("playbook", metavar="PLAYBOOK")
    add_plan_options(p)
    p.add_argument(
        "-f",
        "--forks",
        type=_positive_int,
        default=5,
        help="hosts at once across the run (default 5)",
    )
    p.add_argument(
        "--check", action="store_true", help="plan and connect; run nothing, report what would run"
    )
    p.add_argument(
        "--diff", action="store_true", help="show what template and put steps change on the hosts"
    )
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json: one document on stdout, progress on stderr",
    )
    p.add_argument(
        "--force-handlers",
        action="store_true",
        help="run the handlers a host's steps notified even after a later step failed there",
    )
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")
    p.add_argument(
        "--retry-file",
        metavar="FILE",
        help="write the failed and unreachable hosts to FILE (for --limit @FILE)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: commands and output as they stream; -vv: rendered, and connections",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the recap")
    p.add_argument(
        "--dispatch",
        choices=["workers", "local"],
        default="workers",
        help="with a broker: children go to workers (default), or run in this process",
    )
    add_store_options(p, broker=True)
    p.set_defaults(func=cmd_run)

    job = sub.add_parser("job", help="list, show, receive, wait for, stop and remove jobs")
    jsub = job.add_subparsers(dest="job_command", metavar="ACTION", parser_class=parser_class)
    jsub.required = True

    p = jsub.add_parser("list", help="jobs in the store (Get-Job)")
    p.add_argument("--state", help="only jobs in this state (any case)")
    p.add_argument("--name", help="only jobs whose name matches (wildcards)")
    p.add_argument(
        "--command", metavar="PATTERN", help="only jobs whose command matches (wildcards)"
    )
    p.add_argument("--children", action="store_true", help="list child jobs too")
    p.add_argument(
        "--child-state",
        metavar="STATE",
        help="only jobs with a child in this state (with --children: those children)",
    )
    p.add_argument(
        "--has-more-data",
        nargs="?",
        const=True,
        type=_boolean,
        metavar="true|false",
        help="only jobs that can still give output, or (false) those that cannot",
    )
    p.add_argument("--newest", type=_positive_int, metavar="N", help="the N that ended last")
    p.add_argument("--before", type=_time, help="finished before this time (ISO 8601)")
    p.add_argument("--after", type=_time, help="finished after this time (ISO 8601)")
    p.add_argument(
        "--refresh",
        action="store_true",
        help="reconnect to detached jobs and update their state first",
    )
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_list)

    names = "job ids, or names (wildcards): every job of that name"
    p = jsub.add_parser("show", help="jobs, their children and their steps")
    p.add_argument("ids", nargs="+", metavar="ID|NAME", help=names)
    p.set_defaults(func=cmd_show)

    p = jsub.add_parser("receive", help="output not yet received (Receive-Job)")
    p.add_argument("ids", nargs="+", metavar="ID|NAME", help=names)
    p.add_argument("--keep", action="store_true", help="do not mark the output received")
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow the jobs until they finish (or are Disconnected, unless --force)",
    )
    p.add_argument(
        "--force", action="store_true", help="with --wait: keep trying Disconnected jobs' hosts"
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="with --wait: give up after this long (exit 124)",
    )
    p.add_argument(
        "--auto-remove",
        action="store_true",
        help="with --wait: remove each job once it finished and all was received",
    )
    p.add_argument("--host", help="only the child job on this host")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_receive)

    p = jsub.add_parser("wait", help="wait until jobs finish (Wait-Job)")
    p.add_argument("ids", nargs="+", metavar="ID|NAME", help=names)
    p.add_argument("--any", action="store_true", help="return when the first one finishes")
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="give up after this long")
    p.add_argument("--force", action="store_true", help="do not return for Disconnected jobs")
    p.set_defaults(func=cmd_wait)

    p = jsub.add_parser("stop", help="stop jobs and end their processes (Stop-Job)")
    p.add_argument("ids", nargs="+", metavar="ID|NAME", help=names)
    p.set_defaults(func=cmd_stop)

    p = jsub.add_parser("remove", help="delete finished jobs and their output (Remove-Job)")
    p.add_argument("ids", nargs="+", metavar="ID|NAME", help=names)
    p.add_argument("--force", action="store_true", help="stop unfinished jobs first")
    p.add_argument(
        "--keep-remote", action="store_true", help="leave the job directories on the targets"
    )
    p.set_defaults(func=cmd_remove)
    for command, action in jsub.choices.items():
        add_store_options(action, broker=command == "stop")  # stop revokes queued tasks


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < math.inf:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more: {text}")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false: {text!r}")
    return lowered == "true"


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.astimezone()


# -- run ---------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from runner.api import plans
    from runner.cli.console import Reporter
    from runner.signals import handle_signals

    if args.quiet and args.verbose:
        raise UsageError("-q and -v cannot be used together")
    stream = sys.stderr if args.format == "json" else sys.stdout
    reporter = Reporter(stream, verbosity=args.verbose, quiet=args.quiet, check=args.check)

    def hook(executor: Any) -> None:
        for warning in executor.plan.warnings:  # before anything runs, apart from the output
            print(f"warning: {warning}", file=sys.stderr)
        handle_signals(
            (signal.SIGTERM, signal.SIGHUP),
            lambda num: executor.stop(f"runner received signal {num}"),
        )
        # The recap needs tabulate (slow to import): import it while the jobs wait on
        # their hosts, when this process would otherwise sit idle.
        threading.Thread(target=importlib.import_module, args=("tabulate",), daemon=True).start()

    began = time.monotonic()
    from runner.cli.parser import plan_sources

    plan, report = plans.run(
        **plan_sources(args),
        forks=args.forks,
        check=args.check,
        diff=args.diff,
        events=reporter,
        on_start=hook,
        dispatch=args.dispatch,
        force_handlers=args.force_handlers,
    )
    hosts = list(dict.fromkeys(h for jp in plan.jobs for h in jp.hosts))
    reporter.recap(hosts)
    code = _run_exit_code(report)
    if args.format == "json" or args.junit or args.retry_file:
        _run_outputs(args, plan, report, reporter, hosts, code, time.monotonic() - began)
    if report.store_error is not None:
        raise report.store_error
    if reporter.closed_pipe:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        ids = " ".join(str(job.job_id) for job in report.jobs)
        raise RunnerError(
            "standard output was closed while the run printed (a reader that "
            f"ended early): every job ran and kept its output; runner job receive "
            f"{ids or 'ID'} shows it"
        )
    return code


def _run_exit_code(report: Any) -> int:
    """The order of exit codes: a store that refused the output (the run stopped), interrupted,
    then unreachable (outranks failed), then failed."""
    if report.store_error is not None:
        return report.store_error.exit_code
    if report.interrupted:
        return EXIT_INTERRUPTED
    if report.any_unreachable:
        return EXIT_HOSTS_UNREACHABLE
    if report.any_failed:
        return EXIT_HOSTS_FAILED
    return EXIT_OK


def _run_outputs(
    args: argparse.Namespace,
    plan: Any,
    report: Any,
    reporter: Any,
    hosts: list[str],
    code: int,
    seconds: float,
) -> None:
    """`--format json`, `--junit FILE` and `--retry-file FILE`, from one read of the store."""
    from runner.api import jobs as api_jobs
    from runner.cli.reports import failed_hosts, run_document, summarize, write_junit

    summary = summarize(
        api_jobs.open_store(),
        plan,
        report,
        reporter.host_stats(hosts),
        playbook=args.playbook,
        exit_code=code,
        check=args.check,
        duration=seconds,
        with_stderr=bool(args.junit),
    )
    if args.format == "json":
        _print_json(run_document(summary))
    if args.junit:
        try:
            write_junit(summary, args.junit)
        except OSError as exc:
            reporter.warning(f"cannot write the JUnit report {args.junit}: {exc.strerror}")
    if args.retry_file:
        retry = failed_hosts(summary)
        try:
            with open(args.retry_file, "w", encoding="utf-8") as handle:
                handle.writelines(f"{host}\n" for host in retry)
        except OSError as exc:
            reporter.warning(f"cannot write the retry file {args.retry_file}: {exc.strerror}")
        else:
            if retry:
                reporter.note(f"{len(retry)} host(s) to retry: --limit @{args.retry_file}")


# -- job commands --------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _record_dict(record: Any) -> dict[str, Any]:
    return {
        "Id": record.id,
        "Name": record.name,
        "PSJobTypeName": record.ps_type_name,
        "State": str(record.state),
        "HasMoreData": record.has_more_data,
        "Location": record.location,
        "Command": record.command,
        "ChildJobs": list(record.child_ids),
        "ParentId": record.parent_id,
        "Reason": record.reason,
        "RemoteDir": record.remote_dir,
        "Started": _iso(record.started),
        "Ended": _iso(record.ended),
    }


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def _table(records: list[Any], reason: bool = False) -> str:
    from tabulate import tabulate

    columns = [*LIST_COLUMNS, "Reason"] if reason else LIST_COLUMNS
    rows = []
    for r in records:
        d = _record_dict(r)
        rows.append([d[c] or "" if c == "Reason" else d[c] for c in columns])
    return tabulate(rows, headers=columns)


def _job_state(option: str, text: str | None) -> Any:
    """A state named on the command line, in any case (`running`); None stays None."""
    from runner.jobs.states import JobState

    if text is None:
        return None
    for state in JobState:
        if state.value.lower() == text.strip().lower():
            return state
    names = ", ".join(s.value for s in JobState)
    raise UsageError(f"{option}: unknown state {text!r} (one of {names})")


def cmd_list(args: argparse.Namespace) -> int:
    from runner.api import jobs as api_jobs

    args.state = _job_state("--state", args.state)
    args.child_state = _job_state("--child-state", args.child_state)
    store = api_jobs.open_store()
    if args.refresh:
        for problem in api_jobs.refresh(store):
            print(f"warning: {problem}", file=sys.stderr)
    records = store.list_jobs(
        state=args.state,
        name=args.name,
        include_children=args.children,
        has_more_data=args.has_more_data,
        before=args.before,
        after=args.after,
        newest=args.newest,
        child_state=args.child_state,
        command=args.command,
    )
    if args.format == "json":
        _print_json([_record_dict(r) for r in records])
    elif records:
        print(_table(records))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from runner.api import jobs as api_jobs

    store = api_jobs.open_store()
    for index, job_id in enumerate(api_jobs.resolve_jobs(store, args.ids)):
        if index:
            print()
        _show(store, job_id)
    return EXIT_OK


def _show(store: Any, job_id: int) -> None:
    from tabulate import tabulate

    record = store.get(job_id)
    d = _record_dict(record)
    for key in (
        "Id",
        "Name",
        "PSJobTypeName",
        "State",
        "Reason",
        "HasMoreData",
        "Location",
        "Command",
        "Started",
        "Ended",
    ):
        print(f"{key:<14}: {d[key] if d[key] is not None else ''}")
    if record.results_to != "controller":
        print(f"{'Results':<14}: {record.results_to} {record.results_path or ''}")
    children = store.children(record.id) if record.parent_id is None else [record]
    if record.parent_id is None and children:
        print("\nChildJobs:")
        print(_table(children, reason=True))
    for child in children:
        steps = store.steps(child.id)
        if child.remote_dir:
            print(f"\nJob directory of job {child.id}: {child.location}:{child.remote_dir}")
        if not steps:
            continue
        print(f"\nSteps on {child.location} (job {child.id}):")
        rows = [
            [
                s.index,
                s.name,
                s.status,
                "" if s.rc is None else s.rc,
                f"{(s.ended or 0) - (s.started or 0):.3f}s",
                s.error or "",
            ]
            for s in steps
        ]
        print(tabulate(rows, headers=["#", "step", "status", "rc", "time", "error"]))


def cmd_receive(args: argparse.Namespace) -> int:
    from runner.api import jobs as api_jobs
    from runner.jobs.states import is_terminal

    _check_receive_options(args)
    store = api_jobs.open_store()
    job_ids = api_jobs.resolve_jobs(store, args.ids)
    several = _receive_sources(store, job_ids, args.host) > 1
    pending = list(job_ids)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    items = 0

    def write(rec: Any) -> None:
        nonlocal items
        if args.format == "json":
            item = {
                "job": rec.job_id,
                "host": rec.host,
                "step": rec.step,
                "stream": rec.stream,
                "data": rec.data,
                "time": rec.time,
            }
            sys.stdout.write((",\n  " if items else "\n  ") + json.dumps(item))
            items += 1
        else:
            _write_text(rec, several)

    if args.format == "json":
        sys.stdout.write("[")
    while True:
        # A finished job has all its output stored: one more read takes the last of it.
        finished = [job_id for job_id in pending if is_terminal(store.get(job_id).state)]
        for job_id in pending:
            api_jobs.deliver(store, job_id, write, _flush_both, keep=args.keep, host=args.host)
        pending = [
            job_id
            for job_id in pending
            if job_id not in finished and not _left_disconnected(store, job_id, args)
        ]
        if not args.wait or not pending or _past(deadline):
            break
        time.sleep(0.2)
        store.reconcile()
    if args.format == "json":
        sys.stdout.write("\n]\n" if items else "]\n")
    _flush_both()
    return _receive_end(store, job_ids, pending, args)


def _flush_both() -> None:
    """Flush stdout and stderr: what was flushed may be marked received."""
    sys.stdout.flush()
    sys.stderr.flush()


def _check_receive_options(args: argparse.Namespace) -> None:
    """--force, --timeout and --auto-remove shape how --wait follows: refuse them alone."""
    for option, given in (
        ("--force", args.force),
        ("--timeout", args.timeout is not None),
        ("--auto-remove", args.auto_remove),
    ):
        if given and not args.wait:
            raise UsageError(f"{option} only works with --wait")
    if args.auto_remove and args.keep:
        raise UsageError("--auto-remove cannot be used with --keep: the output would be lost")


def _receive_sources(store: Any, job_ids: list[int], host: str | None) -> int:
    """How many jobs' output the receive interleaves; refuses a --host none of them has."""
    from runner.execution.ontarget.reconnect import leaves

    locations = [leaf.location for job_id in job_ids for leaf in leaves(store, job_id)]
    if host is None:
        return len(locations)
    if host not in locations:
        which = ", ".join(map(str, job_ids))
        raise RunnerError(f"job {which} has no child job on host '{host}'")
    return 1


def _left_disconnected(store: Any, job_id: int, args: argparse.Namespace) -> bool:
    """`receive --wait` stops following a job its last reconnect left Disconnected."""
    from runner.jobs.states import JobState

    return JobState(store.get(job_id).state) == JobState.Disconnected and not args.force


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _receive_end(
    store: Any, job_ids: list[int], pending: list[int], args: argparse.Namespace
) -> int:
    """After `receive --wait`: say which jobs were left Disconnected (naming the hosts
    that could not be reached) or still running at --timeout, then --auto-remove."""
    from runner.api import jobs as api_jobs
    from runner.jobs.states import is_terminal

    if not args.wait:
        return EXIT_OK
    if pending:
        print(
            f"timed out after {args.timeout:g} s; job(s) "
            f"{', '.join(map(str, pending))} not finished",
            file=sys.stderr,
        )
    _print_disconnected(store, job_ids)
    if args.auto_remove:
        for job_id in job_ids:
            record = store.get(job_id)
            if is_terminal(record.state) and not record.has_more_data:
                api_jobs.remove(store, [job_id])
    return EXIT_WAIT_TIMEOUT if pending else EXIT_OK


def _print_disconnected(store: Any, job_ids: list[int]) -> None:
    """One line on stderr per Disconnected job, with its children's reasons."""
    from runner.execution.ontarget.reconnect import leaves
    from runner.jobs.states import JobState

    for job_id in job_ids:
        if store.get(job_id).state != JobState.Disconnected:
            continue
        why = "; ".join(
            " ".join((leaf.reason or f"on {leaf.location}").split())
            for leaf in leaves(store, job_id) if leaf.state == JobState.Disconnected
        )  # fmt: skip
        print(f"job {job_id} is Disconnected: {why}", file=sys.stderr)


def _write_text(rec: Any, several: bool) -> None:
    out = sys.stdout if rec.stream == "stdout" else sys.stderr
    if several:
        out.write("".join(f"[{rec.host}] {line}\n" for line in rec.data.splitlines()))
    else:
        out.write(rec.data)
    if out is sys.stderr:
        out.flush()


def cmd_wait(args: argparse.Namespace) -> int:
    from runner.api import jobs as api_jobs

    store = api_jobs.open_store()
    args.ids = api_jobs.resolve_jobs(store, args.ids)
    pending = api_jobs.wait(store, args.ids, any_=args.any, timeout=args.timeout, force=args.force)
    if pending:
        print(f"timed out after {args.timeout:g} s; still running:", file=sys.stderr)
        print(_table(pending))
        return EXIT_WAIT_TIMEOUT
    records = [store.get(job_id) for job_id in args.ids]
    if args.any:  # Wait-Job -Any returns the job that ended the wait, not every one given
        records = [r for r in records if api_jobs.wait_over(r.state, args.force)]
    print(_table(records))
    _print_disconnected(store, [r.id for r in records])
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    from runner.api import jobs as api_jobs

    store = api_jobs.open_store()
    args.ids = api_jobs.resolve_jobs(store, args.ids)
    pending = api_jobs.stop(store, args.ids)
    print(_table([store.get(job_id) for job_id in args.ids]))
    if pending:
        raise RunnerError(
            f"job(s) {', '.join(map(str, pending))} still stopping: the runner "
            "that owns them has not ended them yet"
        )
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from runner.api import jobs as api_jobs

    store = api_jobs.open_store()
    args.ids = api_jobs.resolve_jobs(store, args.ids)
    api_jobs.remove(store, args.ids, force=args.force, keep_remote=args.keep_remote)
    return EXIT_OK
