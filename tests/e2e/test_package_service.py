"""The `package` and `service` actions over real sshd, checked by what a user gets back.

package: a real .deb built here (runner-test-pkg 1.0, then 1.1) served from a local file
repository that only the test's steps see (their `env` names an APT_CONFIG of their own:
its sources, lists and cache; the machine's apt configuration is left as it was), then
installed, upgraded and removed for real through apt-get and dpkg on the fleet's host.

service: this machine has no running systemd (PID 1 is not systemd), which is the real
failure tested here; test_service_systemd.py boots a real one in a namespace. The same
logic is tested here against a stand-in `systemctl` (a small sh script keeping each
unit's state in files) on an sshd of its own, started in a private mount namespace where
the stand-in is bind-mounted over /usr/bin/systemctl and /run/systemd/system exists: the
playbook is the one a user writes, and this runs wherever the fleet does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet, FleetHost

PKG = "runner-test-pkg"
VERSION_FILE = Path(f"/usr/share/{PKG}/version")


def _statuses(proc: Any) -> list[str]:
    """The status of each step of the only child, from `--format json`."""
    document = json.loads(proc.stdout)
    (job,) = document["jobs"]
    (child,) = job["children"]
    return [step["status"] for step in child["steps"]]


def _recap(proc: Any, host: str = "host1") -> dict[str, int]:
    """A host's row of the recap a run prints: ok, changed, failed... counts."""
    lines = proc.stdout.splitlines()
    header = lines[next(i for i, line in enumerate(lines) if line.startswith("host "))].split()
    row = next(line.split() for line in lines if line.startswith(f"{host} "))
    return {key: int(value) for key, value in zip(header[1:], row[1:], strict=True)}


