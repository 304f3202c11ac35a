"""The converging actions' scripts on this machine's /bin/sh: any value reaches the shell
as data, and the framed fields come back byte for byte whatever they hold."""

from __future__ import annotations

import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.execution.actions.target import PRELUDE, assign, parse_fields

# Any text a playbook can hold but NUL, which no shell variable can.
TEXT = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)))


def _sh(script: str) -> bytes:
    done = subprocess.run(["/bin/sh"], input=script.encode(), capture_output=True, check=True)
    return done.stdout


@settings(max_examples=60, deadline=None)
@given(TEXT, TEXT)
def test_any_value_is_assigned_as_data_and_framed_back_intact(first: str, second: str) -> None:
    script = PRELUDE + assign(p=first, l=second) + 'emit one "$p"; emit two "$l"\n'
    fields = parse_fields(_sh(script))
    assert fields == {"one": first.encode(), "two": second.encode()}


def test_a_file_field_keeps_its_bytes_and_trailing_newlines(tmp_path) -> None:
    content = b"a\n\nb\r\n$(id)\n\n"
    (tmp_path / "f").write_bytes(content)
    script = PRELUDE + assign(f=str(tmp_path / "f")) + 'emitf before "$f"; emit result ok\n'
    assert parse_fields(_sh(script)) == {"before": content, "result": b"ok"}
