"""Host patterns: what a user gets for each form, and one-line errors for malformed ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import PatternError, UsageError
from runner.planning.inventory import Inventory, load_inventory
from runner.planning.patterns import select_hosts, split_pattern

INI = """\
solo
[web]
web[1:4]
[db]
db1
db2
web1
[prod:children]
web
db
"""


@pytest.fixture
def inv(tmp_path: Path) -> Inventory:
    path = tmp_path / "hosts"
    path.write_text(INI)
    return load_inventory(path)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("all", ["solo", "web1", "web2", "web3", "web4", "db1", "db2"]),
        ("*", ["solo", "web1", "web2", "web3", "web4", "db1", "db2"]),
        ("web", ["web1", "web2", "web3", "web4"]),
        ("db2", ["db2"]),
        ("web[2-3]", ["web3", "web4"]),  # Ansible's old x-y form of a subscript
        ("db[!1]", ["db2"]),  # a glob: no group matches, so host names do
        ("w*3", ["web3"]),
        ("~db\\d", ["db1", "db2"]),
        ("db:web", ["db1", "db2", "web1", "web2", "web3", "web4"]),
        ("db,solo", ["db1", "db2", "web1", "solo"]),
        ("web:&db", ["web1"]),
        ("prod:!db", ["web2", "web3", "web4"]),
        ("!web:db", ["db1", "db2"]),  # plain terms first, whatever the order written
        ("!prod", ["solo"]),  # only exclusions: from all
        ("web[0]", ["web1"]),
        ("web[-1]", ["web4"]),
        ("web[1:2]", ["web2", "web3"]),
        ("web[2:]", ["web3", "web4"]),
        ("nothing", []),
        ("nothing:!web", []),
        ("localhost", ["localhost"]),  # Ansible's implicit localhost
    ],
)
def test_pattern_selects(inv: Inventory, pattern: str, expected: list[str]) -> None:
    assert select_hosts(inv, pattern) == expected


def test_limit_keeps_pattern_order(inv: Inventory) -> None:
    assert select_hosts(inv, "prod", limit="db2,web3") == ["web3", "db2"]
    assert select_hosts(inv, "all", limit="!prod") == ["solo"]


def test_limit_from_retry_file(inv: Inventory, tmp_path: Path) -> None:
    retry = tmp_path / "site.retry"
    retry.write_text("db1\nweb4\n")
    assert select_hosts(inv, "all", limit=f"@{retry}") == ["web4", "db1"]


def test_limit_from_an_empty_retry_file_selects_no_host(inv: Inventory, tmp_path: Path) -> None:
    retry = tmp_path / "site.retry"
    retry.write_text("\n")
    assert select_hosts(inv, "all", limit=f"@{retry}") == []


def test_missing_limit_file(inv: Inventory, tmp_path: Path) -> None:
    """A bad command-line option (exit 5), as a limit selecting nothing is."""
    with pytest.raises(UsageError, match="limit file does not exist"):
        select_hosts(inv, "all", limit=f"@{tmp_path / 'none.retry'}")


def test_split_keeps_ranges_and_ports_whole() -> None:
    assert split_pattern("web[1:3]") == ["web[1:3]"]
    assert split_pattern("db.example.com:2222") == ["db.example.com:2222"]
    assert split_pattern("a:b[1:2]:&c:!d") == ["a", "b[1:2]", "&c", "!d"]
    assert split_pattern(" a , b ,") == ["a", "b"]


@pytest.mark.parametrize("pattern", ["", "  ", "~web(", "web[9]", "!", "web:&"])
def test_malformed_pattern_names_it(inv: Inventory, pattern: str) -> None:
    with pytest.raises(PatternError) as info:
        select_hosts(inv, pattern)
    assert "\n" not in str(info.value)
    assert repr(pattern) in str(info.value) or not pattern.strip()
