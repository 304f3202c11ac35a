"""Inventory loading: formats, variables, connections, and one-line errors with a location."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from runner.errors import InventoryError
from runner.planning.inventory import InventoryBuilder, implicit_localhost, load_inventory

REPO = Path(__file__).resolve().parents[4]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_ini_groups_children_and_ungrouped(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path / "hosts",
            """\
        lonely
        [web]
        web[1:2]
        [db]
        db1
        [prod:children]
        web
        db
        """,
        )
    )
    assert list(inv.hosts) == ["lonely", "web1", "web2", "db1"]
    assert inv.groups["prod"].children == ["web", "db"]
    assert inv.groups_map()["prod"] == ["web1", "web2", "db1"]
    assert inv.groups_map()["ungrouped"] == ["lonely"]
    assert inv.group_names("web1") == ["prod", "web"]
    assert inv.group_names("lonely") == ["ungrouped"]


def test_ini_inline_values_are_python_literals(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path / "hosts",
            """\
        h n=5 f=1.5 b=True s=text q="'05'" l="[1, 2]" ip=10.1.2.3 sp="two words"
        [all:vars]
        port=8080
        name=plain
        """,
        )
    )
    assert inv.host_vars("h") | {"inventory_file": None, "inventory_dir": None} == {
        "n": 5, "f": 1.5, "b": True, "s": "text", "q": "05", "l": [1, 2], "ip": "10.1.2.3",
        "sp": "two words", "port": 8080, "name": "plain",
        "inventory_file": None, "inventory_dir": None,
    }  # fmt: skip


def test_host_port_shorthand_sets_ansible_port(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path / "hosts", "db.example.com:2222 ansible_user=ops\n"))
    conn = inv.connection("db.example.com")
    assert (conn.address, conn.port, conn.user, conn.connection) == (
        "db.example.com", 2222, "ops", "ssh",
    )  # fmt: skip


def test_child_group_vars_beat_parent_and_host_vars_beat_both(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path / "hosts",
            """\
        [web]
        w1 level=host
        w2
        [prod:children]
        web
        [prod:vars]
        level=prod
        only_prod=1
        [web:vars]
        level=web
        """,
        )
    )
    assert inv.host_vars("w1")["level"] == "host"
    assert inv.host_vars("w2")["level"] == "web"
    assert inv.host_vars("w2")["only_prod"] == 1


def test_group_vars_and_host_vars_files_override_inventory(tmp_path: Path) -> None:
    inv_file = write(tmp_path / "hosts", "[web]\nw1 a=inline\nw2\n[web:vars]\nb=inline\n")
    write(tmp_path / "group_vars" / "web.yml", "a: group_file\nb: group_file\n")
    write(tmp_path / "group_vars" / "all" / "10.yml", "c: all_dir\n")
    write(tmp_path / "host_vars" / "w1", "a: host_file\n")
    inv = load_inventory(inv_file)
    assert {k: inv.host_vars("w1")[k] for k in "abc"} == {
        "a": "host_file", "b": "group_file", "c": "all_dir",
    }  # fmt: skip
    assert inv.host_vars("w2")["a"] == "group_file"


def test_yaml_inventory_with_ranges_children_and_vars(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path / "hosts.yml",
            """\
        all:
          vars: {ansible_user: deploy}
          children:
            web:
              hosts:
                web[01:02]:
                  ansible_host: 127.0.0.1
                  ansible_port: 2201
        """,
        )
    )
    assert list(inv.hosts) == ["web01", "web02"]
    conn = inv.connection("web02")
    assert (conn.address, conn.port, conn.user) == ("127.0.0.1", 2201, "deploy")


def test_directory_of_inventories(tmp_path: Path) -> None:
    write(tmp_path / "inv" / "a.ini", "[web]\nw1\n")
    write(tmp_path / "inv" / "b.yml", "all:\n  children:\n    db:\n      hosts: {d1: }\n")
    write(tmp_path / "inv" / "group_vars" / "db.yml", "engine: pg\n")
    inv = load_inventory(tmp_path / "inv")
    assert list(inv.hosts) == ["w1", "d1"]
    assert inv.host_vars("d1")["engine"] == "pg"


def test_localhost_connections_follow_ansible(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path / "hosts", "localhost\nweb1 ansible_connection=local\n"))
    assert inv.connection("localhost").connection == "ssh"  # explicit localhost: ssh, as Ansible
    assert inv.connection("web1").connection == "local"
    assert implicit_localhost().connection("localhost").connection == "local"
    assert list(implicit_localhost().hosts) == ["localhost"]


def test_group_priority_orders_siblings(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path / "hosts",
            """\
        [a]
        h
        [b]
        h
        [a:vars]
        v=a
        ansible_group_priority=10
        [b:vars]
        v=b
        """,
        )
    )
    assert inv.host_vars("h")["v"] == "a"


def test_example_inventories_load() -> None:
    local = load_inventory(REPO / "inventory" / "local.ini")
    assert all(local.connection(h).connection == "local" for h in local.hosts)
    fleet = load_inventory(REPO / "inventory" / "hosts.yml")
    assert "webservers" in fleet.groups


@pytest.mark.parametrize(
    ("name", "text", "line", "needle"),
    [
        ("hosts", "[web]\nw1\nw2 novalue\n", 3, "key=value"),
        ("hosts", "[web\n", None, None),
        ("hosts", "[web:bogus]\nw1\n", 1, "unknown type"),
        ("hosts", "[web]\nweb[1:x]\n", 2, "bad host range"),
        ("hosts", "[web]\nweb[05:1]0\n", 2, "bad host range"),
        ("hosts", "[web:children]\nmissing\n", 2, "undefined group 'missing'"),
        ("hosts", "[ghost:vars]\na=1\n", 1, "defined nowhere"),
        ("hosts", "[web]\nw1 x='unclosed\n", 2, "cannot parse"),
        ("hosts", "[a:children]\nb\n[b:children]\na\n", 4, "loop"),
        ("hosts", "[web]\nweb\n", 2, "both"),
        ("hosts.yml", "all:\n  children:\n    web:\n      hostz: {}\n", 4, "unexpected key"),
        ("hosts.yml", "all:\n  hosts:\n    - a\n", 2, "must be a mapping"),
        ("hosts.yml", "- just\n- a list\n", None, None),
        ("hosts.yml", "all:\n  hosts: {a: 1}\n", 2, "mapping"),
        ("hosts.yml", "all: [\n", 2, "invalid YAML"),
    ],
)
def test_bad_inventory_is_one_located_line(
    tmp_path: Path, name: str, text: str, line: int | None, needle: str | None
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "\n" not in message
    if line is not None:
        assert info.value.line == line, message
    if needle is not None:
        assert needle in message


def test_missing_inventory_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="not found") as info:
        load_inventory(tmp_path / "nope.ini")
    assert info.value.file == str(tmp_path / "nope.ini")


def test_bad_group_vars_file_is_located(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path / "hosts", "[web]\nw1\n"))
    write(tmp_path / "group_vars" / "web.yml", "a: 1\nb: [\n")
    with pytest.raises(InventoryError) as info:
        inv.host_vars("w1")
    assert info.value.file.endswith("web.yml") and info.value.line == 3


def test_ten_thousand_hosts_parse(tmp_path: Path) -> None:
    lines = []
    for group in range(50):
        lines.append(f"[g{group}]")
        lines += [f"h{group}-{n} ansible_host=10.0.{group}.{n} n={n}" for n in range(200)]
    inv = load_inventory(write(tmp_path / "hosts", "\n".join(lines) + "\n"))
    assert len(inv.hosts) == 10_000
    assert inv.host_vars("h7-99")["n"] == 99


def test_runner_step_shell_is_a_yes_no_variable(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path / "hosts",
            """\
        a
        b runner_step_shell=false
        c runner_step_shell=Yes
        d runner_step_shell=maybe
        """,
        )
    )
    assert [inv.connection(h).step_shell for h in "abc"] == [True, False, True]
    with pytest.raises(
        InventoryError, match="runner_step_shell must be true or false, not 'maybe'"
    ):
        inv.connection("d")


# -- what may reach ssh: names, ports, connections ---------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "web01.example.com",
        "db_primary",
        "10.0.0.1",
        "::1",
        "fe80::1%eth0",
        "my-host",
        "user@jump",
        "UPPER.case",
        "h\u00e9te",
    ],
)
def test_real_host_names_and_addresses_are_accepted(tmp_path: Path, name: str) -> None:
    inv = load_inventory(
        write(
            tmp_path / "hosts.yml",
            f"""\
        all:
          hosts:
            "{name}":
            alias:
              ansible_host: "{name}"
        """,
        )
    )
    assert inv.connection(name).address == name
    assert inv.connection("alias").address == name


@pytest.mark.parametrize(
    "name",
    [
        "x;touch${IFS}/tmp/PWNED;#",
        "a b",
        "$(id)",
        "`id`",
        "a|b",
        "a&b",
        "a>b",
        "-oProxyCommand=x",
        "a'b",
        'a"b',
        "a\\b",
        "a{b}",
        "a,b",
        "a\tb",
        "a\u2028b",
        "a(b)",
    ],
)
def test_host_names_with_shell_metacharacters_are_refused_at_load(
    tmp_path: Path, name: str
) -> None:
    """OpenSSH 9.6's `valid_hostname`: a name reaches `Match exec` through a shell."""
    for text, line in [
        (f"all:\n  hosts:\n    {json.dumps(name)}:\n", 3),
        (f"all:\n  hosts:\n    ok:\n      ansible_host: {json.dumps(name)}\n", 4),
        (f"all:\n  hosts:\n    ok:\n  vars:\n    ansible_ssh_host: {json.dumps(name)}\n", 5),
    ]:
        path = tmp_path / "hosts.yml"
        path.write_text(text)
        with pytest.raises(InventoryError, match="host name") as info:
            load_inventory(path)
        assert info.value.line == line and "\n" not in str(info.value)


