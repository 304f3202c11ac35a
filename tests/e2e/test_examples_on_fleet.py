"""The example playbooks run unchanged against real sshd hosts standing in for the
groups of inventory/local.ini (webservers, dbservers, prod)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleet import job_dir_beside

ROOT = Path(__file__).resolve().parents[2]
# webserver.yml installs packages and starts services: it runs on a host with systemd
# (tests/e2e/test_service_systemd.py).
PLAYBOOKS = [p for p in sorted((ROOT / "playbooks").glob("*.yml")) if p.name != "webserver.yml"]


@pytest.fixture
def fleet_inventory(fleet, tmp_path):
    (_, a1, port), (_, a2, _), (_, a3, _) = fleet.hosts[:3]
    jobs = f"runner_job_dir={job_dir_beside(tmp_path / 'fleet.ini')}"
    common = (
        f"ansible_port={port} ansible_user=root"
        f" ansible_ssh_private_key_file={fleet.client_key} {jobs}"
    )
    path = tmp_path / "fleet.ini"
    path.write_text(
        f"localhost ansible_connection=local {jobs}\n"
        f"[webservers]\nweb1 ansible_host={a1} {common}\nweb2 ansible_host={a2} {common}\n"
        f"[dbservers]\ndb1 ansible_host={a3} {common}\n"
        "[prod:children]\nwebservers\ndbservers\n"
    )
    return str(path)


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_example_runs_over_ssh(playbook, cli, fleet_inventory):
    proc = cli("run", str(playbook), "-i", fleet_inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [str(j["Id"]) for j in cli.jobs()]
    cli("job", "wait", *ids, "--force", "--timeout", "60", check=True)  # detached ones too
    jobs = cli.jobs("--children")
    assert jobs and {j["State"] for j in jobs} == {"Completed"}
    assert "RECAP" in proc.stdout
