"""ansible-vault values on the real sshd fleet: an inline `!vault` in a playbook's `vars:`
and a wholly encrypted group_vars file beside the fleet's inventory reach the targets,
while everything runner shows of the run holds them masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import Cli
from tests.vault_made import API_KEY, MASK, PASSWORD, SECRET, Made, indented, make_all
from tests.workers import distributed_env, workers


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


def test_workers_decrypt_with_their_own_password_as_none_crosses_the_broker(
    cli: Cli, inventory: str, tmp_path: Path, made: Made, pg_url: str, redis_url: str
) -> None:
    cli.env = distributed_env(cli.env, pg_url, redis_url)
    out = tmp_path / "written.txt"
    play = cli.playbook(
        f"""
jobs:
  - name: deploy
    targets: host1
    vars:
{indented(made.inline["db_password"], 6)}
    steps:
      - run: echo {{{{ db_password }}}} > {out}; echo "db={{{{ db_password }}}}"
"""
    )
    password = cli.cwd / "pass"
    password.write_text(PASSWORD + "\n")
    for name in ("bare", "keyed"):
        (tmp_path / name).mkdir()

    with workers(pg_url, redis_url, tmp_path / "bare", 1):  # no password of its own
        proc = cli("run", play, "-i", inventory, "--vault-password-file", str(password))
    assert proc.returncode == 2, proc.output
    assert not out.exists()
    child = next(job for job in cli.jobs("--children") if job.get("ParentId") == 1)
    assert "encrypted with ansible-vault" in child["Reason"], child

    keyed = ("--vault-password-file", str(password))
    with workers(pg_url, redis_url, tmp_path / "keyed", 1, *keyed):
        proc = cli("run", play, "-i", inventory, "--vault-password-file", str(password))
    assert proc.returncode == 0, proc.output
    assert out.read_text() == SECRET + "\n"
    assert SECRET not in proc.output
    assert cli("job", "receive", "3", check=True).stdout == f"db={MASK}\n"