def test_a_bad_ansible_host_in_host_vars_is_refused_when_the_inventory_loads(
    tmp_path: Path,
) -> None:
    write(tmp_path / "host_vars" / "w1" / "net.yml", "a: 1\nansible_host: 'h;id'\n")
    with pytest.raises(InventoryError, match="ansible_host: host name") as info:
        load_inventory(write(tmp_path / "hosts", "[web]\nw1\n"))
    assert info.value.file.endswith("net.yml") and info.value.line == 2


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("22", True),
        ("1", True),
        ("65535", True),
        ("0", False),
        ("65536", False),
        ("123565", False),
        ("True", False),
        ("'22'", True),
        ("'2x'", False),
        ("22.0", False),
        ("-1", False),
    ],
)
def test_ports_are_whole_numbers_from_1_to_65535(tmp_path: Path, value: str, ok: bool) -> None:
    path = write(tmp_path / "hosts", f"[web]\nh\n[web:vars]\nansible_port={value}\n")
    if ok:
        assert load_inventory(path).connection("h").port == int(value.strip("'"))
        return
    with pytest.raises(InventoryError, match="ansible_port: must be a port number") as info:
        load_inventory(path)
    assert info.value.line == 4


def test_a_yaml_port_of_1e400_or_true_is_refused(tmp_path: Path) -> None:
    for value in ("1e400", "1.0e+400", "true", "[22]"):
        path = write(
            tmp_path / "hosts.yml", f"all:\n  hosts:\n    h:\n      ansible_port: {value}\n"
        )
        with pytest.raises(InventoryError, match="must be a port number") as info:
            load_inventory(path)
        assert info.value.line == 4


