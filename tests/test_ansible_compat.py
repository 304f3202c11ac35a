"""Our inventory and patterns against ansible-core itself, on the same generated inventories.

Ansible is the reference: for each inventory (INI, YAML, a directory of both) and each
pattern, `select_hosts` must return exactly what `InventoryManager.get_hosts` returns,
in the same order, and every host's merged variables, `group_names` and `groups` must
equal what `VariableManager.get_vars` gives. Ansible runs in-process (fast); two CLI
calls check that the in-process view is the one a user sees from the command line.

The inventories give at most one group with children per nesting level: beyond that,
ansible-core walks child groups through a set and its host order is not deterministic.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runner.errors import PatternError
from runner.planning.inventory import load_inventory
from runner.planning.patterns import select_hosts

pytest.importorskip("ansible")

MAGIC = {
    "ansible_config_file",
    "ansible_facts",
    "ansible_playbook_python",
    "ansible_version",
    "group_names",
    "groups",
    "inventory_hostname",
    "inventory_hostname_short",
    "playbook_dir",
    "omit",
    "ansible_check_mode",
    "ansible_diff_mode",
    "ansible_forks",
    "ansible_inventory_sources",
    "ansible_verbosity",
    "ansible_run_tags",
    "ansible_skip_tags",
    "ansible_limit",
}

INI = """\
# ungrouped hosts first, one with a port
solo x=1 flag=True
edge:2222 ansible_user=ops

[web]
web[01:06] role=web
web-extra ansible_host=10.0.0.9 ansible_port=2200 tags="['a', 'b']"

[db]
db-[a:c] role=db
web01 shared=yes

[app]
app[1:9:2]
app[10:11] weight=3.5

[prod:children]
web
db
canary

[canary]
web03
app3 canary=True

[prod:vars]
env=prod
role=unset
ansible_group_priority=5

[dc:children]
prod

[dc:vars]
env=dc
site=paris

[all:vars]
env=none
ntp=pool.ntp.org

[misc]
m1
solo
"""

YAML = """\
all:
  vars:
    env: none
    nested: {a: 1, b: [1, 2]}
  hosts:
    bastion:
      ansible_host: 192.0.2.1
  children:
    dc:
      vars: {env: dc}
      children:
        prod:
          vars:
            env: prod
            ansible_group_priority: 3
          children:
            web:
              hosts:
                web[1:5]:
                  role: web
                web-9:2222:
            db:
              hosts:
                db-[x:z]: {role: db}
                web2: {shared: true}
              vars: {env: database}
            canary:
              hosts: web4
    ungrouped:
      hosts:
        loner:
    misc:
      hosts:
        m[01:03]:
