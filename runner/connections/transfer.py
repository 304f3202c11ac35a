"""File transfers that never show a partial file or a wider mode than the final one.

Every copy, local or over SFTP, is written under a temporary name in the destination's
own directory and renamed over the destination once complete, so a reader of the
destination sees either the old file or the whole new one, and a rename replaces a
symbolic link planted at the destination instead of writing through it.

Modes follow Ansible's `copy`: a given mode is the file's from its creation on; without
one, an existing regular file keeps its mode (and, where allowed, its owner and group)
and a new file gets the default mode of the umask. Fetched files are always 0600.
An existing directory as destination receives the file under the source's base name.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

FETCHED_MODE = 0o600
_TEMP_PREFIX = ".runner-put-"


def into_directory(dest: Path, source_name: str, follow: bool = False) -> Path:
    """`dest`, or `dest/source_name` when `dest` is an existing directory.

    A link to a directory counts only with `follow` (a target's own links, as over SSH);
    on the controller's side of a `get` a link is replaced, never followed.
    """
    if dest.is_dir() and (follow or not dest.is_symlink()):
        return dest / posixpath.basename(source_name)
    return dest


def replace_local(dest: Path, fill: Callable[[IO[bytes]], None], mode: int | None) -> None:
    """Write `dest` through `fill(file)` into a temporary file beside it, then rename.

    The temporary file is created 0600 and given its final mode before any byte is
    written, so no one reads it under a wider mode than the one it ends with.
    """
    previous = _regular_stat(dest)
    fd, temp = _private_temp(dest)
    try:
        if previous is not None and mode is None:
            _chown_quietly(lambda uid, gid: os.fchown(fd, uid, gid), previous)
        os.fchmod(fd, mode if mode is not None else _kept_mode(previous))
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, dest)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        _unlink_quietly(temp)
        raise


def copy_local(source: Path, dest: Path, mode: int | None) -> None:
    """Copy a file on this machine to `dest` (see `replace_local`)."""
    with open(source, "rb") as reader:
        replace_local(dest, lambda writer: shutil.copyfileobj(reader, writer), mode)


def sftp_put(sftp: Any, local_path: str, remote_path: str, mode: int | None) -> None:
    """Upload over SFTP: into a 0700 directory beside the destination, then rename.

    SFTP creates a file with the server's default mode before a chmod can narrow it;
    inside a directory only its owner may enter, no one can open it in that window.
    """
    dest = remote_path
    found = _sftp_stat(sftp.stat, dest)
    if found is not None and stat.S_ISDIR(found.st_mode or 0):
        dest = posixpath.join(dest, posixpath.basename(local_path))
    previous = _sftp_stat(sftp.lstat, dest)
    if previous is not None and not stat.S_ISREG(previous.st_mode or 0):
        previous = None
    folder = posixpath.join(posixpath.dirname(dest), f"{_TEMP_PREFIX}{uuid.uuid4().hex}")
    temp = posixpath.join(folder, "file")
    sftp.mkdir(folder, 0o700)
    try:
        sftp.put(local_path, temp)
        if previous is not None and mode is None:
            _chown_quietly(lambda uid, gid: sftp.chown(temp, uid, gid), previous)
            mode = stat.S_IMODE(previous.st_mode)
        if mode is not None:  # else a new file keeps the server's default mode
            sftp.chmod(temp, mode)
        sftp.posix_rename(temp, dest)
    except BaseException:
        _quietly(sftp.remove, temp)
        raise
    finally:
        _quietly(sftp.rmdir, folder)


def sftp_get(sftp: Any, remote_path: str, local_path: str | Path) -> None:
    """Download over SFTP into a 0600 file that replaces `local_path` whole."""
    dest = into_directory(Path(local_path), remote_path)
    replace_local(dest, lambda writer: sftp.getfo(remote_path, writer), FETCHED_MODE)


def default_file_mode() -> int:
    """0666 less this process's umask, read without changing it (other threads create
    files meanwhile, so `os.umask` set-and-restore is not safe here)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def _private_temp(dest: Path) -> tuple[int, str]:
    """A new file beside `dest`, 0600, opened for writing, under a name no one chose."""
    while True:
        temp = dest.parent / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(temp, flags, 0o600), str(temp)
        except FileExistsError:
            continue


def _regular_stat(path: Path) -> os.stat_result | None:
    """`path`'s own status when it is a regular file (a link is not followed)."""
    try:
        found = path.lstat()
    except FileNotFoundError:
        return None
    return found if stat.S_ISREG(found.st_mode) else None


def _kept_mode(previous: Any) -> int:
    """An existing file's permission bits, or a new file's default ones."""
    if previous is None:
        return default_file_mode()
    return stat.S_IMODE(previous.st_mode)


def _sftp_stat(call: Callable[[str], Any], path: str) -> Any:
    try:
        return call(path)
    except FileNotFoundError:
        return None


def _chown_quietly(chown: Callable[[int, int], None], previous: Any) -> None:
    """Give the new file the old one's owner and group where this user may."""
    try:
        chown(previous.st_uid, previous.st_gid)
    except OSError:
        pass


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _quietly(call: Callable[[str], None], path: str) -> None:
    try:
        call(path)
    except OSError:
        pass