@pytest.mark.parametrize(
    ("given", "kind"),
    [
        ("ssh", "ssh"),
        ("paramiko", "ssh"),
        ("smart", "ssh"),
        ("local", "local"),
        ("ansible.builtin.local", "local"),
        ("winrm", None),
        ("docker", None),
        ("psrp", None),
    ],
)
def test_only_connections_runner_has_are_accepted(tmp_path: Path, given: str, kind: str) -> None:
    path = write(tmp_path / "hosts", f"[web]\nh ansible_connection={given}\n")
    if kind:
        assert load_inventory(path).connection("h").connection == kind
        return
    with pytest.raises(InventoryError, match=f"connection '{given}' is not one") as info:
        load_inventory(path)
    assert info.value.line == 2


@pytest.mark.parametrize(
    "entry", ["web[1:99999999]", "h[1:9999][1:9999]", "h[a:z][1:9999]", "h[0:1" + "0" * 40 + "]"]
)
def test_a_range_past_100000_hosts_is_refused_before_it_is_made(tmp_path: Path, entry: str) -> None:
    for name, text in [
        ("hosts", f"[web]\n{entry}\n"),
        ("hosts.yml", f"all:\n  hosts:\n    {entry}:\n"),
    ]:
        with pytest.raises(InventoryError, match="more than 100,000 hosts") as info:
            load_inventory(write(tmp_path / name, text))
        assert info.value.line == (2 if name == "hosts" else 3)


def test_a_range_of_100000_hosts_is_accepted(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path / "hosts", "[web]\nn[000001:100000]\n"))
    assert len(inv.hosts) == 100_000 and list(inv.hosts)[-1] == "n100000"


class _CountedName(str):
    """A host name that counts how often it is compared with another."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        _CountedName.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_adding_hosts_to_a_group_is_linear_and_keeps_order() -> None:
    """A list scan per host made 100,000 hosts in one group take a minute: count the
    name comparisons instead of timing (a set finds a name without scanning)."""
    builder = InventoryBuilder()
    builder.add_group("web")
    names = [_CountedName(f"n{i:05d}") for i in range(3000)]
    _CountedName.comparisons = 0
    for name in names + names[:10]:  # listed twice: kept once, in first place
        builder.add_host(name, "web")
    inventory = builder.finish()
    assert _CountedName.comparisons < 10 * len(names)
    assert inventory.groups["web"].hosts == names


def test_an_ini_value_of_5000_digits_is_kept_as_text_as_ansible_keeps_it(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text(f"h ansible_connection=local x={'9' * 5000}\n")
    inventory = load_inventory(str(path))
    assert inventory.host_vars("h")["x"] == "9" * 5000