"""

GROUP_VARS = {
    "all.yml": "gv_all: 1\nenv: group_vars_all\n",
    "web.yml": "gv_web: web\nrole: from_group_vars\n",
    "db": "gv_db: db\n",
    "prod/10-first.yml": "gv_prod: first\nlayer: one\n",
    "prod/20-second.yaml": "layer: two\n",
    "canary.json": '{"gv_canary": true, "role": "canary"}',
}
HOST_VARS = {"web01.yml": "hv: one\nrole: host_file\n", "web2.yml": "hv: two\n", "solo": "x: 9\n"}

PATTERNS = [
    "all",
    "*",
    "web",
    "db",
    "prod",
    "dc",
    "canary",
    "misc",
    "ungrouped",
    "solo",
    "web01",
    "web*",
    "db-?",
    "*-extra",
    "app[13]",
    "~web0[1-3]",
    "~^app",
    "~.*a.*",
    "web:db",
    "web,db",
    "db:web",
    "web:&db",
    "prod:&canary",
    "prod:!canary",
    "all:!prod",
    "!prod",
    "&web",
    "web:!web02:!web03",
    "!web:web",
    "web:&prod:!db",
    "canary:web",
    "web[0]",
    "web[-1]",
    "web[2:4]",
    "web[1:]",
    "web[0:0]",
    "prod[3]",
    "*[1]",
    "web*[0]",
    "web[01:03]",
    "dc:&misc",
    "misc:solo:edge",
    "edge",
    "localhost",
    "127.0.0.1",
    "nomatch",
    "nomatch:web",
    "web:nomatch",
    "m1,web05",
    "app*:!app1*",
    "~(web|db)-",
    "prod,&web,!web04",
    "web,,db",
    " web , db ",
    "ungr*",
    "al*",
    "web1",
    "loner",
    "m0[1-2]",
    "bastion",
    "web-9",
    "db-x:db-y",
]
LIMITS = [("all", "web"), ("prod", "!canary"), ("all", "web[0:1],db"), ("web", "nomatch")]


def _write(base: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture(scope="module")
def ansible_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Quiet, self-contained ansible settings, set before ansible is first imported."""
    home = tmp_path_factory.mktemp("ansible-home")
    env = {
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_HOST_PATTERN_MISMATCH": "ignore",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(home / "none.cfg"),
        "HOME": str(home),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield env


@pytest.fixture(scope="module", params=["ini", "yaml", "directory"])
def inventory_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp(request.param)
    _write(base / "group_vars", GROUP_VARS)
    _write(base / "host_vars", HOST_VARS)
    if request.param == "ini":
        _write(base, {"hosts": INI})
        return str(base / "hosts")
    if request.param == "yaml":
        _write(base, {"hosts.yml": YAML})
        return str(base / "hosts.yml")
    _write(base, {"01-main.ini": INI, "02-more.yml": YAML.replace("web-9", "web-10")})
    _write(base, {"README.md": "not an inventory", ".hidden": "[[[["})
    return str(base)


@pytest.fixture(scope="module")
def ansible(ansible_env: dict[str, str], inventory_path: str) -> Any:
    """ansible-core's InventoryManager and VariableManager over the inventory."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[inventory_path])
    return manager, VariableManager(loader=loader, inventory=manager)


def _ansible_hosts(manager: Any, pattern: str, limit: str | None = None) -> list[str] | str:
    """A fresh manager per question: ansible keeps the first implicit localhost it makes."""
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager

    fresh = InventoryManager(loader=manager._loader, sources=manager._sources)
    fresh.subset(limit)
    try:
        return [h.name for h in fresh.get_hosts(pattern)]
    except AnsibleError:
        return "error"


def _our_hosts(inventory_path: str, pattern: str, limit: str | None = None) -> list[str] | str:
    try:
        return select_hosts(load_inventory(inventory_path), pattern, limit)
    except PatternError:
        return "error"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pattern_selects_what_ansible_selects(
    ansible: Any, inventory_path: str, pattern: str
) -> None:
    manager, _ = ansible
    assert _our_hosts(inventory_path, pattern) == _ansible_hosts(manager, pattern)


@pytest.mark.parametrize(("pattern", "limit"), LIMITS)
def test_limit_restricts_as_ansible_does(
    ansible: Any, inventory_path: str, pattern: str, limit: str
) -> None:
    manager, _ = ansible
    assert _our_hosts(inventory_path, pattern, limit) == _ansible_hosts(manager, pattern, limit)


def test_limit_file_restricts_as_ansible_does(
    ansible: Any, inventory_path: str, tmp_path: Path
) -> None:
    retry = tmp_path / "site.retry"
    retry.write_text("web02\ndb-b\nsolo\n")
    manager, _ = ansible
    limit = f"@{retry}"
    assert _our_hosts(inventory_path, "all", limit) == _ansible_hosts(manager, "all", limit)


def test_hosts_and_groups_match_ansible(ansible: Any, inventory_path: str) -> None:
    manager, _ = ansible
    ours = load_inventory(inventory_path)
    assert list(ours.hosts) == list(manager.hosts)
    assert sorted(ours.groups) == sorted(manager.groups)
    theirs = manager._inventory.get_groups_dict()
    assert ours.groups_map() == {name: list(hosts) for name, hosts in theirs.items()}


def test_host_vars_and_group_names_match_ansible(ansible: Any, inventory_path: str) -> None:
    manager, variables = ansible
    ours = load_inventory(inventory_path)
    for name in manager.hosts:
        theirs = variables.get_vars(host=manager.get_host(name), include_hostvars=False)
        expected = {k: v for k, v in theirs.items() if k not in MAGIC}
        assert ours.host_vars(name) == expected, name
        assert ours.group_names(name) == theirs["group_names"], name


def _cli(env: dict[str, str], *argv: str) -> str:
    completed = subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=120
    )
    return completed.stdout


@pytest.mark.skipif(not shutil.which("ansible-inventory"), reason="ansible CLI not installed")
def test_cli_list_matches(ansible_env: dict[str, str], tmp_path: Path) -> None:
    _write(tmp_path, {"hosts": INI})
    _write(tmp_path / "group_vars", GROUP_VARS)
    listed = json.loads(
        _cli(ansible_env, "ansible-inventory", "-i", str(tmp_path / "hosts"), "--list")
    )
    ours = load_inventory(tmp_path / "hosts")
    for name, group in ours.groups.items():
        assert sorted(listed.get(name, {}).get("hosts", [])) == sorted(group.hosts), name
        assert sorted(listed.get(name, {}).get("children", [])) == sorted(group.children), name
    internal = ("inventory_file", "inventory_dir")  # ansible-inventory hides these
    for name in ours.hosts:
        merged = {k: v for k, v in ours.host_vars(name).items() if k not in internal}
        assert merged == listed["_meta"]["hostvars"][name], name


@pytest.mark.skipif(not shutil.which("ansible"), reason="ansible CLI not installed")
def test_cli_list_hosts_matches(ansible_env: dict[str, str], tmp_path: Path) -> None:
    _write(tmp_path, {"hosts": INI})
    pattern = "prod:&web:!web02,solo"
    out = _cli(ansible_env, "ansible", "-i", str(tmp_path / "hosts"), pattern, "--list-hosts")
    listed = [line.strip() for line in out.splitlines()[1:] if line.strip()]
    assert select_hosts(load_inventory(tmp_path / "hosts"), pattern) == listed


def test_range_stride_and_letters_expand_like_ansible(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "hosts": textwrap.dedent("""\
        [g]
        n[1:10:3]
        x-[b:d]-[1:2]
        """)
        },
    )
    names = list(load_inventory(tmp_path / "hosts").hosts)
    assert names == ["n1", "n4", "n7", "n10", "x-b-1", "x-b-2", "x-c-1", "x-c-2", "x-d-1", "x-d-2"]
