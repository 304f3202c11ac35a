"""`-i 'host1,host2:2222,'`: a comma list of hosts, as `ansible -i` takes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import InventoryError
from runner.planning.inventory import load_inventory
from runner.planning.patterns import select_hosts
from tests.cli import run_runner

HOST_LIST = "web-1, web-2:2222,[2001:db8::1]:2200,db,web-1,"


def test_a_comma_list_is_hosts_with_ports() -> None:
    inv = load_inventory(HOST_LIST)
    assert list(inv.hosts) == ["web-1", "web-2", "2001:db8::1", "db"]
    assert inv.groups["ungrouped"].hosts == list(inv.hosts)
    assert inv.connection("web-2").port == 2222
    assert inv.connection("2001:db8::1").port == 2200
    assert inv.connection("web-1").port == 22
    assert select_hosts(inv, "web-*:!web-2") == ["web-1"]


def test_a_single_host_needs_its_comma(tmp_path: Path) -> None:
    assert list(load_inventory("solo,").hosts) == ["solo"]
    with pytest.raises(InventoryError, match="not found"):
        load_inventory("solo")


def test_an_existing_path_with_a_comma_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a,b.ini"
    path.write_text("[g]\nfromfile\n")
    assert list(load_inventory(path).hosts) == ["fromfile"]


def test_a_hostile_name_in_the_list_is_refused() -> None:
    with pytest.raises(InventoryError, match="must not hold"):
        load_inventory("ok,$(touch /tmp/x),")


def test_runner_inventory_takes_a_host_list(tmp_path: Path) -> None:
    done = run_runner(
        "inventory",
        "-i",
        HOST_LIST,
        "--format",
        "json",
        home=tmp_path / "home",
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hosts"] == ["web-1", "web-2", "2001:db8::1", "db"]


def test_the_host_list_matches_ansible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ansible")
    monkeypatch.setenv("ANSIBLE_HOME", str(tmp_path))
    monkeypatch.setenv("ANSIBLE_CONFIG", str(tmp_path / "none.cfg"))
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    theirs = InventoryManager(loader=DataLoader(), sources=[HOST_LIST])
    ours = load_inventory(HOST_LIST)
    assert list(ours.hosts) == list(theirs.hosts)
    for name in theirs.hosts:
        expected = theirs.get_host(name).get_vars()
        given = {k: v for k, v in expected.items() if k.startswith("ansible_")}
        assert {k: v for k, v in ours.host_vars(name).items() if k.startswith("ansible_")} == given
