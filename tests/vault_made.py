"""Values made by the real `ansible-vault` (from ansible-core, in the test extra), for the
tests of runner's reading of them: made once per module, as each call takes seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ANSIBLE_VAULT = str(Path(sys.executable).parent / "ansible-vault")
SECRET = "s3cret-Value-42"
API_KEY = "key-Value-77"
TOKEN = "tok-Value-99"
PASSWORD = "correct horse"
PROD_PASSWORD = "prod password"
MASK = "********"


def ansible_vault(where: Path, *args: str) -> str:
    """Run the real `ansible-vault` in `where` and return its standard output."""
    env = {**os.environ, "ANSIBLE_HOME": str(where / ".ansible")}
    proc = subprocess.run(
        [ANSIBLE_VAULT, *args], cwd=where, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def password_file(where: Path, password: str = PASSWORD, name: str = "vault-pass") -> Path:
    path = where / name
    path.write_text(password + "\n")
    return path


def prod_script(where: Path) -> Path:
    """An executable password file: its output is the `prod` vault id's password."""
    script = where / "prod-pass.sh"
    script.write_text(f"#!/bin/sh\necho '{PROD_PASSWORD}'\n")
    script.chmod(0o700)
    return script


def entries(yaml_text: str) -> dict[str, str]:
    """`ansible-vault encrypt_string` output, NAME -> its `NAME: !vault |` lines."""
    found: dict[str, str] = {}
    for line in yaml_text.splitlines():
        if line and not line[0].isspace():
            name = line.split(":", 1)[0]
            found[name] = ""
        found[name] += line + "\n"
    return found


@dataclass(frozen=True)
class Made:
    """What the real ansible-vault made, once for the module (it takes seconds a call)."""

    inline: dict[str, str]  # db_password and api_key, 1.1, PASSWORD
    prod: str  # db_password, 1.2 with vault id 'prod', PROD_PASSWORD
    vars_file: str  # a vars file encrypted whole, 1.1, PASSWORD
    ini_inventory: str  # an INI inventory encrypted whole: box1, local, token=TOKEN


def make_all(where: Path) -> Made:
    """Every value the tests decrypt, made by the real ansible-vault in `where`."""
    pw, script = password_file(where), prod_script(where)
    inline = ansible_vault(
        where,
        "encrypt_string",
        "--vault-password-file",
        str(pw),
        "--name",
        "db_password",
        "--name",
        "api_key",
        SECRET,
        API_KEY,
    )
    prod = ansible_vault(
        where, "encrypt_string", "--vault-id", f"prod@{script}", SECRET, "--name", "db_password"
    )
    plain, ini = where / "all.yml", where / "hosts.ini"
    plain.write_text(f"db_password: {SECRET}\n")
    ini.write_text(f"box1 ansible_connection=local token={TOKEN}\n")
    ansible_vault(where, "encrypt", "--vault-password-file", str(pw), str(plain), str(ini))
    return Made(entries(inline), prod, plain.read_text(), ini.read_text())


def indented(text: str, spaces: int) -> str:
    return textwrap.indent(text.strip("\n"), " " * spaces)
