"""Values kept with ansible-vault: whole encrypted files and inline `!vault` strings.

The format is Ansible's (1.1 and 1.2, AES256), read unchanged:

    $ANSIBLE_VAULT;1.1;AES256            (1.2 adds ;LABEL, the vault id)
    <hex lines, 80 wide>

The hex lines decode to three lines, each hex again: the 32-byte salt, the HMAC-SHA256
of the ciphertext, and the ciphertext. PBKDF2-HMAC-SHA256 (10,000 iterations) derives
80 bytes from the password and salt: the AES key, the HMAC key and the counter's initial
block. The HMAC is checked, in constant time, before anything is decrypted; the plaintext
is AES256-CTR with PKCS#7 padding.

The passwords a command was given are installed once per process (`use_secrets`): the
YAML loaders decrypt as they read, wherever a file comes from. Every value decrypted is
remembered (`revealed`) so that the plan masks it as it masks a declared secret.
"""

from __future__ import annotations

import binascii
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from runner.errors import LocatedError

HEADER = "$ANSIBLE_VAULT"
TAG = "!vault"
NO_PASSWORD = "encrypted with ansible-vault: give --vault-password-file or --ask-vault-pass"
_ITERATIONS = 10_000
_KEY, _IV = 32, 16


@dataclass(frozen=True)
class VaultSecret:
    """One password, with the vault id (label) it was given for ('' for none)."""

    label: str
    password: bytes = b""

    def __repr__(self) -> str:  # a password never reaches a log or a traceback
        return f"VaultSecret(label={self.label!r})"

    def to_json(self) -> list[str]:
        return [self.label, self.password.hex()]

    @staticmethod
    def from_json(data: list[str]) -> VaultSecret:
        return VaultSecret(data[0], bytes.fromhex(data[1]))


class VaultError(ValueError):
    """Why a vault text could not be decrypted, without saying where (the caller knows)."""


@dataclass(frozen=True)
class Envelope:
    """A vault text taken apart: its header's version and vault id, and the raw payload."""

    version: str
    label: str
    salt: bytes
    mac: bytes
    ciphertext: bytes


_lock = threading.Lock()
_secrets: tuple[VaultSecret, ...] = ()
_revealed: set[str] = set()


def use_secrets(secrets: tuple[VaultSecret, ...] | list[VaultSecret]) -> None:
    """Install the passwords this process decrypts with (the command's options)."""
    global _secrets
    with _lock:
        _secrets = tuple(secrets)


def secrets() -> tuple[VaultSecret, ...]:
    """The passwords installed, to hand to a child process that plans again."""
    return _secrets


def revealed() -> list[str]:
    """Every value decrypted in this process so far: each is masked as a secret."""
    with _lock:
        return sorted(_revealed)


def is_encrypted(text: str) -> bool:
    """Whether `text` is a vault text (a whole file or an inline value)."""
    return text.lstrip().startswith(HEADER + ";")


def parse(text: str) -> Envelope:
    """The header and payload of a vault text, or VaultError saying what is malformed."""
    lines = text.strip().splitlines()
    header = lines[0].strip().split(";") if lines else []
    if len(header) < 3 or header[0] != HEADER:
        raise VaultError("not an ansible-vault text: no $ANSIBLE_VAULT header")
    version, cipher = header[1].strip(), header[2].strip()
    if version not in ("1.1", "1.2"):
        raise VaultError(f"ansible-vault format {version!r} is not supported (1.1 and 1.2 are)")
    if cipher != "AES256":
        raise VaultError(f"ansible-vault cipher {cipher!r} is not supported (AES256 is)")
    label = header[3].strip() if version == "1.2" and len(header) > 3 else ""
    try:
        payload = binascii.unhexlify("".join(line.strip() for line in lines[1:]))
        salt, mac, ciphertext = (binascii.unhexlify(part) for part in payload.split(b"\n", 2))
    except (binascii.Error, ValueError):
        raise VaultError(
            "damaged ansible-vault text: its payload is not the hex it should be"
        ) from None
    return Envelope(version, label, salt, mac, ciphertext)


