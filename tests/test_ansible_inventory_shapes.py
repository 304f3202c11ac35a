"""`runner inventory` against ansible-core's own CLI on inventories shaped like real ones.

The shapes (tests/inventories/) follow widely used inventories: kubespray's sample
inventory.ini, openstack-ansible's inventory.ini and the LAMP example inventories, with
hyphens in group names everywhere (section headers, `:children` lines, `:vars`, hosts)
and a YAML one. Each must load, select for each pattern exactly the hosts, in the same
order, that `ansible --list-hosts` prints, and have the groups `ansible-inventory --list`
shows. Both sides run as a user runs them, from the command line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli import run_runner

HERE = Path(__file__).resolve().parent / "inventories"
PATTERNS = {
    "kubespray.ini": [
        "all",
        "k8s-cluster",
        "all:!kube-node",
        "k8s-cluster:&kube-node",
        "kube-controlplane:&etcd",
        "kube-*",
        "*-rr",
        "k8s-cluster:!kube-controlplane",
        "node-5",
        "~^kube-",
        "etcd:kube-node",
    ],
    "openstack-ansible.ini": [
        "all",
        "ceph_all",
        "ceph-osd",
        "all:!ceph-osd",
        "ceph_all:&ceph-mon",
        "ceph-*",
        "storage-*",
        "physical_hosts:!ceph-*",
        "ceph-osd[1:2]",
    ],
    "lamp.ini": [
        "all",
        "lamp",
        "all:!lamp-db",
        "lamp:!lamp-db",
        "lamp-www",
        "lamp-*",
        "lamp-www:&a4d.lamp.www.1",
        "a4d.lamp.*",
        "lamp-db:lamp-memcached",
    ],
    "hyphens.yml": [
        "all",
        "all:!lamp-db",
        "k8s-cluster:&c-d",
        "kube-*:!kube-node",
        "*-*",
        "~^(c-d|lamp-db)$",
    ],
}
CASES = [(name, pattern) for name, patterns in PATTERNS.items() for pattern in patterns]


@pytest.fixture(scope="module")
def ansible_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if not shutil.which("ansible") or not shutil.which("ansible-inventory"):
        pytest.skip("ansible-core's CLI is not installed (pip install -e '.[test]')")
    home = tmp_path_factory.mktemp("ansible-home")
    return {
        **os.environ,
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_CONFIG": str(home / "none.cfg"),
        "ANSIBLE_HOST_PATTERN_MISMATCH": "ignore",
        "ANSIBLE_NOCOLOR": "1",
        "HOME": str(home),
    }


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def _runner_hosts(inventory: Path, pattern: str, env: dict[str, str]) -> list[str]:
    done = run_runner("inventory", "-i", str(inventory), pattern, "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["hosts"]


def _ansible_hosts(inventory: Path, pattern: str, env: dict[str, str]) -> list[str]:
    done = _run(["ansible", "-i", str(inventory), pattern, "--list-hosts"], env)
    assert done.returncode == 0, done.stderr
    return [line.strip() for line in done.stdout.splitlines()[1:] if line.strip()]


@pytest.mark.parametrize(("name", "pattern"), CASES)
def test_runner_inventory_selects_what_ansible_selects(
    ansible_env: dict[str, str], name: str, pattern: str
) -> None:
    inventory = HERE / name
    assert _runner_hosts(inventory, pattern, ansible_env) == _ansible_hosts(
        inventory, pattern, ansible_env
    )


@pytest.mark.parametrize("name", list(PATTERNS))
def test_groups_are_named_as_ansible_names_them(ansible_env: dict[str, str], name: str) -> None:
    from runner.planning.inventory import load_inventory

    done = _run(["ansible-inventory", "-i", str(HERE / name), "--list"], ansible_env)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    ours = load_inventory(HERE / name)
    theirs = {
        k for k, v in listed.items() if k != "_meta" and (v.get("hosts") or v.get("children"))
    }
    assert {k for k, g in ours.groups.items() if g.hosts or g.children} == theirs
    for group in theirs:
        if group != "all":  # ansible-inventory lists the hosts of `all` under their groups
            assert ours.groups[group].hosts == listed[group].get("hosts", []), group
        assert sorted(ours.groups[group].children) == sorted(listed[group].get("children", []))


def test_excluding_a_hyphenated_group_excludes_its_hosts(ansible_env: dict[str, str]) -> None:
    """The case that selected the very hosts it meant to leave out when `[lamp-db]` was
    read as `lamp_db`."""
    hosts = _runner_hosts(HERE / "lamp.ini", "all:!lamp-db", ansible_env)
    assert hosts and "192.168.2.6" not in hosts and "192.168.2.7" not in hosts
