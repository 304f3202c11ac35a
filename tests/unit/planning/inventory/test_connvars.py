"""Connection variables as inventories write them: become, passwords, jump hosts, warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InventoryError
from runner.planning.inventory import load_inventory
from runner.planning.inventory.connvars import Hop, inventory_warnings, parse_jump, ssh_args


@pytest.mark.parametrize(
    ("args", "hops"),
    [
        ("-J bastion", (Hop("bastion"),)),
        ("-Jops@bastion:2200", (Hop("bastion", 2200, "ops"),)),
        ("-o ProxyJump=ops@b1,b2:23", (Hop("b1", None, "ops"), Hop("b2", 23))),
        ("-oProxyJump=ssh://b1:2222", (Hop("b1", 2222),)),
        ("-o 'ProxyJump [2001:db8::1]:2222'", (Hop("2001:db8::1", 2222),)),
        ("-o StrictHostKeyChecking=no -o ProxyJump=none", ()),
    ],
)
def test_jump_hosts_in_the_forms_ssh_takes(args: str, hops: tuple[Hop, ...]) -> None:
    assert ssh_args({"ansible_ssh_common_args": args})[0] == hops


def test_proxycommand_and_what_is_ignored() -> None:
    jump, command, ignored = ssh_args(
        {
            "ansible_ssh_common_args": "-o ProxyCommand='ssh -W %h:%p -q ops@bastion'",
            "ansible_ssh_extra_args": "-o UserKnownHostsFile=/dev/null -C",
        }
    )
    assert (jump, command) == ((), "ssh -W %h:%p -q ops@bastion")
    assert ignored == ["-o UserKnownHostsFile=/dev/null", "-C"]


def test_a_hostile_jump_host_is_refused() -> None:
    with pytest.raises(ValueError, match="jump host"):
        parse_jump("ops@$(touch x)")


def test_warnings_name_each_unused_variable_once() -> None:
    warnings = inventory_warnings(
        [
            ("ansible_python_interpreter", "/usr/bin/python3", "a.ini:2: group all"),
            ("ansible_user", "ops", "a.ini:2: group all"),
            ("ansible_python_interpreter", "/usr/bin/python3", "a.ini:5: host h1"),
            ("app_port", 80, "a.ini:5: host h1"),
            ("ansible_ssh_extra_args", "-o ForwardAgent=yes", "a.ini:6: host h2"),
        ]
    )
    assert len(warnings) == 2
    assert warnings[0].startswith("a.ini:2: group all: ")
    assert "ansible_python_interpreter" in warnings[0]
    assert warnings[1].startswith("a.ini:6: host h2: ansible_ssh_extra_args: ")
    assert "-o ForwardAgent=yes" in warnings[1]


def test_inventory_connection_carries_become_password_and_jump(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(
        "[db]\ndb-1 ansible_ssh_pass=s3cret ansible_become=yes ansible_become_user=postgres\n"
        "[db:vars]\nansible_become_pass=sudo-pw\n"
        "ansible_ssh_common_args='-o ProxyJump=ops@bastion:2222'\n"
    )
    inv = load_inventory(path)
    conn = inv.connection("db-1")
    assert (conn.password, conn.become, conn.become_user) == ("s3cret", True, "postgres")
    assert conn.become_password == "sudo-pw"
    assert conn.jump == (Hop("bastion", 2222, "ops"),)
    assert "s3cret" not in repr(conn) and "sudo-pw" not in repr(conn)
    assert set(inv.secrets()) == {"s3cret", "sudo-pw"}
    assert inv.warnings() == []


def test_become_with_su_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("h ansible_become=true ansible_become_method=su\n")
    with pytest.raises(InventoryError, match="sudo only"):
        load_inventory(path).connection("h")