def decrypt_bytes(text: str, given: tuple[VaultSecret, ...] | None = None) -> bytes:
    """The plaintext of a vault text with one of the passwords `given` (by default those
    installed): the one of its vault id first, then the others, as Ansible tries them."""
    envelope = parse(text)
    candidates = _secrets if given is None else given
    if not candidates:
        raise VaultError(NO_PASSWORD)
    ordered = sorted(candidates, key=lambda s: s.label != envelope.label)
    for secret in ordered:
        plain = _open(envelope, secret.password)
        if plain is not None:
            return plain
    raise VaultError(_wrong_password(envelope))


def _wrong_password(envelope: Envelope) -> str:
    """Why no password fit: none given for its vault id, or a wrong one (HMAC mismatch)."""
    detail = f" (vault id '{envelope.label}')" if envelope.label else ""
    return (
        f"cannot decrypt the ansible-vault value{detail}: wrong vault password, or the "
        "value was altered (its HMAC does not match)"
    )


def _open(envelope: Envelope, password: bytes) -> bytes | None:
    """The plaintext, or None when the HMAC says this password (or the data) is wrong."""
    from cryptography.hazmat.primitives import hashes, hmac, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    kdf = PBKDF2HMAC(hashes.SHA256(), 2 * _KEY + _IV, envelope.salt, _ITERATIONS)
    derived = kdf.derive(password)
    key, mac_key, iv = derived[:_KEY], derived[_KEY : 2 * _KEY], derived[2 * _KEY :]
    check = hmac.HMAC(mac_key, hashes.SHA256())
    check.update(envelope.ciphertext)
    try:
        check.verify(envelope.mac)  # constant time
    except Exception:  # cryptography's InvalidSignature
        return None
    decryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor()
    padded = decryptor.update(envelope.ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise VaultError("damaged ansible-vault text: bad padding after decryption") from None


def reveal(
    text: str,
    error_class: type[LocatedError],
    file: str,
    line: int | None = None,
    col: int | None = None,
    path: str | None = None,
) -> str:
    """The decrypted text of a vault text found in `file` (at `line`, `col`, key `path`);
    any failure is one `error_class` line saying where. The caller remembers what in it is
    secret: an inline value whole (`remember`), a whole file's values (`remember_data`)."""
    try:
        return decrypt_bytes(text).decode("utf-8")
    except VaultError as exc:
        raise error_class(str(exc), file, line, col, path) from None
    except UnicodeDecodeError:
        why = "the decrypted ansible-vault value is not UTF-8 text"
        raise error_class(why, file, line, col, path) from None


def reveal_inline(
    text: str, error_class: type[LocatedError], file: str, line: int, col: int, path: str
) -> str:
    """An inline `!vault` value decrypted and remembered as a secret."""
    plain = reveal(text, error_class, file, line, col, path)
    remember([plain])
    return plain


def remember(values: Iterable[str]) -> None:
    """Mask these decrypted values from now on, wherever a plan of this process shows text."""
    with _lock:
        _revealed.update(value for value in values if value)


def remember_data(data: Any) -> None:
    """Mask every value held in the data of a wholly encrypted file: not its keys, nor its
    connection settings (`ansible_user: root` must not mask every "root"; the passwords
    among them are masked as the inventory's always are)."""
    from runner.planning.guard import secret_values

    remember(secret_values(_settings_left_out(data)))


def _settings_left_out(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: _settings_left_out(value)
            for key, value in data.items()
            if not (isinstance(key, str) and key.startswith("ansible_"))
        }
    if isinstance(data, list):
        return [_settings_left_out(item) for item in data]
    return data


def under_key(data: Any, key: str) -> list[Any]:
    """Every value found under `key` in mappings at any depth of `data`."""
    if isinstance(data, dict):
        found = [data[key]] if key in data else []
        return found + [v for k, value in data.items() if k != key for v in under_key(value, key)]
    if isinstance(data, list):
        return [v for item in data for v in under_key(item, key)]
    return []
