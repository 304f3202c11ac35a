"""ansible-vault values read unchanged: files and strings made by the real `ansible-vault`,
decrypted with the passwords a user gives, masked wherever runner shows text, and every
failure (no password, a wrong one, altered data) one located line with exit 4."""

from __future__ import annotations

import binascii
import os
from pathlib import Path

import pytest

from runner.planning import vault
from runner.planning.vault import VaultSecret
from tests.cli import Cli
from tests.vault_made import (
    API_KEY,
    MASK,
    PASSWORD,
    PROD_PASSWORD,
    SECRET,
    TOKEN,
    Made,
    indented,
    make_all,
    password_file,
    prod_script,
)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return make_all(tmp_path_factory.mktemp("ansible-vault"))


SAID = "the password of the production database is"  # its step's name is cut in the secret


def inline_playbook(cli: Cli, secret_yaml: str, out: Path, job_type: str = "remote") -> str:
    """A playbook whose job `vars:` hold an inline `!vault` db_password, written to `out`
    by a step on localhost and said on its output by the next."""
    return cli.playbook(
        f"""
jobs:
  - name: deploy
    type: {job_type}
    targets: localhost
    vars:
{indented(secret_yaml, 6)}
    steps:
      - run: echo {{{{ db_password }}}} > {out}
      - run: echo "{SAID} {{{{ db_password }}}}"
"""
    )


def box1_playbook(cli: Cli, command: str) -> str:
    """A playbook running `command` on the inventory's host box1."""
    return cli.playbook(f"jobs:\n  - {{name: deploy, targets: box1, steps: [run: {command!r}]}}\n")


@pytest.fixture
def pw(cli: Cli) -> Path:
    return password_file(cli.cwd)


def test_decrypts_ansible_vault_1_1_files_and_1_2_strings(made: Made) -> None:
    assert made.vars_file.startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    given = (VaultSecret("default", b"other one"), VaultSecret("default", PASSWORD.encode()))
    plain = f"db_password: {SECRET}\n"
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
    # a step name cut short to fit is cut after masking: no beginning of it shows either
    assert SECRET[:3] not in proc.output + show
    received = cli("job", "receive", "1", "--keep", check=True).stdout
    assert received == f"{SAID} {MASK}\n"
    planned = cli("plan", play, "--vault-password-file", str(pw), check=True).stdout
    assert SECRET not in planned and MASK in planned


def test_background_job_decrypts_in_its_own_process(cli: Cli, pw: Path, made: Made) -> None:
    out = cli.cwd / "written.txt"
    play = inline_playbook(cli, made.inline["db_password"], out, job_type="background")
    proc = cli("run", play, "--vault-password-file", str(pw))
    assert proc.returncode == 0, proc.output
    assert out.read_text() == SECRET + "\n"
    assert SECRET not in proc.output
    assert cli("job", "receive", "1", check=True).stdout == f"{SAID} {MASK}\n"
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
        f"all:\n  hosts:\n    box1:\n      ansible_connection: local\n"
        f"{indented(made.inline['api_key'], 6)}\n"
    )
    out = cli.cwd / "written.txt"
    play = box1_playbook(
        cli, f"echo {{{{ db_password }}}} {{{{ api_key }}}} > {out}; echo {{{{ api_key }}}}"
    )
    cli.env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(pw)
    proc = cli("run", play, "-i", str(inv))
    assert proc.returncode == 0, proc.output
    assert out.read_text() == f"{SECRET} {API_KEY}\n"
    assert SECRET not in proc.output and API_KEY not in proc.output
    assert cli("job", "receive", "1", check=True).stdout == f"{MASK}\n"


def test_a_wholly_encrypted_ini_inventory_masks_its_values_not_its_hosts(
    cli: Cli, pw: Path, made: Made
) -> None:
    inv = cli.cwd / "hosts.ini"
    inv.write_text(made.ini_inventory)
    out = cli.cwd / "written.txt"
    play = box1_playbook(
        cli,
        f"echo {{{{ token }}}} > {out}; echo {{{{ inventory_hostname }}}} {{{{ token }}}} local",
    )
    proc = cli("run", play, "-i", str(inv), "--vault-password-file", str(pw))
    assert proc.returncode == 0, proc.output
    assert out.read_text() == TOKEN + "\n"
    assert TOKEN not in proc.output
    # its values are secrets; its host names and connection settings (local) are not
    assert cli("job", "receive", "1", check=True).stdout == f"box1 {MASK} local\n"
    listed = cli("inventory", "-i", str(inv), "--vault-password-file", str(pw), check=True)
    assert "box1" in listed.stdout
    proc = cli("inventory", "-i", str(inv))
    assert proc.returncode == 4 and proc.stderr.startswith(f"{inv}:1:"), proc.output


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


def run_typing(cli: Cli, args: list[str], typed: str) -> tuple[int, str]:
    """`runner ARGS` on its own terminal (pty.fork: the pty is its controlling terminal,
    as a user's is), `typed` entered once it asks; its exit code and all it wrote."""
    import pty

    from tests.cli import RUNNER

    pid, fd = pty.fork()
    if pid == 0:  # the child: become runner
        os.chdir(cli.cwd)
        os.execvpe(RUNNER[0], [*RUNNER, *args], cli.env)
    seen, asked = b"", False
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the pty closes when runner ends
            break
        if not data:
            break
        seen += data
        if not asked and b"Vault password:" in seen:
            os.write(fd, typed.encode() + b"\n")
            asked = True
    os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), seen.decode()


def test_ask_vault_pass_asks_on_the_terminal_without_echo(cli: Cli, made: Made) -> None:
    out = cli.cwd / "written.txt"
    play = inline_playbook(cli, made.inline["db_password"], out)
    code, shown = run_typing(cli, ["run", play, "--ask-vault-pass"], PASSWORD)
    assert code == 0, shown
    assert out.read_text() == SECRET + "\n"
    assert PASSWORD not in shown and SECRET not in shown  # neither echoed nor printed
