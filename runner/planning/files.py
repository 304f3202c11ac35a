"""Reading a file the planner is named: only a regular file, and only so much of it.

A name can point at a FIFO (opening it waits for a writer, reading it for ever), a device
(`/dev/zero` never ends) or a file far larger than any template or host list; each is
refused in a few words before it is read whole, so `validate` and `plan` always answer.
"""

from __future__ import annotations

import os
import stat

MAX_TEMPLATE = 4 << 20  # bytes: a template source file
MAX_LIMIT_FILE = 4 << 20  # bytes: a `--limit @FILE` host list
MAX_SOURCE = 64 << 20  # bytes: a playbook, inventory, vars or extra-vars file


class FileRefused(ValueError):
    """Why a file cannot be read, in a few words to follow its name ("does not exist")."""


def read_text(path: str, cap: int) -> str:
    """The UTF-8 text of the regular file `path`, at most `cap` bytes; FileRefused saying
    why not. Opened without waiting (a FIFO has no writer to wait for) and checked on the
    open descriptor, so what is checked is what is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise FileRefused("does not exist") from None
    except OSError as exc:
        raise FileRefused(f"cannot be read: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise FileRefused(f"is not a regular file ({_kind(mode)})")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(cap + 1)
        except OSError as exc:
            raise FileRefused(f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > cap:
        raise FileRefused(f"is larger than {cap >> 20} MB, the most runner reads")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused("is not UTF-8 text") from None


def special(path: str, cap: int) -> str | None:
    """Why `path` is no file to read whole (a FIFO, a device, over `cap` bytes), without
    opening it; None for a regular file, a directory or a missing name, which the caller
    reports in its own words."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    if stat.S_ISDIR(found.st_mode):
        return None
    if not stat.S_ISREG(found.st_mode):
        return f"is not a regular file ({_kind(found.st_mode)})"
    if found.st_size > cap:
        return f"is larger than {cap >> 20} MB, the most runner reads"
    return None


def unreadable(path: str, cap: int = MAX_SOURCE) -> str | None:
    """Why a YAML file a playbook names (an include, a vars file) cannot be read, in a few
    words to follow its name, checked before it is opened; None when it can be."""
    if not os.path.lexists(path):
        return "does not exist"
    if os.path.isdir(path):
        return "is a directory, not a file"
    return special(path, cap)


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")
