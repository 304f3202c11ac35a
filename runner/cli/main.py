"""The command line: parse arguments, call `runner.api`, format, map errors to exit codes.

Heavy modules (jinja2, fabric, jsonschema) are imported inside the commands that need
them, so `runner --version` and `runner --help` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from runner import __version__
from runner.cli.parser import (
    ArgumentError,
    Parser,
    add_plan_options,
    add_vault_options,
    apply_vault_options,
    plan_sources,
)
from runner.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    LocatedError,
    RunnerError,
    StoreError,
    store_fault_code,
)


def _one_line(text: str) -> str:
    """Control characters escaped (a newline in a file name, an escape sequence in a
    pattern...), so that one message stays one line and cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _warn(messages: list[str] | tuple[str, ...]) -> None:
    for message in messages:
        print(f"warning: {_one_line(message)}", file=sys.stderr)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def cmd_validate(args: argparse.Namespace) -> int:
    from runner.api import plans

    # One playbook at a time: an error may name another file (a `template:` source).
    codes = []
    for path in args.playbooks:
        warnings, errors = plans.validate([path], inventory=args.inventory)
        _warn(warnings)
        for error in errors:
            report(error)
        if errors:
            codes.append(errors[0].exit_code)
        else:
            print(f"{path}: ok")
    return codes[0] if codes else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from runner.api import plans
    from runner.planning.planner import render_plan

    plan = plans.plan(**plan_sources(args))
    rows = render_plan(plan)
    _warn(plan.warnings)
    if args.format == "json":
        _print_plan_json(plan, rows)
        return EXIT_OK
    from tabulate import tabulate

    table = [
        (
            r.job,
            r.type,
            r.host,
            f"{r.section} > {r.step}" if r.section else r.step,
            r.command
            + (" (at run time)" if r.deferred else "")
            + (" (skipped: when is false)" if r.skipped else "")
            + (" (handler: runs if notified)" if r.handler else ""),
            r.when or "",
        )
        for r in rows
    ]
    print(tabulate(table, headers=["job", "type", "host", "step", "command", "when"]))
    return EXIT_OK


def _print_plan_json(plan: Any, rows: list[Any]) -> None:
    """The plan as one JSON document, a step row per line: compact and fast for 200,000
    rows (the C encoder only serves dumps without indentation)."""
    head = {
        "playbook": plan.playbook.file,
        "jobs": [
            {"name": jp.name, "type": jp.job.type, "hosts": list(jp.hosts)} for jp in plan.jobs
        ],
        "warnings": list(plan.warnings),
    }
    out = sys.stdout
    out.write(json.dumps(head)[:-1] + ', "steps": [')
    encode = json.JSONEncoder(default=str).encode
    out.write(",".join("\n  " + encode(row.__dict__) for row in rows))
    out.write("\n]}\n")


def cmd_inventory(args: argparse.Namespace) -> int:
    from runner.api import plans

    result = plans.select(args.inventory, args.pattern, args.limit)
    _warn(result.pop("warnings"))
    if args.format == "json":
        _print_json(result)
        return EXIT_OK
    if not result["hosts"]:
        _warn([f"pattern '{args.pattern}' selects no hosts"])
    print(f"  hosts ({len(result['hosts'])}):")
    for host in result["hosts"]:
        print(f"    {host}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="runner",
        description="Run YAML playbooks over SSH; every unit of work is a persistent job.",
    )
    parser.add_argument("--version", action="version", version=f"runner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("validate", help="check playbooks (schema and semantics); nothing runs")
    p.add_argument("playbooks", nargs="+", metavar="PLAYBOOK")
    p.add_argument("-i", "--inventory", help="also check host patterns and templates against it")
    add_vault_options(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="show every job x host x step, rendered; nothing runs")
    p.add_argument("playbook", metavar="PLAYBOOK")
    add_plan_options(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("inventory", help="show the hosts and groups a pattern selects")
    p.add_argument("-i", "--inventory", help="inventory file or directory, or 'h1,h2,'")
    p.add_argument("pattern", nargs="?", default="all", metavar="PATTERN")
    p.add_argument("-l", "--limit", help="further limit the hosts to a pattern")
    p.add_argument("--format", choices=["text", "json"], default="text")
    add_vault_options(p)
    p.set_defaults(func=cmd_inventory)

    _add_run_commands(sub)
    return parser


def _add_run_commands(sub: Any) -> None:
    """`runner run` and `runner job ...` (defined in cli/jobs.py to keep this module small).

    Imported here, not at the top, only to keep `runner --version` from loading it; a
    broken import below must fail loudly, never drop the commands."""
    from runner.cli import distributed as cli_distributed
    from runner.cli import jobs as cli_jobs

    cli_jobs.add_commands(sub, Parser, add_plan_options)
    cli_distributed.add_commands(sub, Parser)


def report(error: BaseException) -> None:
    """Print an error as the one line a user sees."""
    if isinstance(error, LocatedError) and error.file:
        print(_one_line(str(error)), file=sys.stderr)
    elif isinstance(error, ArgumentError):
        print(f"{error.prog}: error: {_one_line(str(error))}", file=sys.stderr)
    else:
        print(f"runner: error: {_one_line(str(error))}", file=sys.stderr)


def entry() -> None:
    """The `runner` command: `main()`, then exit without tearing the interpreter down.

    By the time `main()` returns, every job is in the store, every file written and
    closed, and every connection closed; what remains is the interpreter's own
    finalization (freeing some thousand modules: Fabric, paramiko, cryptography...),
    time no one waits for usefully (BENCHMARKS.md, "Figures behind design choices").
    runner registers no atexit handler.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        pass  # the reader went away: there is no one to tell
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        from runner.cli.distributed import apply_store_options

        apply_store_options(args)
        apply_vault_options(args)
        return int(args.func(args))
    except RunnerError as error:
        report(error)
        return error.exit_code
    except KeyboardInterrupt:
        print("runner: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:
        if store_fault_code(error) is not None:  # read outside the store's own checks
            from runner.settings import store_path

            store_error = StoreError.wrap(error, store_path())
            report(store_error)
            return store_error.exit_code
        if os.environ.get("RUNNER_DEBUG"):
            raise
        print(
            f"runner: unexpected error: {type(error).__name__}: {error} "
            "(set RUNNER_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED
