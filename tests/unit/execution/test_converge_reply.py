"""A package step's reply read back: the manager found once per host, and what changed."""

from __future__ import annotations

import subprocess

from runner.connections.local import LocalConnection
from runner.execution.actions import system as converge
from runner.execution.actions.reply import MARK, Reply


def _reply(rc: int, *marks: str, output: str = "") -> Reply:
    return Reply.read(rc, output + "".join(f"{MARK} {mark}\n" for mark in marks), "")


def test_the_manager_is_probed_once_per_connection_then_named_in_the_script() -> None:
    conn = LocalConnection()
    facts = converge.host_facts(conn)
    args = {"name": "curl"}
    first = converge.script("package", args, False, facts)
    assert "command -v" in first
    reply = _reply(0, "manager apt-get", "before curl 1.0", "after curl 1.0")
    assert converge.outcome("package", args, False, facts, reply).status == "ok"
    assert converge.host_facts(conn) == {"manager": "apt-get"}
    later = converge.script("package", args, False, converge.host_facts(conn))
    assert "command -v" not in later and "dnf -y" not in later
    assert converge.host_facts(LocalConnection()) == {}


def test_changed_only_when_a_version_moved_and_check_names_what_would() -> None:
    facts = {"manager": "apt-get"}
    args = {"name": ["a", "b"], "state": "latest"}
    moved = _reply(0, "before a 1.0", "before b -", "after a 1.1", "after b 2.0")
    assert converge.outcome("package", args, False, facts, moved).status == "changed"
    would = _reply(0, "before a 1.0", "before b -", "would a", "would b")
    done = converge.outcome("package", args, True, facts, would)
    assert (done.status, done.error) == ("changed", "check mode: would upgrade a, install b")
    none = _reply(0, "manager NONE")
    assert "no package manager found" in (
        converge.outcome("package", args, False, {}, none).error or ""
    )


def test_the_package_script_is_plain_posix_sh() -> None:
    for manager in ("", "apt-get", "dnf", "apk"):
        facts = {"manager": manager} if manager else {}
        text = converge.script("package", {"name": ["a"], "state": "latest"}, True, facts)
        assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0
    text = converge.script("service", {"name": "web", "state": "started"}, False, {})
    assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0
