"""ansible-vault values read unchanged: files and strings made by the real `ansible-vault`,
decrypted with the passwords a user gives, masked wherever runner shows text, and every
failure (no password, a wrong one, altered data) one located line with exit 4."""

from __future__ import annotations

import binascii
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.planning import vault
from runner.planning.vault import VaultSecret
from tests.cli import Cli

ANSIBLE_VAULT = str(Path(sys.executable).parent / "ansible-vault")
SECRET = "s3cret-Value-42"
API_KEY = "key-Value-77"
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


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    where = tmp_path_factory.mktemp("ansible-vault")
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
    plain = where / "all.yml"
    plain.write_text(f"db_password: {SECRET}\nansible_connection: local\n")
    ansible_vault(where, "encrypt", "--vault-password-file", str(pw), str(plain))
    return Made(entries(inline), prod, plain.read_text())


def indented(text: str, spaces: int) -> str:
    return textwrap.indent(text.strip("\n"), " " * spaces)


def inline_playbook(cli: Cli, secret_yaml: str, out: Path, job_type: str = "remote") -> str:
    """A playbook whose job `vars:` hold an inline `!vault` db_password, written to `out`
    by a step on localhost and echoed on its output."""
    return cli.playbook(
        f"""
jobs:
  - name: deploy
    type: {job_type}
    targets: localhost
    vars:
{indented(secret_yaml, 6)}
    steps:
      - run: echo {{{{ db_password }}}} > {out}; echo "password is {{{{ db_password }}}}"
"""
    )


@pytest.fixture
def pw(cli: Cli) -> Path:
    return password_file(cli.cwd)


def test_decrypts_ansible_vault_1_1_files_and_1_2_strings(made: Made) -> None:
    assert made.vars_file.startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    given = (VaultSecret("default", b"other one"), VaultSecret("default", PASSWORD.encode()))
    plain = f"db_password: {SECRET}\nansible_connection: local\n"
    assert vault.decrypt_bytes(made.vars_file, given) == plain.encode()

    body = made.prod.split("|", 1)[1]
    assert body.strip().startswith("$ANSIBLE_VAULT;1.2;AES256;prod\n")
    labelled = (VaultSecret("dev", b"other one"), VaultSecret("prod", PROD_PASSWORD.encode()))
    assert vault.decrypt_bytes(body, labelled) == SECRET.encode()
    with pytest.raises(vault.VaultError, match="vault id 'prod'"):
        vault.decrypt_bytes(body, (VaultSecret("prod", b"other one"),))


def test_inline_vault_value_is_used_and_masked_in_run_show_and_receive(
    cli: Cli, pw: Path, made: Made
) -> None:
    out = cli.cwd / "written.txt"
    play = inline_playbook(cli, made.inline["db_password"], out)
    proc = cli("run", play, "--vault-password-file", str(pw))
    assert proc.returncode == 0, proc.output
    assert out.read_text() == SECRET + "\n"
    assert SECRET not in proc.output and MASK in proc.output
    show = cli("job", "show", "2", check=True).stdout
    assert SECRET not in show and MASK in show
    received = cli("job", "receive", "1", "--keep", check=True).stdout
    assert received == f"password is {MASK}\n"
    planned = cli("plan", play, "--vault-password-file", str(pw), check=True).stdout
    assert SECRET not in planned and MASK in planned


def test_background_job_decrypts_in_its_own_process(cli: Cli, pw: Path, made: Made) -> None:
    out = cli.cwd / "written.txt"
    play = inline_playbook(cli, made.inline["db_password"], out, job_type="background")
    proc = cli("run", play, "--vault-password-file", str(pw))
    assert proc.returncode == 0, proc.output
    assert out.read_text() == SECRET + "\n"
    assert SECRET not in proc.output
    assert cli("job", "receive", "1", check=True).stdout == f"password is {MASK}\n"
    store = b"".join(path.read_bytes() for path in cli.home.glob("jobs.db*"))
    assert SECRET.encode() not in store and PASSWORD.encode() not in store


def test_vault_ids_of_1_2_values_and_an_executable_password_file(cli: Cli, made: Made) -> None:
    dev = password_file(cli.cwd, "dev password", "dev-pass")
    out = cli.cwd / "written.txt"
    play = inline_playbook(cli, made.prod, out)
    proc = cli(
        "run", play, "--vault-id", f"dev@{dev}", "--vault-id", f"prod@{prod_script(cli.cwd)}"
    )
    assert proc.returncode == 0, proc.output
    assert out.read_text() == SECRET + "\n"


def test_encrypted_vars_file_and_inventory_values_with_the_environment_password(
    cli: Cli, pw: Path, made: Made
) -> None:
    inv = cli.cwd / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "group_vars" / "all.yml").write_text(made.vars_file)
    (inv / "hosts.yml").write_text(
        f"all:\n  hosts:\n    box1:\n{indented(made.inline['api_key'], 6)}\n"
    )
    out = cli.cwd / "written.txt"
    play = cli.playbook(
        f"""
        jobs:
          - name: deploy
            targets: box1
            steps:
              - run: echo {{{{ db_password }}}} {{{{ api_key }}}} > {out}; echo {{{{ api_key }}}}
        """
    )
    cli.env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(pw)
    proc = cli("run", play, "-i", str(inv))
    assert proc.returncode == 0, proc.output
    assert out.read_text() == f"{SECRET} {API_KEY}\n"
    assert SECRET not in proc.output and API_KEY not in proc.output
    assert cli("job", "receive", "1", check=True).stdout == f"{MASK}\n"


def test_no_password_is_one_located_line_and_exit_4(cli: Cli, made: Made) -> None:
    play = inline_playbook(cli, made.inline["db_password"], cli.cwd / "never.txt")
    for command in (("run", play), ("validate", play), ("plan", play)):
        proc = cli(*command)
        assert proc.returncode == 4, proc.output
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"{play}:7:20: jobs[0].vars.db_password: ")
        assert "--vault-password-file" in lines[0] and "Traceback" not in proc.output
    assert not (cli.cwd / "never.txt").exists()


def test_wrong_password_names_the_file_and_line_exit_4(cli: Cli, made: Made) -> None:
    play = inline_playbook(cli, made.inline["db_password"], cli.cwd / "never.txt")
    wrong = password_file(cli.cwd, "wrong", "wrong-pass")
    proc = cli("run", play, "--vault-password-file", str(wrong))
    assert proc.returncode == 4, proc.output
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.output
    assert proc.stderr.startswith(f"{play}:7:20: jobs[0].vars.db_password: ")
    assert "wrong vault password" in proc.stderr
    assert not (cli.cwd / "never.txt").exists()


def test_a_tampered_file_fails_its_hmac_exit_4(cli: Cli, pw: Path, made: Made) -> None:
    header, *hex_lines = made.vars_file.splitlines()
    salt, mac, ciphertext = binascii.unhexlify("".join(hex_lines)).split(b"\n")
    ciphertext = ciphertext[:-1] + (b"0" if ciphertext[-1:] != b"0" else b"1")  # one bit off
    payload = binascii.hexlify(b"\n".join((salt, mac, ciphertext))).decode()
    extra = cli.cwd / "extra.yml"
    extra.write_text(f"{header}\n{payload}\n")
    play = cli.playbook("jobs:\n  - {name: a, targets: localhost, steps: [run: true]}\n")
    proc = cli("run", play, "-e", f"@{extra}", "--vault-password-file", str(pw))
    assert proc.returncode == 4, proc.output
    assert proc.stderr.startswith(f"{extra}:1:1: ")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.output
    assert "HMAC" in proc.stderr
