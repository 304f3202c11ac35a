"""Where the runner keeps its state: RUNNER_HOME and the files inside it.

One source of truth for the location (see the README): ``$RUNNER_HOME``, else
``$XDG_STATE_HOME/runner``, else ``~/.local/state/runner``. The directory holds job
metadata and output, which may include secrets, so it is created private (0700).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from runner.errors import StoreError

STORE_FILE = "jobs.db"
KNOWN_HOSTS_FILE = "known_hosts"
CACHE_DIR = "cache"


def runner_home(env: Mapping[str, str] | None = None) -> Path:
    """The runner's state directory, created with mode 0700 if it does not exist yet.

    An existing directory keeps its mode: the user chose it. Empty variables count as
    unset, and a relative ``XDG_STATE_HOME`` is ignored, as the XDG spec says.
    """
    env = os.environ if env is None else env
    home = _resolve_home(env)
    if not home.is_dir():
        try:
            home.parent.mkdir(parents=True, exist_ok=True)
            home.mkdir(mode=0o700)
        except FileExistsError:
            return home  # another runner process created it just now
        except OSError as error:
            raise StoreError(
                home,
                f"cannot create the runner's state directory: {error.strerror};"
                " set RUNNER_HOME to a writable directory",
            ) from None
        home.chmod(0o700)  # mkdir's mode is reduced by the umask
    return home


def _resolve_home(env: Mapping[str, str]) -> Path:
    """Pick the directory from the environment without touching the file system."""
    explicit = env.get("RUNNER_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "runner"
    return Path(env.get("HOME") or Path.home()).expanduser() / ".local" / "state" / "runner"


def store_path(env: Mapping[str, str] | None = None) -> Path:
    """The job store's file: ``runner_home()/jobs.db``."""
    return runner_home(env) / STORE_FILE


def store_location(env: Mapping[str, str] | None = None) -> str:
    """The job store: ``$RUNNER_STORE`` (``sqlite:///PATH`` or ``postgresql://...``), else
    the file ``runner_home()/jobs.db``. `--store URL` sets the variable for a command."""
    env = os.environ if env is None else env
    return env.get("RUNNER_STORE") or str(store_path(env))


def broker_url(env: Mapping[str, str] | None = None) -> str | None:
    """The broker that hands child jobs to workers: ``$RUNNER_BROKER`` (``redis://...``),
    or None (children run in this process). `--broker URL` sets it for a command."""
    env = os.environ if env is None else env
    return env.get("RUNNER_BROKER") or None


def heartbeat_timeout(env: Mapping[str, str] | None = None) -> float:
    """How long a controller or worker may be silent before its jobs are taken for lost:
    ``$RUNNER_HEARTBEAT_TIMEOUT`` seconds (3 to 30), 30 by default."""
    env = os.environ if env is None else env
    try:
        value = float(env.get("RUNNER_HEARTBEAT_TIMEOUT") or 30)
    except ValueError:
        value = 30.0
    return min(30.0, max(3.0, value))


def known_hosts_path(env: Mapping[str, str] | None = None) -> Path:
    """The runner's own known_hosts file: ``runner_home()/known_hosts``."""
    return runner_home(env) / KNOWN_HOSTS_FILE


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where what only saves time is kept: ``runner_home()/cache`` (may not exist yet)."""
    return runner_home(env) / CACHE_DIR
