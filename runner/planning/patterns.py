"""Host patterns, with ansible-core's semantics and ordering (`InventoryManager.get_hosts`).

A pattern is a list of terms split on `,` (or on `:` when it is not a host:port or a
range). Plain terms are unioned first, then `&` terms intersect, then `!` terms exclude,
whatever order they were written in. A term is a host or group name, a glob, or
`~regex`, optionally followed by a subscript `[i]`, `[i:j]` (inclusive) or `[-1]`.
A limit is applied the same way and keeps only hosts it also selects.
"""

from __future__ import annotations

import fnmatch
import re

from runner.errors import PatternError, UsageError
from runner.planning.files import MAX_LIMIT_FILE, FileRefused, read_text
from runner.planning.inventory import Inventory, parse_address

_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")
_COLON_TERMS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_SPECIAL = (".", "?", "*", "[")


def select_hosts(inventory: Inventory, pattern: str, limit: str | None = None) -> list[str]:
    """The host names `pattern` selects (restricted by `limit`), in Ansible's order.

    Returns [] when nothing matches; the caller decides whether to warn.
    Raises PatternError for an empty pattern, a bad regex or an out-of-range index.
    """
    terms = split_pattern(pattern)
    if not terms:
        raise PatternError("empty host pattern", path=repr(pattern))
    hosts = _evaluate(inventory, terms, pattern)
    if limit and split_pattern(limit):
        subset = _limit_terms(limit)
        # Only empty limit files (a clean run's retry file) stand for no host, not for all.
        allowed = set(_evaluate(inventory, subset, limit)) if subset else set()
        hosts = [h for h in hosts if h in allowed]
    return list(dict.fromkeys(hosts))


def check_limit(inventory: Inventory, limit: str | None) -> None:
    """UsageError when `limit` leaves no host of the inventory at all: a typo in --limit
    (or an empty retry file) must not run nothing and exit 0, as ansible-playbook refuses
    it too. A job's own pattern selecting nothing stays the planner's warning."""
    if not limit or not split_pattern(limit):
        return
    subset = _limit_terms(limit)
    if not subset:
        raise UsageError(f"--limit {limit!r} selects no host: the file lists none")
    if not _evaluate(inventory, subset, limit):
        raise UsageError(f"--limit {limit!r} selects no host of the inventory")


def split_pattern(pattern: str) -> list[str]:
    """Ansible's `split_host_pattern`: commas, else colons outside host:port and ranges."""
    if "," in pattern:
        terms = pattern.split(",")
    else:
        try:
            parse_address(pattern)
            terms = [pattern]
        except ValueError:
            terms = _COLON_TERMS.findall(pattern)
    return [t.strip() for t in terms if t.strip()]


def _limit_terms(limit: str) -> list[str]:
    """A limit's terms; `@FILE` stands for the host names in FILE, one a line (a retry file)."""
    terms: list[str] = []
    for term in split_pattern(limit):
        if term[0] != "@":
            terms.append(term)
            continue
        path = term[1:]
        try:
            text = read_text(path, MAX_LIMIT_FILE)
        except FileRefused as why:
            raise UsageError(f"--limit {term}: the limit file {why}") from None
        terms.extend(line.strip() for line in text.split("\n") if line.strip())
    return terms


def _order_terms(terms: list[str]) -> list[str]:
    """Plain terms first, then `&` terms, then `!` terms; only modifiers means `all` first."""
    plain = [t for t in terms if t and t[0] not in "&!"]
    both = [t for t in terms if t and t[0] == "&"]
    minus = [t for t in terms if t and t[0] == "!"]
    return (plain or ["all"]) + both + minus


def _evaluate(inventory: Inventory, terms: list[str], pattern: str) -> list[str]:
    hosts: list[str] = []
    for term in _order_terms(terms):
        if term in inventory.hosts:
            hosts.append(term)
            continue
        matched = _match_term(inventory, term, pattern)
        if term[0] == "!":
            excluded = set(matched)
            hosts = [h for h in hosts if h not in excluded]
        elif term[0] == "&":
            kept = set(matched)
            hosts = [h for h in hosts if h in kept]
        else:
            present = set(hosts)
            hosts.extend(h for h in matched if h not in present)
    return hosts


def _match_term(inventory: Inventory, term: str, pattern: str) -> list[str]:
    expr = term[1:] if term[0] in "&!" else term
    if not expr:
        raise PatternError(f"term {term!r} names nothing", path=repr(pattern))
    expr, subscript = _split_subscript(expr)
    hosts = _enumerate(inventory, expr, pattern)
    if not hosts or subscript is None:
        return hosts
    start, end = subscript
    if end:
        return hosts[start : (len(hosts) - 1 if end == -1 else end) + 1]
    try:
        return [hosts[start]]
    except IndexError:
        raise PatternError(
            f"subscript out of range: {term!r} matches {len(hosts)} hosts", path=repr(pattern)
        ) from None


def _split_subscript(expr: str) -> tuple[str, tuple[int, int | None] | None]:
    """`web[0]` -> ("web", (0, None)); `web[1:3]` -> ("web", (1, 3)); `web[1:]` -> end -1."""
    if expr[0] == "~":
        return expr, None
    match = _SUBSCRIPT.match(expr)
    if not match:
        return expr, None
    base, index, start, _sep, end = match.groups()
    if index:
        return base, (int(index), None)
    return base, (int(start), int(end) if end else -1)


def _enumerate(inventory: Inventory, expr: str, pattern: str) -> list[str]:
    """Hosts of every group the expression names, then hosts it names (Ansible's rules)."""
    matcher = _compile(expr, pattern)
    groups = [g for g in inventory.groups if matcher.match(g)]
    results: list[str] = []
    for group in groups:
        results.extend(inventory.group_hosts(group))
    if not groups or expr[0] == "~" or any(c in expr for c in _SPECIAL):
        results.extend(h for h in inventory.hosts if matcher.match(h))
    if not results:
        implicit = inventory.implicit_host(expr)
        if implicit is not None:
            results.append(implicit.name)
    return results


def _compile(expr: str, pattern: str) -> re.Pattern[str]:
    try:
        if expr[0] == "~":
            return re.compile(expr[1:])
        return re.compile(fnmatch.translate(expr))
    except re.error as exc:
        raise PatternError(f"bad regular expression {expr!r}: {exc}", path=repr(pattern)) from None
