"""Beyond one controller on the command line: `--store` and `--broker` on every command
that touches jobs, `runner worker`, and `runner store migrate`."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from runner.errors import UsageError

_QUEUE = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def add_store_options(p: argparse.ArgumentParser, broker: bool = False) -> None:
    """`--store URL` (and `--broker URL`): override RUNNER_STORE (RUNNER_BROKER)."""
    p.add_argument(
        "--store",
        metavar="URL",
        help="job store: sqlite:///PATH or postgresql://USER@HOST/DB (default $RUNNER_STORE,"
        " else $RUNNER_HOME/jobs.db)",
    )
    if broker:
        p.add_argument(
            "--broker",
            metavar="URL",
            help="send children to workers through this redis://HOST:PORT/N"
            " (default $RUNNER_BROKER)",
        )


def apply_store_options(args: argparse.Namespace) -> None:
    """A flag wins over the environment: it sets the variable for this command and the
    processes it starts."""
    for option, variable in (("store", "RUNNER_STORE"), ("broker", "RUNNER_BROKER")):
        value = getattr(args, option, None)
        if value:
            os.environ[variable] = value
    if getattr(args, "func", None) is cmd_worker:  # before a vault password is asked
        _hide_url_arguments(sys.argv[1:])


def add_commands(sub: Any, parser_class: type) -> None:
    p = sub.add_parser("worker", help="run child jobs sent by 'runner run' (needs a broker)")
    p.add_argument(
        "-c", "--concurrency", type=_count, default=10, help="children at once (default 10)"
    )
    p.add_argument(
        "-Q",
        "--queue",
        action="append",
        default=[],
        metavar="QUEUE",
        help="take children of this queue (repeatable; default 'runner')",
    )
    p.add_argument("-n", "--name", help="this worker's name in reasons and listings")
    from runner.cli.parser import add_vault_options

    add_vault_options(p)  # no vault password crosses the broker: a worker has its own
    p.add_argument(
        "-l",
        "--loglevel",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="WARNING",
        help="Celery's log level (INFO: each task taken and how it ended)",
    )
    add_store_options(p, broker=True)
    p.set_defaults(func=cmd_worker)

    store = sub.add_parser("store", help="the job store's schema")
    ssub = store.add_subparsers(dest="store_command", metavar="ACTION", parser_class=parser_class)
    ssub.required = True
    p = ssub.add_parser("migrate", help="apply the store's pending schema migrations")
    add_store_options(p)
    p.set_defaults(func=cmd_migrate)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected 1 to 1000, got {value}")
    return value


def _hide_url_arguments(argv: list[str]) -> None:
    """A worker runs for months, and `ps` shows its command line to every user of the
    machine: when `--store` or `--broker` holds a password, run again (same process)
    with the URLs only in the environment, which `apply_store_options` set."""
    from runner.jobs.urls import mask_url

    kept: list[str] = []
    hidden = False
    words = iter(argv)
    for word in words:
        name, equals, value = word.partition("=")
        if len(name) < 3 or not any(o.startswith(name) for o in ("--store", "--broker")):
            kept.append(word)
            continue
        value = value if equals else next(words, "")
        hidden = hidden or mask_url(value) != value
    if hidden:
        os.execv(sys.executable, [sys.executable, "-m", "runner", *kept])


def cmd_worker(args: argparse.Namespace) -> int:
    from runner.distributed.worker import main as worker_main
    from runner.jobs.store import JobStore
    from runner.settings import broker_url, store_location

    queues = args.queue or ["runner"]
    for queue in queues:
        if not _QUEUE.fullmatch(queue):
            raise UsageError(f"--queue {queue!r}: a queue name is 1 to 100 of A-Z a-z 0-9 _ . -")
    broker = broker_url()
    if broker is None:
        raise UsageError("runner worker needs a broker: set RUNNER_BROKER or --broker")
    location = store_location()
    if not location.split("://", 1)[0].startswith("postgres"):
        raise UsageError(
            "runner worker needs a PostgreSQL job store every machine reaches: set"
            " RUNNER_STORE or --store to postgresql://..."
        )
    from runner.distributed.app import check_broker, make_app

    store = JobStore(location)
    check_broker(make_app(broker), broker)
    return worker_main(store, broker, args.concurrency, queues, args.name, args.loglevel)


def cmd_migrate(args: argparse.Namespace) -> int:
    from runner.jobs.store import JobStore
    from runner.settings import store_location

    store = JobStore(store_location(), upgrade=True)
    version = store.db.latest
    if store.migrated:
        print(f"{store.path}: schema migrated to v{version} ({store.migrated} step(s))")
    else:
        print(f"{store.path}: schema v{version}, up to date")
    return 0
