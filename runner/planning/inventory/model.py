"""The inventory as data: hosts, groups, their merged variables, and the builder the
INI and YAML readers fill."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from runner.errors import InventoryError
from runner.planning.inventory.connvars import (
    SECRET_VARS,
    HostConnection,
    first,
    inventory_warnings,
    login_and_become,
    yes_no,
)
from runner.planning.inventory.hostnames import (
    check_connection,
    check_connection_var,
    check_hostname,
    check_port,
)
from runner.planning.inventory.vars_files import VarsFiles

# Names that Ansible treats as the controller itself when they are not in the inventory.
LOCALHOST_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass
class Host:
    """A host: its own inventory variables and every group it is in (ancestors too)."""

    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    implicit: bool = False
    origins: dict[str, str] = field(default_factory=dict)  # ansible_* variable -> FILE:LINE


@dataclass
class Group:
    """A group: hosts listed directly in it, child group names, and its own variables."""

    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)
    priority: int = 1
    depth: int = 0
    origins: dict[str, str] = field(default_factory=dict)  # ansible_* variable -> FILE:LINE


class Inventory:
    """Hosts and groups with Ansible's ordering, precedence and magic variables."""

    def __init__(
        self, hosts: dict[str, Host], groups: dict[str, Group], vars_dirs: list[str]
    ) -> None:
        self.hosts = hosts
        self.groups = groups
        self._vars_files = [VarsFiles(d) for d in vars_dirs]
        self._implicit: dict[str, Host] = {}
        self._group_hosts: dict[str, list[str]] = {}
        self._group_layer: dict[tuple[str, ...], dict[str, Any]] = {}
        self._merged: dict[str, dict[str, Any]] = {}

    def host(self, name: str) -> Host:
        """The host called `name`, or Ansible's implicit localhost for a localhost name."""
        found = self.hosts.get(name) or self.implicit_host(name)
        if found is None:
            raise InventoryError(f"no host named {name!r} in the inventory", path=name)
        return found

    def implicit_host(self, name: str) -> Host | None:
        """Ansible's implicit localhost for `localhost`/127.0.0.1/::1 (first such host wins)."""
        if name not in LOCALHOST_NAMES:
            return None
        for candidate in LOCALHOST_NAMES:
            if candidate in self.hosts:
                return self.hosts[candidate]
        if name not in self._implicit:
            local = {"ansible_connection": "local"}
            self._implicit[name] = Host(name, local, [], implicit=True)
        return self._implicit[name]

    def group_hosts(self, name: str) -> list[str]:
        """Every host of a group and its descendants, in Ansible's `get_hosts()` order."""
        cached = self._group_hosts.get(name)
        if cached is None:
            cached = self._group_hosts[name] = self._walk_group_hosts(name)
        return cached

    def _walk_group_hosts(self, name: str) -> list[str]:
        ordered = [name, *self.groups[name].children]
        seen = set(ordered)
        level = list(self.groups[name].children)
        while level:
            following: list[str] = []
            for group in level:
                for child in self.groups[group].children:
                    if child not in seen:
                        seen.add(child)
                        following.append(child)
            ordered.extend(following)
            level = following
        result: dict[str, None] = {}
        for group in ordered:
            result.update(dict.fromkeys(self.groups[group].hosts))
        return list(result)

    def groups_map(self) -> dict[str, list[str]]:
        """Ansible's `groups` variable: every group name to its hosts."""
        return {name: list(self.group_hosts(name)) for name in self.groups}

    def group_names(self, name: str) -> list[str]:
        """Ansible's `group_names`: the host's groups, sorted, without `all`."""
        return sorted(g for g in self.host(name).groups if g != "all")

    def host_vars(self, name: str) -> dict[str, Any]:
        """The host's variables merged as Ansible does (without magic variables)."""
        merged = self._merged.get(name)
        if merged is None:
            host = self.host(name)
            merged = dict(self._group_vars_for(host))
            merged.update(host.vars)
            for files in self._vars_files:
                merged.update(files.host(name))
            self._merged[name] = merged
        return dict(merged)

    def _group_vars_for(self, host: Host) -> dict[str, Any]:
        """all < groups by (depth, priority, name) < group_vars/all < group_vars/<group>."""
        key = tuple(sorted(g for g in host.groups if g != "all"))
        layer = self._group_layer.get(key)
        if layer is None:
            ordered = sorted(
                (self.groups[g] for g in key), key=lambda g: (g.depth, g.priority, g.name)
            )
            layer = dict(self.groups["all"].vars)
            for group in ordered:
                layer.update(group.vars)
            for files in self._vars_files:
                layer.update(files.group("all"))
            for files in self._vars_files:
                for group in ordered:
                    layer.update(files.group(group.name))
            self._group_layer[key] = layer
        return layer

    def connection(self, name: str) -> HostConnection:
        """How to connect to a host, from ansible_host/port/user/key file/connection, its
        password, become and jump host variables (`runner.planning.inventory.connvars`).

        Every value is checked again here, whatever source it came from: nothing that
        connects gets a name that could run a command."""
        merged = self.host_vars(name)
        port = first(merged, "ansible_port", "ansible_ssh_port")
        address = first(merged, "ansible_host", "ansible_ssh_host") or name
        try:
            return HostConnection(
                name=name,
                address=check_hostname(address),
                port=22 if port is None else check_port(port),
                user=_optional_str(first(merged, "ansible_user", "ansible_ssh_user")),
                key_file=_optional_str(
                    first(merged, "ansible_ssh_private_key_file", "ansible_private_key_file")
                ),
                connection=check_connection(merged.get("ansible_connection") or "ssh"),
                step_shell=yes_no(merged.get("runner_step_shell"), "runner_step_shell", True),
                **login_and_become(merged),
            )
        except ValueError as exc:
            raise InventoryError(str(exc), path=repr(name)) from None

    def warnings(self, hosts: Iterable[str] | None = None) -> list[str]:
        """One line per `ansible_*` variable (or ssh option) that runner does not use, said
        once per name where it is first set; only those reaching `hosts` when given (the
        hosts a --limit left), else the whole inventory's."""
        if hosts is None:
            names, groups = list(self.hosts), list(self.groups)
        else:
            names = [name for name in dict.fromkeys(hosts) if name in self.hosts]
            groups = list(dict.fromkeys(g for name in names for g in self.hosts[name].groups))
        return inventory_warnings(self._settings(names, groups))

    def _settings(self, names: list[str], groups: list[str]) -> Iterator[tuple[str, Any, str]]:
        """(variable, value, where it is set) for every variable of these groups and hosts."""
        for name in groups:
            group = self.groups[name]
            for key, value in group.vars.items():
                yield key, value, f"{group.origins.get(key, '')}: group {name}".lstrip(": ")
        for name in names:
            host = self.hosts[name]
            for key, value in host.vars.items():
                origin = host.origins.get(key) or host.vars.get("inventory_file") or ""
                yield key, value, f"{origin}: host {name}".lstrip(": ")
        for files in self._vars_files:
            yield from files.settings(groups, names)

    def secrets(self) -> list[str]:
        """Every password the inventory holds (`ansible_password`, `ansible_become_pass`...),
        for masking wherever a value is shown."""
        found = (m.get(key) for m in self._mappings() for key in SECRET_VARS)
        return list(dict.fromkeys(str(value) for value in found if value is not None))

    def _mappings(self) -> list[dict[str, Any]]:
        mappings = [g.vars for g in self.groups.values()] + [h.vars for h in self.hosts.values()]
        for files in self._vars_files:
            mappings.extend(files.loaded())
        return mappings


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------- building


