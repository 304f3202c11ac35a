"""Running a command on a real pseudo-terminal, as a user at a terminal does."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_on_pty(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> tuple[int, str]:
    """Run `argv` with stdout and stderr on a new pseudo-terminal; its exit code and all
    it wrote there, control sequences included."""
    import pty

    main, secondary = pty.openpty()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the pty closes when the command ends
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return proc.wait(timeout=60), b"".join(chunks).decode()
