"""File transfers that never show a partial file or a wider mode than the final one.

Every copy, local or over SFTP, is written under a temporary name in the destination's
own directory and renamed over the destination once complete, so a reader of the
destination sees either the old file or the whole new one, and a rename replaces a
symbolic link planted at the destination instead of writing through it.

Modes follow Ansible's `copy`: a given mode is the file's from its creation on; without
one, an existing regular file keeps its mode (and, where allowed, its owner and group)
and a new file gets the default mode of the umask. Fetched files are always 0600.
An existing directory as destination receives the file under the source's base name.

A server without an SFTP subsystem gets the same over an exec channel (`exec_put`,
`exec_get`): the bytes go through the channel's stdin or stdout, which SSH carries
unaltered, and a short /bin/sh script does the temporary name, mode and rename.
`probe_script` asks a target what a destination holds (its checksum and mode) so that a
step writes only what differs; a get compares it with `local_sha256` of its destination.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import shlex
import shutil
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

FETCHED_MODE = 0o600
_TEMP_PREFIX = ".runner-put-"
_CHUNK = 65536


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
        try:
            replace_local(dest, lambda writer: shutil.copyfileobj(reader, writer), mode)
        except OSError as exc:
            raise writing(str(dest), exc) from exc


def writing(dest: str, exc: OSError) -> OSError:
    """`exc` as the failure to write `dest`: its reason under the destination's name, not
    the temporary file's the error came from."""
    return OSError(exc.errno, f"cannot write {dest}: {exc.strerror or exc}")


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
    try:
        sftp.mkdir(folder, 0o700)
    except OSError as exc:
        if not exc.errno:  # not the file's own error: the session's (see SSHConnection)
            raise
        raise writing(dest, exc) from exc
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


# -- without SFTP: the same rules over an exec channel ------------------------------------

# Shell text shared by the scripts below: `d` becomes the file a put writes (inside `d`
# when it is a directory, a link to one included), `st FORMAT` prints its status.
_RESOLVE = (
    '[ -d "$d" ] && d="${d%/}/$n"\n'
    'st() { stat -c "$1" -- "$d" 2>/dev/null || stat -f "$2" -- "$d" 2>/dev/null; }\n'
)

# A put: a 0700 directory beside the file (as `sftp_put`), the file inside given its
# owner and final mode before any byte, the bytes from stdin, counted, then renamed over.
_PUT = _RESOLVE + (
    'case $d in */*) f="${d%/*}/";; *) f=;; esac\n'
    'f="$f$tmp"\n'
    't="$f/file" u=$(umask) o=\n'
    "umask 077\n"
    'if [ -z "$m" ] && [ -f "$d" ] && [ ! -h "$d" ]; then m=$(st %a %Lp) o=$(st %u:%g %u:%g); fi\n'
    '[ -n "$m" ] || m=$(printf %o $((0666 & ~0$u)))\n'
    'e=$(mkdir "$f" 2>&1) || { echo "${e##*: }" >&2; exit 1; }\n'
    'trap \'rm -f "$t"; rmdir "$f"\' EXIT\n'
    "trap 'exit 1' HUP INT TERM PIPE\n"
    ': > "$t" || exit 1\n'
    '[ -z "$o" ] || chown "$o" "$t" 2>/dev/null\n'
    'chmod "$m" "$t" && cat > "$t" || exit 1\n'
    'c=$(wc -c < "$t") && [ $c -eq "$size" ] || '
    '{ echo "received ${c:-no} of $size bytes" >&2; exit 1; }\n'
    'mv -f "$t" "$d"\n'
)

# What a put would replace: "into" or "at" (was dest a directory), then "nodir" (the
# file's directory does not exist), "none" or "file MODE SHA256" for a regular file there
# ("-" for what the target cannot tell); a link to one counts when `l` is set (the file a
# get reads).
_PROBE = _RESOLVE + (
    '[ "$d" = "$g" ] && echo at || echo into\n'
    'case $d in */*) p="${d%/*}";; *) p=.;; esac\n'
    '[ -d "${p:-/}" ] || { echo nodir; exit 0; }\n'
    '{ [ -f "$d" ] && { [ -n "$l" ] || [ ! -h "$d" ]; }; } || { echo none; exit 0; }\n'
    'h=$(sha256sum < "$d" 2>/dev/null || shasum -a 256 < "$d" 2>/dev/null'
    ' || openssl dgst -sha256 -r < "$d" 2>/dev/null) && h=${h%% *} || h=\n'
    "m=$(st %a %Lp)\n"
    'echo "file ${m:--} ${h:--}"\n'
)


