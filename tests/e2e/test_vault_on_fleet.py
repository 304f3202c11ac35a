"""ansible-vault values on the real sshd fleet: an inline `!vault` in a playbook's `vars:`
and a wholly encrypted group_vars file beside the fleet's inventory reach the targets,
while everything runner shows of the run holds them masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import Cli
from tests.vault_made import API_KEY, MASK, PASSWORD, SECRET, Made, indented, make_all


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return make_all(tmp_path_factory.mktemp("ansible-vault"))


def test_vault_values_reach_the_targets_and_show_masked(
    cli: Cli, inventory: str, tmp_path: Path, made: Made
) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "fleet.yml").write_text(made.vars_file)  # db_password
    remote = tmp_path / "remote"
    remote.mkdir()
    play = cli.playbook(
        f"""
jobs:
  - name: deploy
    targets: host1:host2
    vars:
{indented(made.inline["api_key"], 6)}
    steps:
      - run: echo {{{{ db_password }}}} {{{{ api_key }}}} > {remote}/{{{{ inventory_hostname }}}}
      - run: echo "db={{{{ db_password }}}} key={{{{ api_key }}}}"
"""
    )
    (cli.cwd / "pass").write_text(PASSWORD + "\n")
    proc = cli("run", play, "-i", inventory, "--vault-password-file", "pass")
    assert proc.returncode == 0, proc.output
    for host in ("host1", "host2"):
        assert (remote / host).read_text() == f"{SECRET} {API_KEY}\n"
    assert SECRET not in proc.output and API_KEY not in proc.output
    assert MASK in proc.stdout
    shown = cli("job", "show", "1", check=True).stdout
    shown += "".join(cli("job", "show", str(child), check=True).stdout for child in (2, 3))
    assert SECRET not in shown and API_KEY not in shown and MASK in shown
    received = cli("job", "receive", "1", check=True).stdout
    assert sorted(received.splitlines()) == [
        f"[{h}] db={MASK} key={MASK}" for h in ("host1", "host2")
    ]
