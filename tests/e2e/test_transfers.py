"""put, template, script and get over real sshd: a reader of a destination sees the old
file or the whole new one, never a part of it and never under a wider mode; a link
planted where a fetched file goes is replaced, not written through."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

BOTH_MODES = True  # each test also runs with its children on two workers (conftest.py)

BIG = 5 * 1024 * 1024


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _seen(mode: int, content: bytes) -> tuple[str, int, str]:
    """What a reader got, short enough to read in a failed assertion."""
    return oct(mode), len(content), hashlib.sha256(content).hexdigest()[:12]


class Watcher(threading.Thread):
    """Opens and reads the watched paths over and over while a run writes them, and keeps
    every (mode, content) a reader got: what another user opening the file would see."""

    def __init__(self, paths: list[Path], pattern: tuple[Path, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.paths, self.pattern = paths, pattern
        self.seen: dict[str, set[tuple[str, int, str]]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            paths = list(self.paths)
            if self.pattern is not None:
                paths += self.pattern[0].glob(self.pattern[1])
            for path in paths:
                self._read(path)

    def _read(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return  # not there (yet, or any more)
        with os.fdopen(fd, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            key = self.pattern[1] if self.pattern and path.match(self.pattern[1]) else path.name
            self.seen.setdefault(key, set()).add(_seen(mode, handle.read()))

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.done.set()
        self.join()


def test_put_template_and_script_appear_whole_and_with_their_final_mode(cli, inventory, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    new = os.urandom(BIG)
    (tmp_path / "big.bin").write_bytes(new)
    (remote / "old.bin").write_bytes(b"the old complete file\n")
    (remote / "old.bin").chmod(0o640)
    (remote / "app.conf").write_text("old conf\n")
    (remote / "app.conf").chmod(0o644)
    (tmp_path / "app.conf.j2").write_text("port={{ port }}\n")
    script = b"#" + b"x" * BIG + b"\necho script ran\n"
    (tmp_path / "tool.sh").write_bytes(script)
    inodes = {name: (remote / name).stat().st_ino for name in ("old.bin", "app.conf")}
    play = cli.playbook(f"""
        vars: {{port: 8080}}
        jobs:
          - name: files
            targets: host1
            steps:
              - put: {{src: "{tmp_path}/big.bin", dest: "{remote}/new.bin", mode: "0600"}}
              - put: {{src: "{tmp_path}/big.bin", dest: "{remote}/old.bin"}}
              - template: {{src: "{tmp_path}/app.conf.j2", dest: "{remote}/app.conf", mode: "0600"}}
              - script: "{tmp_path}/tool.sh"
        """)
    paths = [remote / "new.bin", remote / "old.bin", remote / "app.conf"]
    with Watcher(paths, (Path("/tmp"), ".runner-script-*")) as watcher:
        proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert watcher.seen["new.bin"] <= {_seen(0o600, new)}
    old = b"the old complete file\n"
    assert watcher.seen["old.bin"] <= {_seen(0o640, old), _seen(0o640, new)}
    assert watcher.seen["app.conf"] <= {_seen(0o644, b"old conf\n"), _seen(0o600, b"port=8080\n")}
    assert watcher.seen.get(".runner-script-*", set()) <= {_seen(0o700, script)}
    assert (_mode(remote / "new.bin"), _mode(remote / "old.bin")) == (0o600, 0o640)
    assert _mode(remote / "app.conf") == 0o600
    for name, inode in inodes.items():
        assert (remote / name).stat().st_ino != inode, f"{name} was rewritten in place"
    assert sorted(p.name for p in remote.iterdir()) == ["app.conf", "new.bin", "old.bin"]


def _umask_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))


def test_put_without_mode_follows_ansible_copy(cli, inventory, fleet, tmp_path):
    """No mode: a new file gets the target's default mode (not the source's), an existing
    file keeps its mode; a directory as dest receives the file under the source's name."""
    remote = tmp_path / "remote"
    (remote / "into").mkdir(parents=True)
    (tmp_path / "tool").write_text("#!/bin/sh\n")
    (tmp_path / "tool").chmod(0o755)
    (remote / "kept").write_text("before\n")
    (remote / "kept").chmod(0o604)
    play = cli.playbook(f"""
        jobs:
          - name: files
            targets: host1
            steps:
              - put: {{src: "{tmp_path}/tool", dest: "{remote}/fresh"}}
              - put: {{src: "{tmp_path}/tool", dest: "{remote}/kept"}}
              - put: {{src: "{tmp_path}/tool", dest: "{remote}/into"}}
        """)
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _mode(remote / "fresh") == 0o666 & ~_umask_of(fleet.host(0).process.pid)
    assert _mode(remote / "kept") == 0o604
    assert (remote / "kept").read_text() == "#!/bin/sh\n"
    assert (remote / "into" / "tool").read_text() == "#!/bin/sh\n"
    assert sorted(p.name for p in remote.iterdir()) == ["fresh", "into", "kept"]


def test_a_failed_put_leaves_the_destination_and_no_temporary_file(cli, inventory, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "dest").write_text("untouched\n")
    play = cli.playbook(f"""
        jobs:
          - name: files
            targets: host1
            steps:
              - put: {{src: "{tmp_path}/missing", dest: "{remote}/dest", mode: "0600"}}
        """)
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert [p.name for p in remote.iterdir()] == ["dest"]
    assert (remote / "dest").read_text() == "untouched\n"


def test_check_and_diff_write_nothing(cli, inventory, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    (tmp_path / "new.txt").write_text("new\n")
    (tmp_path / "app.j2").write_text("rendered\n")
    for name in ("put.txt", "tpl.txt"):
        (remote / name).write_text("old\n")
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in remote.iterdir()}
    play = cli.playbook(f"""
        jobs:
          - name: files
            targets: host1
            steps:
              - put: {{src: "{tmp_path}/new.txt", dest: "{remote}/put.txt", mode: "0600"}}
              - template: {{src: "{tmp_path}/app.j2", dest: "{remote}/tpl.txt"}}
        """)
    proc = cli("run", play, "-i", inventory, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "+new" in proc.stdout and "+rendered" in proc.stdout
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in remote.iterdir()}
    assert after == before
    assert all((remote / name).read_text() == "old\n" for name in before)


def test_get_replaces_a_planted_link_and_creates_the_file_0600(cli, inventory, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "app.conf").write_text("fetched\n")
    (remote / "app.conf").chmod(0o644)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    (fetched / "host1.conf").symlink_to(victim)
    dest = f"{fetched}/{{{{ inventory_hostname }}}}.conf"
    play = cli.playbook(f"""
        jobs:
          - name: fetch
            targets: host1:host2
            steps:
              - get: {{src: "{remote}/app.conf", dest: "{dest}"}}
        """)
    proc = cli("run", play, "-i", inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert victim.read_text() == "precious\n"
    for host in ("host1", "host2"):
        path = fetched / f"{host}.conf"
        assert not path.is_symlink()
        assert (path.read_text(), _mode(path)) == ("fetched\n", 0o600)
    assert sorted(p.name for p in fetched.iterdir()) == ["host1.conf", "host2.conf"]