@dataclass(frozen=True)
class TargetFile:
    """What a put to a destination would replace: the path it writes (the destination,
    or the file under the source's name inside it) and the regular file found there."""

    path: str
    exists: bool  # a regular file (not a link, not a directory) is at `path`
    mode: int | None = None  # None: no file, or the target's `stat` could not say
    sha256: str | None = None  # None: no file, or no checksum tool on the target
    directory: bool = True  # the directory `path` is in exists: a put can write there


def probe_script(dest: str, source_name: str, follow: bool = False) -> str:
    """A /bin/sh script printing what `dest` holds for a put of `source_name` (with
    `follow`, the file a link there leads to, as a get reads it): run it with a
    connection's `run` and give its output to `parse_probe`."""
    name = posixpath.basename(source_name)
    links = "1" if follow else ""
    return f"d={shlex.quote(dest)} n={shlex.quote(name)} l={links}; g=$d\n{_PROBE}"


def parse_probe(dest: str, source_name: str, output: str) -> TargetFile | None:
    """`probe_script`'s output as a `TargetFile`; None when it is not that script's."""
    lines = output.split("\n")
    if len(lines) < 2 or lines[0] not in ("at", "into"):
        return None
    path = dest if lines[0] == "at" else posixpath.join(dest, posixpath.basename(source_name))
    fields = lines[1].split()
    if fields == ["nodir"]:
        return TargetFile(path, exists=False, directory=False)
    if fields == ["none"]:
        return TargetFile(path, exists=False)
    if len(fields) != 3 or fields[0] != "file":
        return None
    mode = int(fields[1], 8) if fields[1].isdigit() else None
    digest = fields[2] if len(fields[2]) == 64 else None
    return TargetFile(path, exists=True, mode=mode, sha256=digest)


def exec_put(
    open_channel: Callable[[], Any], local_path: str, remote_path: str, mode: int | None
) -> None:
    """Upload over an exec channel as `sftp_put` does over SFTP (same names, modes and
    rename); a transfer cut short leaves the destination as it was."""
    values = {
        "d": remote_path,
        "n": posixpath.basename(local_path),
        "m": "" if mode is None else f"{mode:o}",
        "tmp": f"{_TEMP_PREFIX}{uuid.uuid4().hex}",
        "size": str(os.path.getsize(local_path)),
    }
    with open(local_path, "rb") as reader:
        _exec(open_channel, _assign(values) + _PUT, f"cannot write {remote_path}", reader)


def exec_get(open_channel: Callable[[], Any], remote_path: str, local_path: str | Path) -> None:
    """Download over an exec channel into a 0600 file that replaces `local_path` whole."""
    dest = into_directory(Path(local_path), remote_path)
    script = f"exec cat -- {shlex.quote(remote_path)}"

    def fill(writer: IO[bytes]) -> None:
        _exec(open_channel, script, f"cannot read {remote_path}", sink=writer)

    replace_local(dest, fill, FETCHED_MODE)


def _assign(values: dict[str, str]) -> str:
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def _exec(
    open_channel: Callable[[], Any],
    script: str,
    failure: str,
    source: IO[bytes] | None = None,
    sink: IO[bytes] | None = None,
) -> None:
    """Run `script` under /bin/sh on a new channel, `source` as its stdin and its stdout
    into `sink`; OSError naming `failure` and the script's last error line unless it
    exits 0 (a channel that closes without a status is a failure too)."""
    channel = open_channel()
    try:
        channel.exec_command(f"exec /bin/sh -c {shlex.quote(script)}")
        _send(channel, source)
        while data := channel.recv(_CHUNK):
            if sink is not None:
                sink.write(data)
        errors = b""
        while data := channel.recv_stderr(_CHUNK):
            errors = (errors + data)[-4096:]
        rc = channel.recv_exit_status()
    finally:
        channel.close()
    if rc != 0:
        lines = errors.decode("utf-8", "replace").strip().splitlines()
        raise OSError(errno.EIO, f"{failure}: {lines[-1] if lines else f'exit status {rc}'}")


def _send(channel: Any, source: IO[bytes] | None) -> None:
    """Write `source` to the channel's stdin, then end it. A script that stopped reading
    (it failed early) closes the channel: its status says why, so sending just stops."""
    try:
        while source is not None and (chunk := source.read(_CHUNK)):
            channel.sendall(chunk)
        channel.shutdown_write()
    except OSError:
        pass


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


def local_sha256(path: Path) -> str | None:
    """The sha256 of the regular file at `path` on this machine (a link is not followed,
    as a get replaces it); None when there is none or it cannot be read."""
    if _regular_stat(path) is None:
        return None
    try:
        with open(path, "rb") as reader:
            return hashlib.file_digest(reader, "sha256").hexdigest()
    except OSError:
        return None


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
    with contextlib.suppress(OSError):
        chown(previous.st_uid, previous.st_gid)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _quietly(call: Callable[[str], None], path: str) -> None:
    with contextlib.suppress(OSError):
        call(path)
