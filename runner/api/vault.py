"""Where ansible-vault passwords come from: files, scripts, the terminal, the environment.

As Ansible: `--vault-password-file FILE` (its first line; an executable FILE is run and
its output read), `--ask-vault-pass` (asked on the terminal), `--vault-id LABEL@SOURCE`
(SOURCE a file, a script or `prompt`), and ANSIBLE_VAULT_PASSWORD_FILE when no option
names one. The passwords are installed for the planner of this process, which decrypts
as it reads (`runner.planning.vault`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

from runner.errors import UsageError
from runner.planning.vault import VaultSecret, use_secrets

ENV_PASSWORD_FILE = "ANSIBLE_VAULT_PASSWORD_FILE"
DEFAULT_LABEL = "default"
_SCRIPT_TIMEOUT = 60.0  # seconds a password script may take (it may ask a keyring)


def vault_secrets(
    password_files: Sequence[str] = (),
    ask: bool = False,
    vault_ids: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> list[VaultSecret]:
    """The passwords the options name, read now (a bad source is a UsageError, exit 5)."""
    env = os.environ if environ is None else environ
    sources = [(DEFAULT_LABEL, path, "--vault-password-file") for path in password_files]
    for vault_id in vault_ids:
        label, sep, source = vault_id.partition("@")
        sources.append(
            (label, source, "--vault-id") if sep else (DEFAULT_LABEL, label, "--vault-id")
        )
    if not sources and not ask and env.get(ENV_PASSWORD_FILE):
        sources.append((DEFAULT_LABEL, env[ENV_PASSWORD_FILE], ENV_PASSWORD_FILE))
    found = [VaultSecret(label, _password(source, option)) for label, source, option in sources]
    if ask:
        found.append(VaultSecret(DEFAULT_LABEL, _prompt("Vault password: ")))
    return found


def install(
    password_files: Sequence[str] = (), ask: bool = False, vault_ids: Sequence[str] = ()
) -> None:
    """Read the passwords the options name and have this process decrypt with them."""
    use_secrets(vault_secrets(password_files, ask, vault_ids))


def _password(source: str, option: str) -> bytes:
    """The password a source gives: asked, a script's output, or a file's first line."""
    if source == "prompt":
        return _prompt("Vault password: ")
    where = f"{option} {source}"
    if not source:
        raise UsageError(f"{option}: empty value: give a password file")
    if os.path.isfile(source) and os.access(source, os.X_OK):
        text = _run_script(source, where)
    else:
        try:
            with open(source, "rb") as handle:
                text = handle.read(1 << 20)
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "the name holds a NUL byte"
            raise UsageError(f"{where}: cannot read the password file: {why}") from None
    password = text.split(b"\n", 1)[0].rstrip(b"\r")
    if not password:
        raise UsageError(f"{where}: the vault password is empty")
    return password


def _run_script(path: str, where: str) -> bytes:
    """An executable password file's standard output, as Ansible runs it."""
    try:
        done = subprocess.run(
            [os.path.abspath(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_SCRIPT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UsageError(f"{where}: the password script did not end within a minute") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot run the password script: {exc.strerror}") from None
    if done.returncode != 0:
        raise UsageError(f"{where}: the password script exited with status {done.returncode}")
    return done.stdout


def _prompt(question: str) -> bytes:
    """A password typed on the terminal, not echoed (read from stdin, with getpass's own
    one-line warning, when there is no terminal: a pipe in CI)."""
    import getpass
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", getpass.GetPassWarning)  # a source line, not news
            return getpass.getpass(question).encode()
    except EOFError:
        print(file=sys.stderr)  # ends the prompt's line, so the error has its own
        raise UsageError("--ask-vault-pass: no password typed (end of input)") from None
