"""The command line's grammar pieces shared by its modules: the parser class that turns
argparse's complaints into usage errors, and the options every planning command takes."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from runner.errors import UsageError


class ArgumentError(UsageError):
    """A command line argparse refused, told by the (sub)command that refused it, whose
    name prefixes the line (`runner run: error: ...`) instead of `runner: error:`."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{message} (see '{prog} --help')")
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad options; we report them as UsageError (exit 5)."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentError(self.prog, message)

    def parse_known_args(  # type: ignore[override]
        self, args: Any = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse, but arguments left over are refused by the innermost (sub)command,
        so the message names `runner run`, not `runner`."""
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def plan_sources(args: argparse.Namespace) -> dict[str, Any]:
    """What `plan` and `run` plan from: the playbook and the options of _add_plan_options."""
    return {
        "playbook_path": args.playbook,
        "inventory": args.inventory,
        "extra_vars": args.extra_vars,
        "limit": args.limit,
        "tags": args.tags,
        "skip_tags": args.skip_tags,
        "start_at_job": args.start_at_job,
    }


def add_plan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-i",
        "--inventory",
        help="inventory file or directory (Ansible INI or YAML), or hosts: 'h1,h2:2222,'",
    )
    p.add_argument("-l", "--limit", help="further limit the hosts to a pattern (or @retry-file)")
    p.add_argument(
        "-e",
        "--extra-vars",
        action="append",
        default=[],
        metavar="KEY=VAL|@FILE",
        help="extra variables (highest precedence); repeatable",
    )
    p.add_argument("-t", "--tags", action="append", default=[], help="only steps with these tags")
    p.add_argument("--skip-tags", action="append", default=[], help="skip steps with these tags")
    p.add_argument(
        "--start-at-job", metavar="NAME", help="start at this job, skipping earlier ones"
    )
    add_vault_options(p)


def add_vault_options(p: argparse.ArgumentParser) -> None:
    """The ansible-vault passwords of a command that reads playbooks or inventories."""
    p.add_argument(
        "--vault-password-file",
        action="append",
        default=[],
        metavar="FILE",
        help="ansible-vault password: the file's first line, or an executable's output"
        " (default $ANSIBLE_VAULT_PASSWORD_FILE); repeatable",
    )
    p.add_argument("--ask-vault-pass", action="store_true", help="ask the ansible-vault password")
    p.add_argument(
        "--vault-id",
        action="append",
        default=[],
        metavar="LABEL@SOURCE",
        help="an ansible-vault password for a vault id: SOURCE a file, a script or 'prompt'",
    )


def apply_vault_options(args: argparse.Namespace) -> None:
    """Read the passwords a command's vault options name (or $ANSIBLE_VAULT_PASSWORD_FILE)
    before it loads anything, so every file it reads can be decrypted."""
    if not hasattr(args, "vault_password_file"):
        return  # a command that reads no playbook or inventory
    from runner.api import vault

    vault.install(args.vault_password_file, args.ask_vault_pass, args.vault_id)