class InventoryBuilder:
    """Accumulates hosts and groups as Ansible's InventoryData does, then reconciles."""

    def __init__(self) -> None:
        self.hosts: dict[str, Host] = {}
        self.groups: dict[str, Group] = {}
        self.vars_dirs: list[str] = []
        self._members: dict[str, set[str]] = {}  # each group's hosts, for a linear load
        self.source = ""
        self.line: int | None = None
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped")

    def error(self, message: str, path: str | None = None) -> InventoryError:
        return InventoryError(message, file=self.source, line=self.line, path=path)

    def add_group(self, name: str) -> str:
        if name not in self.groups:
            if name in self.hosts:
                raise self.error("name is used for both a host and a group", path=name)
            self.groups[name] = Group(name)
        return name

    def add_host(self, name: str, group: str | None, port: int | None = None) -> Host:
        host = self.hosts.get(name)
        if host is None:
            self._check_name(name, port)
            if name in self.groups:
                raise self.error("name is used for both a group and a host", path=name)
            host = self.hosts[name] = Host(name)
            if port:
                host.vars["ansible_port"] = int(port)
            host.vars["inventory_file"] = self.source
            host.vars["inventory_dir"] = os.path.dirname(self.source)
        if group:
            members = self._members.get(group)
            if members is None:
                members = self._members[group] = set(self.groups[group].hosts)
            if name not in members:
                members.add(name)
                self.groups[group].hosts.append(name)
        return host

    def _check_name(self, name: str, port: int | None) -> None:
        try:
            check_hostname(name)
        except ValueError as exc:
            raise self.error(str(exc)) from None
        try:
            if port is not None:
                check_port(port)
        except ValueError as exc:
            raise self.error(f"port {exc}", path=name) from None

    def add_hosts(
        self,
        names: list[str],
        group: str,
        port: int | None,
        variables: dict[str, Any],
        lines: dict[str, int] | None = None,
    ) -> None:
        """The hosts of one inventory entry, each with the entry's variables (`lines`:
        the line of each variable, where the format knows it)."""
        hosts = [self.add_host(name, group, port) for name in names]
        self.check_vars(variables, names[0] if names else group, lines)
        origins = self._origins(variables, lines)
        for host in hosts:
            host.vars.update(variables)
            host.origins.update(origins)

    def _origins(self, variables: dict[str, Any], lines: dict[str, int] | None) -> dict[str, str]:
        """FILE:LINE of each `ansible_*` variable being set, for warnings that say where."""
        return {
            key: f"{self.source}:{(lines or {}).get(key, self.line)}"
            for key in variables
            if isinstance(key, str) and key.startswith("ansible_")
        }

    def check_vars(
        self, variables: dict[str, Any], where: str, lines: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """`variables`, once every connection variable in them is one runner accepts."""
        for key, value in variables.items():
            try:
                check_connection_var(key, value)
            except ValueError as exc:
                self.line = (lines or {}).get(key, self.line)
                raise self.error(str(exc), path=where) from None
        return variables

    def set_group_var(self, group: str, key: str, value: Any) -> None:
        if key != "ansible_group_priority":
            self.groups[group].vars.update(self.check_vars({key: value}, group))
            self.groups[group].origins.update(self._origins({key: value}, None))
            return
        try:
            self.groups[group].priority = int(value)
        except (TypeError, ValueError):
            raise self.error(f"ansible_group_priority is not a number: {value!r}", group) from None

    def add_child(self, parent: str, child: str) -> None:
        if child not in self.groups:
            raise self.error(f"{child!r} is not a known group", path=parent)
        if parent == child or child in self._ancestors(parent):
            raise self.error(f"adding group {child!r} to {parent!r} makes a loop", path=parent)
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
        if parent not in self.groups[child].parents:
            self.groups[child].parents.append(parent)

    def _ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[name].parents)
        while todo:
            group = todo.pop()
            if group not in seen:
                seen.add(group)
                todo.extend(self.groups[group].parents)
        return seen

    def finish(self) -> Inventory:
        """Ansible's reconcile: top groups under `all`, `ungrouped` fixed, depths, memberships."""
        for name, group in self.groups.items():
            if name != "all" and not group.parents:
                self.add_child("all", name)
        depths: dict[str, int] = {}
        for name in self.groups:
            self.groups[name].depth = self._depth(name, depths)
        ancestry = {name: self._ancestors(name) for name in self.groups}
        direct: dict[str, list[str]] = {name: [] for name in self.hosts}
        for group in self.groups.values():
            for host in group.hosts:
                direct[host].append(group.name)
        ungrouped = self.groups["ungrouped"]
        leaving = {
            name
            for name, host in self.hosts.items()
            if self._place(host, direct[name], ancestry, ungrouped)
        }
        if leaving:
            ungrouped.hosts[:] = [name for name in ungrouped.hosts if name not in leaving]
        return Inventory(self.hosts, self.groups, self.vars_dirs)

    def _place(
        self, host: Host, direct: list[str], ancestry: dict[str, set[str]], ungrouped: Group
    ) -> bool:
        """Set the host's groups; True if it leaves `ungrouped` for a group of its own."""
        memberships: dict[str, None] = {}
        leaves = False
        for group in direct:
            memberships.update(dict.fromkeys(sorted(ancestry[group])))
            memberships[group] = None
        if "ungrouped" in memberships and set(memberships) - {"all", "ungrouped"}:
            leaves = True
            del memberships["ungrouped"]
        elif not set(memberships) - {"all"}:
            ungrouped.hosts.append(host.name)
            memberships.update({"all": None, "ungrouped": None})
        host.groups = list(memberships)
        return leaves

    def _depth(self, name: str, depths: dict[str, int]) -> int:
        if name not in depths:
            parents = self.groups[name].parents
            depths[name] = max((self._depth(p, depths) + 1 for p in parents), default=0)
        return depths[name]
