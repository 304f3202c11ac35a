"""`ConnectionSpec`: how to reach a host, as the job store keeps it (JSON, no passwords)
and as a later invocation reads it back, from a store written by this runner or by an
older one."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.api.plans import plan
from runner.connections.base import ConnectionSpec, JumpHost
from runner.execution.executor import RunOptions
from runner.execution.sessions import SessionPool
from runner.jobs.store import JobStore

# The stored form of a child's connection, as every store so far holds it.
STORED = {
    "connection": "ssh",
    "address": "10.0.0.5",
    "port": 2200,
    "user": "deploy",
    "key_file": "/keys/id_web",
    "connect_timeout": 7.0,
    "step_shell": True,
    "become": True,
    "become_user": "postgres",
    "jump": [
        {"address": "jump1.invalid", "port": 2222, "user": "bastion", "key_file": "/keys/id_web"},
        {"address": "jump2.invalid", "port": 22, "user": "deploy", "key_file": "/keys/id_web"},
    ],
    "proxy_command": None,
}


@pytest.fixture
def planned(tmp_path: Path) -> SessionPool:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "web1.invalid ansible_host=10.0.0.5 ansible_port=2200 ansible_user=deploy"
        " ansible_ssh_private_key_file=/keys/id_web ansible_password=s3cret"
        " ansible_become=true ansible_become_user=postgres ansible_become_password=t0p"
        " ansible_ssh_common_args='-J bastion@jump1.invalid:2222,jump2.invalid'\n"
    )
    playbook = tmp_path / "play.yml"
    playbook.write_text("jobs:\n  - name: a\n    targets: all\n    steps:\n      - run: 'true'\n")
    return SessionPool(plan(str(playbook), str(inventory)), RunOptions(connect_timeout=7.0))


def test_a_childs_spec_is_stored_in_the_form_stores_have_always_held(
    planned: SessionPool,
) -> None:
    assert planned.spec("web1.invalid").to_json() == STORED


def test_the_stored_spec_holds_no_password_but_the_one_to_connect_with_does(
    planned: SessionPool,
) -> None:
    from runner.execution.sessions import connection_spec

    full = connection_spec(planned.plan, "web1.invalid", None, 7.0)
    assert (full.password, full.become_password) == ("s3cret", "t0p")
    stored = planned.spec("web1.invalid")
    assert (stored.password, stored.become_password) == (None, None)
    assert "s3cret" not in repr(full) and "t0p" not in repr(full)


def test_a_spec_round_trips_through_a_real_job_store(tmp_path: Path) -> None:
    spec = ConnectionSpec(
        address="10.0.0.5",
        port=2200,
        user="deploy",
        connect_timeout=3.5,
        step_shell=False,
        jump=(JumpHost("jump1.invalid", 2222, "bastion", "/keys/id"),),
        proxy_command="nc %h %p",
    )
    store = JobStore(tmp_path / "jobs.db")
    try:
        job = store.create_job("a", "remote", "true", "web1", spec={"connection": spec.to_json()})
        read = ConnectionSpec.from_json(store.get(job).spec["connection"])
    finally:
        store.close()
    assert read == spec


def test_an_older_stores_spec_reads_with_defaults_for_what_it_lacks() -> None:
    old = {
        "connection": "ssh",
        "address": "127.0.0.1",
        "port": 2022,
        "user": "root",
        "key_file": None,
        "connect_timeout": 5,
    }
    read = ConnectionSpec.from_json(old)
    assert (read.address, read.port, read.user, read.connect_timeout) == (
        "127.0.0.1",
        2022,
        "root",
        5,
    )
    assert read.step_shell and not read.become and read.jump == () and read.password is None
    assert ConnectionSpec.from_json(STORED).jump[1] == JumpHost(
        "jump2.invalid", 22, "deploy", "/keys/id_web"
    )
    assert ConnectionSpec.from_json({"connection": "local"}).connection == "local"


def test_a_key_a_newer_store_adds_is_ignored() -> None:
    newer = dict(STORED, compression=True)
    newer["jump"] = [dict(STORED["jump"][0], agent=True)]
    read = ConnectionSpec.from_json(newer)
    assert read.address == "10.0.0.5" and read.jump[0].user == "bastion"
