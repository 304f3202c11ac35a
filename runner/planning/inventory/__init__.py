"""Ansible inventories, read unchanged: INI, YAML, directories, group_vars/ and host_vars/.

The goal is that a user's existing inventory selects the same hosts and yields the same
variables here as under ansible-core. Parsing follows ansible-core's `ini` and `yaml`
inventory plugins and `InventoryData.reconcile_inventory`; variable precedence follows
`VariableManager.get_vars` with the default `VARIABLE_PRECEDENCE`. Where Ansible only
warns (a group also used as a host name, a stray key in a YAML group), we refuse with
an `InventoryError`, since a typo silently dropping hosts is worse than a stop.

Merged variables are computed on demand and cached: a 10,000-host inventory costs
only the parse (and its group_vars/ and host_vars/ files) until someone asks for a
host's variables. Host names and connection variables are checked as they are read
(`hostnames.check_*`): a name reaches ~/.ssh/config's `Match exec` through a shell.

`model` holds the hosts, groups, variable merging and the builder both formats fill;
`load` reads files and directories; the formats are `ini_format` and `yaml_format`,
host name syntax `hostnames`, connection variables `connvars`, group_vars/ and
host_vars/ `vars_files`. Everything a caller needs is importable from here.
"""

from runner.planning.inventory.connvars import HostConnection
from runner.planning.inventory.hostnames import (
    expand_host_pattern,
    expand_hostname_range,
    parse_address,
)
from runner.planning.inventory.ini_format import parse_ini_value
from runner.planning.inventory.load import implicit_localhost, load_inventory
from runner.planning.inventory.model import (
    LOCALHOST_NAMES,
    Group,
    Host,
    Inventory,
    InventoryBuilder,
)
from runner.planning.inventory.vars_files import find_vars_files, load_vars_file

__all__ = [
    "LOCALHOST_NAMES",
    "Group",
    "Host",
    "HostConnection",
    "Inventory",
    "InventoryBuilder",
    "expand_host_pattern",
    "expand_hostname_range",
    "find_vars_files",
    "implicit_localhost",
    "load_inventory",
    "load_vars_file",
    "parse_address",
    "parse_ini_value",
]
