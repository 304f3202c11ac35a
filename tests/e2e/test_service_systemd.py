"""The `service` action against a real systemd, booted for the test as PID 1 of its own
PID and mount namespaces (this machine's PID 1 is not systemd).

The namespace's systemd starts only a target of the test's own (its /etc/systemd/system
is a tmpfs holding that target and one service, `runner-test.service`, a `sleep`), so
it touches none of the machine's services; the network is shared, so an sshd entered
into the namespace (`nsenter`) serves the steps, whose `systemctl` then talks to that
systemd. Skipped, saying why, where systemd does not come up in a namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet, FleetHost, descendants

BOOT_TIMEOUT = 60.0
UNIT = "runner-test"
TARGET = """[Unit]
Description=the runner tests' target
DefaultDependencies=no
"""
SERVICE = """[Unit]
Description=a service the runner tests start and stop
DefaultDependencies=no

[Service]
ExecStart=/bin/sleep infinity
ExecReload=/bin/true

[Install]
WantedBy=runner-test.target
"""
BOOT = """mount -t tmpfs tmpfs /etc/systemd/system
cp {units}/* /etc/systemd/system/
mount -t tmpfs tmpfs /run
mkdir -p /run/sshd
exec /lib/systemd/systemd --system --unit=runner-test.target
"""


class InNamespace(Fleet):
    """One sshd entered into the mount and PID namespaces of process `pid`."""

    def __init__(self, pid: int) -> None:
        super().__init__(1, prefix="sd")
        self.pid = pid

    def sshd_argv(self, host: FleetHost) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", "-p", *super().sshd_argv(host)]


def _in_namespace(pid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "-p", *argv], capture_output=True, text=True, timeout=30
    )


def _booted(unshare: subprocess.Popen[bytes]) -> int | None:
    """The namespace's systemd once `systemctl is-system-running` says running; None if
    it does not get there in BOOT_TIMEOUT."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline and unshare.poll() is None:
        children = descendants(unshare.pid)
        if children:
            state = _in_namespace(children[0], "systemctl", "is-system-running").stdout.strip()
            if state == "running":
                return children[0]
        time.sleep(0.2)
    return None


@pytest.fixture(scope="module")
def systemd_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """(the namespace's systemd PID, an inventory of its host `sd1`)."""
    missing = [tool for tool in ("unshare", "nsenter") if shutil.which(tool) is None]
    if missing or not Path("/lib/systemd/systemd").exists():
        pytest.skip(f"needs systemd, unshare and nsenter (missing: {missing or 'systemd'})")
    root = tmp_path_factory.mktemp("systemd")
    units = root / "units"
    units.mkdir()
    (units / "runner-test.target").write_text(TARGET)
    (units / f"{UNIT}.service").write_text(SERVICE)
    argv = ["unshare", "--pid", "--fork", "--mount-proc", "--mount", "sh", "-c"]
    unshare = subprocess.Popen(
        [*argv, BOOT.format(units=units)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pid = _booted(unshare)
        if pid is None:
            pytest.skip("systemd does not come up as PID 1 of a namespace on this machine")
        with InNamespace(pid) as host:
            yield pid, str(host.write_inventory(root / "hosts.ini"))
    finally:
        for pid in [*descendants(unshare.pid), unshare.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        unshare.wait()


def _statuses(proc: Any) -> list[str]:
    (job,) = json.loads(proc.stdout)["jobs"]
    (child,) = job["children"]
    return [step["status"] for step in child["steps"]]


def _run(cli: Any, inventory: str, *extra: str, **keys: Any) -> list[str]:
    options = ", ".join(f"{key}: {json.dumps(value)}" for key, value in keys.items())
    play = cli.playbook(
        f"""
        jobs:
          - name: services
            targets: sd1
            steps:
              - service: {{name: {UNIT}, {options}}}
                sudo: true
        """
    )
    proc = cli("run", play, "-i", inventory, "--format", "json", *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return _statuses(proc)


def _unit(pid: int) -> tuple[str, str]:
    """(is-active, is-enabled) of the test's unit, as that systemd says."""
    active = _in_namespace(pid, "systemctl", "is-active", UNIT).stdout.strip()
    enabled = _in_namespace(pid, "systemctl", "is-enabled", UNIT).stdout.strip()
    return active, enabled


def test_service_converges_on_a_real_systemd(cli, systemd_host):
    pid, inventory = systemd_host
    assert _unit(pid) == ("inactive", "disabled")
    wanted = {"state": "started", "enabled": True}
    assert _run(cli, inventory, "--check", **wanted) == ["changed"]
    assert _unit(pid) == ("inactive", "disabled")
    assert [_run(cli, inventory, **wanted) for _ in range(2)] == [["changed"], ["ok"]]
    assert _unit(pid) == ("active", "enabled")
    assert _run(cli, inventory, state="restarted") == ["changed"]
    assert _run(cli, inventory, state="reloaded") == ["changed"]
    assert _unit(pid) == ("active", "enabled")
    unwanted = {"state": "stopped", "enabled": False}
    assert [_run(cli, inventory, **unwanted) for _ in range(2)] == [["changed"], ["ok"]]
    assert _unit(pid) == ("inactive", "disabled")


def test_a_unit_systemd_does_not_know_fails_naming_it(cli, systemd_host):
    _, inventory = systemd_host
    play = cli.playbook(
        """
        jobs:
          - name: services
            targets: sd1
            steps:
              - service: {name: runner-no-such-unit, state: started}
        """
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "systemctl could not start runner-no-such-unit" in proc.stdout


def test_the_webserver_example_converges_on_a_real_systemd_and_apt(cli, systemd_host, tmp_path):
    """playbooks/webserver.yml as written, its variables pointed at the test's own package
    (a real .deb from a local apt repository, reached inside the namespace only) and unit:
    the first run changes every host and reloads through its handler, the second changes
    nothing (changed=0)."""
    from tests.e2e.test_package_service import PKG, AptRepo, _installed, _purge, dpkg_turn

    if shutil.which("dpkg-deb") is None:
        pytest.skip("needs dpkg-deb to build the test package")
    pid, inventory = systemd_host
    repo = AptRepo(tmp_path / "apt")
    repo.publish("1.0")
    conf_d = tmp_path / "apt.conf.d"
    conf_d.mkdir()
    (conf_d / "99runner-test").write_text(repo.config.read_text())
    webservers = tmp_path / "web.ini"
    hosts = [line for line in Path(inventory).read_text().splitlines() if line.startswith("sd1")]
    webservers.write_text("[webservers]\n" + "\n".join(hosts) + "\n")
    site = tmp_path / "site"
    extra = tmp_path / "extra.yml"
    extra.write_text(
        json.dumps(
            {
                "web_package": PKG,
                "web_service": UNIT,
                "web_root": str(site / "www"),
                "site_conf": str(site / "runner.conf"),
                "web_settings": str(site / "settings"),
            }
        )
    )
    example = Path(__file__).resolve().parents[2] / "playbooks" / "webserver.yml"
    run = ["run", str(example), "-i", str(webservers), "-e", f"@{extra}", "--format", "json"]
    with dpkg_turn():
        _purge()
        mounted = _in_namespace(pid, "mount", "--bind", str(conf_d), "/etc/apt/apt.conf.d")
        assert mounted.returncode == 0, mounted.stderr
        try:
            first = cli(*run)
            assert first.returncode == 0, first.stdout + first.stderr
            steps = {
                s["name"]: s["status"]
                for s in json.loads(first.stdout)["jobs"][0]["children"][0]["steps"]
            }
            assert steps["handler: reload the web server"] == "changed"
            assert all(status == "changed" for status in steps.values()), steps
            assert _installed() == "1.0"
            assert _unit(pid) == ("active", "enabled")
            assert "listen 8080;" in (site / "runner.conf").read_text()
            assert (site / "settings").read_text() == "HTTP_PORT=8080\n"
            assert "Served by sd1" in (site / "www" / "index.html").read_text()

            second = cli(*run)
            assert second.returncode == 0, second.stdout + second.stderr
            document = json.loads(second.stdout)
            assert document["stats"]["sd1"]["changed"] == 0
            statuses = [s["status"] for s in document["jobs"][0]["children"][0]["steps"]]
            assert set(statuses) == {"ok"} and len(statuses) == len(steps) - 1  # no handler
        finally:
            _in_namespace(pid, "umount", "/etc/apt/apt.conf.d")
            _in_namespace(pid, "systemctl", "disable", "--now", UNIT)
            _purge()