def _installed() -> str | None:
    """The installed version of the test package, as dpkg knows it, or None."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status} ${Version}", PKG], capture_output=True, text=True
    )
    if proc.returncode != 0 or not proc.stdout.startswith("install ok installed"):
        return None
    return proc.stdout.split()[-1]


def _purge() -> None:
    subprocess.run(["dpkg", "--purge", PKG], capture_output=True)


class AptRepo:
    """A local file apt repository of the test package, and an APT_CONFIG to reach it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pool = root / "repo"
        self.pool.mkdir(parents=True)
        self.stanzas: list[str] = []
        for sub in ("lists/partial", "cache/archives/partial"):
            (root / sub).mkdir(parents=True)
        (root / "sources.list").write_text(f"deb [trusted=yes] file:{self.pool} ./\n")
        self.config = root / "apt.conf"
        self.config.write_text(
            f'Dir::Etc::sourcelist "{root}/sources.list";\n'
            'Dir::Etc::sourceparts "-";\n'
            f'Dir::State::Lists "{root}/lists";\n'
            f'Dir::Cache "{root}/cache";\n'
            'APT::Sandbox::User "root";\n'
        )

    def publish(self, version: str) -> None:
        """Build the test package at `version` and write the repository's index again
        (the Packages format: each package's control fields, its file, size and sum)."""
        tree = self.root / f"build-{version}"
        (tree / "DEBIAN").mkdir(parents=True)
        control = (
            f"Package: {PKG}\nVersion: {version}\nArchitecture: all\n"
            "Maintainer: runner tests <tests@localhost>\n"
            "Description: a package the runner's tests install and remove\n"
        )
        (tree / "DEBIAN" / "control").write_text(control)
        share = tree / VERSION_FILE.relative_to("/")
        share.parent.mkdir(parents=True)
        share.write_text(version + "\n")
        deb = self.pool / f"{PKG}_{version}_all.deb"
        build = ["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)]
        subprocess.run(build, check=True, capture_output=True)
        data = deb.read_bytes()
        self.stanzas.append(
            f"{control}Filename: ./{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
        (self.pool / "Packages").write_text("\n".join(self.stanzas))


@contextlib.contextmanager
def dpkg_turn() -> Iterator[None]:
    """This test's turn at the machine's dpkg: the test package is installed machine-wide,
    and tests in other processes (pytest-xdist) install and purge it too."""
    with open(os.path.join(tempfile.gettempdir(), "runner-tests-dpkg.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def apt_repo(tmp_path: Path) -> Iterator[AptRepo]:
    """The repository with version 1.0 published; the package is purged before and after."""
    missing = [tool for tool in ("dpkg-deb", "apt-get") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to build and serve a test package")
    with dpkg_turn():
        _purge()
        repo = AptRepo(tmp_path / "apt")
        repo.publish("1.0")
        try:
            yield repo
        finally:
            _purge()


def _package_play(cli: Any, repo: AptRepo, state: str, update: bool = True) -> str:
    return cli.playbook(
        f"""
        jobs:
          - name: packages
            targets: host1
            steps:
              - package: {{name: {PKG}, state: {state}, update_cache: {str(update).lower()}}}
                sudo: true
                env: {{APT_CONFIG: "{repo.config}"}}
        """
    )


def _twice(cli: Any, inventory: str, play: str) -> list[list[str]]:
    """The step statuses of two runs of `play`, each of which must succeed."""
    runs = [cli("run", play, "-i", inventory, "--format", "json") for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stdout + runs[0].stderr
    return [_statuses(r) for r in runs]


def test_package_present_latest_absent_converge_on_a_real_deb(cli, inventory, apt_repo):
    assert _twice(cli, inventory, _package_play(cli, apt_repo, "present")) == [["changed"], ["ok"]]
    assert _installed() == "1.0"
    assert VERSION_FILE.read_text() == "1.0\n"

    apt_repo.publish("1.1")
    assert _twice(cli, inventory, _package_play(cli, apt_repo, "latest")) == [["changed"], ["ok"]]
    assert _installed() == "1.1"
    assert VERSION_FILE.read_text() == "1.1\n"

    absent = _package_play(cli, apt_repo, "absent", update=False)
    assert _twice(cli, inventory, absent) == [["changed"], ["ok"]]
    assert _installed() is None
    assert not VERSION_FILE.exists()


def test_package_check_reports_what_would_change_and_changes_nothing(cli, inventory, apt_repo):
    # --check does not refresh the lists: they are read as a previous run left them.
    real = cli("run", _package_play(cli, apt_repo, "absent"), "-i", inventory)
    assert real.returncode == 0, real.stdout + real.stderr
    present = _package_play(cli, apt_repo, "present", update=False)
    checked = cli("run", present, "-i", inventory, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert _recap(checked) == {**_recap(real), "ok": 0, "changed": 1}
    assert f"would install {PKG}" in checked.stdout
    assert _installed() is None

    cli("run", present, "-i", inventory, check=True)
    apt_repo.publish("1.1")
    cli("run", _package_play(cli, apt_repo, "present"), "-i", inventory, check=True)
    latest = _package_play(cli, apt_repo, "latest", update=False)
    checked = cli("run", latest, "-i", inventory, "--check", "--format", "json")
    assert _statuses(checked) == ["changed"]
    absent = _package_play(cli, apt_repo, "absent", update=False)
    checked = cli("run", absent, "-i", inventory, "--check", "--format", "json")
    assert _statuses(checked) == ["changed"]
    assert _installed() == "1.0"


@pytest.mark.parametrize(
    ("name", "vars_"),
    [("'x; touch /tmp/runner-pwned'", "{}"), ("'{{ evil }}'", "{evil: '--force-yes'}")],
    ids=["written", "rendered"],
)
def test_a_hostile_package_name_is_refused_at_its_key(cli, inventory, tmp_path, name, vars_):
    play = cli.playbook(
        f"""
        vars: {vars_}
        jobs:
          - name: packages
            targets: host1
            steps:
              - run: touch {tmp_path}/ran
              - package: {{name: [curl, {name}]}}
        """
    )
    command = ("validate", play) if "evil" not in name else ("run", play, "-i", inventory)
    proc = cli(*command)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{play}:8:"), proc.stderr
    assert "jobs[0].steps[1].package.name[1]: " in lines[0] and "not a package name" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "ran").exists()


def test_service_on_a_host_without_systemd_fails_with_one_clear_line(cli, inventory):
    play = cli.playbook(
        """
        jobs:
          - name: services
            targets: host1
            steps:
              - service: {name: cron, state: started, enabled: true}
                sudo: true
        """
    )
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    why = "no running systemd on this host: /run/systemd/system is absent"
    assert why in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    shown = cli("job", "show", "2", check=True).stdout
    assert any("failed" in line and why in line for line in shown.splitlines()), shown


# A stand-in for systemctl: units are files under its state directory; each one's
# `active` and `enabled` files say so; every call that acts is logged.
STAND_IN = r"""#!/bin/sh
dir=@STATE@
[ "$1" = --quiet ] && { quiet=1; shift; }
verb=$1; [ "$2" = --quiet ] && { quiet=1; shift; }; unit=$2
[ -d "$dir/$unit" ] || { echo "Unit $unit.service could not be found." >&2; exit 5; }
say() { [ -n "$quiet" ] || echo "$1"; }
case $verb in
    is-active) [ -e "$dir/$unit/active" ] && { say active; exit 0; }; say inactive; exit 3 ;;
    is-enabled) [ -e "$dir/$unit/enabled" ] && { say enabled; exit 0; }; say disabled; exit 1 ;;
esac
echo "$verb $unit" >> "$dir/calls"
case $verb in
    start|restart) touch "$dir/$unit/active" ;;
    reload) [ -e "$dir/$unit/active" ] || exit 7 ;;
    stop) rm -f "$dir/$unit/active" ;;
    enable) touch "$dir/$unit/enabled" ;;
    disable) rm -f "$dir/$unit/enabled" ;;
    *) echo "unknown verb $verb" >&2; exit 1 ;;
esac
"""


class StandInHost(Fleet):
    """One sshd in a private mount namespace where systemd looks booted
    (/run/systemd/system exists) and /usr/bin/systemctl is the stand-in."""

    def __init__(self, systemctl: Path) -> None:
        super().__init__(1, prefix="svc")
        self.systemctl = systemctl

    def sshd_argv(self, host: FleetHost) -> list[str]:
        setup = (
            "mount -t tmpfs -o size=1m tmpfs /run/systemd && mkdir /run/systemd/system && "
            f'mount --bind {self.systemctl} /usr/bin/systemctl && exec "$@"'
        )
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            setup,
            "sh",
            *super().sshd_argv(host),
        ]


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(the stand-in's state directory, an inventory of its host `svc1`)."""
    if not (Path("/run/systemd").is_dir() and Path("/usr/bin/systemctl").exists()):
        pytest.skip("needs /run/systemd and /usr/bin/systemctl to mount over")
    root = tmp_path_factory.mktemp("systemd-stand-in")
    state = root / "state"
    state.mkdir()
    systemctl = root / "systemctl"
    systemctl.write_text(STAND_IN.replace("@STATE@", str(state)))
    systemctl.chmod(0o755)
    with StandInHost(systemctl) as host:
        yield state, str(host.write_inventory(root / "hosts.ini"))


def _unit(state: Path, name: str) -> Path:
    """A fresh unit `name` of the stand-in: inactive, disabled, no calls logged."""
    shutil.rmtree(state / name, ignore_errors=True)
    (state / name).mkdir()
    (state / "calls").write_text("")
    return state / name


def _service_play(cli: Any, unit: str, **keys: Any) -> str:
    options = ", ".join(f"{key}: {json.dumps(value)}" for key, value in keys.items())
    return cli.playbook(
        f"""
        jobs:
          - name: services
            targets: svc1
            steps:
              - service: {{name: {unit}, {options}}}
                sudo: true
        """
    )


def test_service_converges_through_systemctl(cli, stand_in):
    state, inventory = stand_in
    web = _unit(state, "web")
    started = _service_play(cli, "web", state="started", enabled=True)
    assert _twice(cli, inventory, started) == [["changed"], ["ok"]]
    assert (web / "active").exists() and (web / "enabled").exists()
    assert (state / "calls").read_text() == "enable web\nstart web\n"

    restarted = _service_play(cli, "web", state="restarted")
    assert _twice(cli, inventory, restarted) == [["changed"], ["changed"]]
    reloaded = _service_play(cli, "web", state="reloaded")
    assert _twice(cli, inventory, reloaded) == [["changed"], ["changed"]]

    stopped = _service_play(cli, "web", state="stopped", enabled=False)
    assert _twice(cli, inventory, stopped) == [["changed"], ["ok"]]
    assert not (web / "active").exists() and not (web / "enabled").exists()


def test_service_check_reports_and_changes_nothing(cli, stand_in):
    state, inventory = stand_in
    web = _unit(state, "web")
    play = _service_play(cli, "web", state="started", enabled=True)
    proc = cli("run", play, "-i", inventory, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _recap(proc, "svc1")["changed"] == 1
    assert "would enable web, start web" in proc.stdout
    assert (state / "calls").read_text() == ""
    assert list(web.iterdir()) == []


def test_service_of_an_unknown_unit_fails_naming_it(cli, stand_in):
    state, inventory = stand_in
    _unit(state, "web")
    proc = cli("run", _service_play(cli, "nope", state="started"), "-i", inventory)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "systemctl could not start nope" in proc.stdout
    assert "could not be found" in proc.stdout
