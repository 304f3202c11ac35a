"""The library behind the command line: what `runner validate | plan | inventory` do.

A Python user can call these directly; `cli.py` only parses arguments, calls them and
formats the answers.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
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

    result: dict[str, Any] = {}
    for value in values:
        value = value.strip()
        if value.startswith("@"):
            result.update(_extra_vars_file(value[1:]))
        elif value.startswith("{"):
            try:
                data = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise UsageError(f"-e {value!r}: not valid JSON or YAML: {exc}") from None
            if not isinstance(data, dict):
                raise UsageError(f"-e {value!r}: expected a mapping")
            result.update(data)
        else:
            for pair in shlex.split(value):
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


def validate(paths: Sequence[str], inventory: str | None = None) -> list[str]:
    """Check playbooks (schema + semantics; with an inventory, also host patterns and
    templates). Returns warnings; raises the first error found."""
    from runner.playbook import load_playbook

    warnings: list[str] = []
    inv = load_inventory(inventory) if inventory else None
    for path in paths:
        playbook = load_playbook(path)
        if inv is not None:
            from runner.planner import build_plan, render_plan

            plan = build_plan(playbook, inv)
            render_plan(plan)
            warnings.extend(plan.warnings)
    return warnings


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
    from runner.playbook import load_playbook

    playbook = load_playbook(playbook_path)
    inv = load_inventory(inventory)
    return build_plan(
        playbook,
        inv,
        extra_vars=parse_extra_vars(extra_vars),
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

