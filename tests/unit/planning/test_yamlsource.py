"""load_yaml: plain data plus the line and column of every node, and located YAML errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import InventoryError, PlaybookError
from runner.planning.model import Location
from runner.planning.yamlsource import format_path, load_yaml

TEXT = """\
# a comment first
name: demo
jobs:
  - name: a
    steps:
      - run: uptime
        env: {A: 1}
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "doc.yml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_data_is_plain_python(tmp_path: Path) -> None:
    document = load_yaml(write(tmp_path, TEXT))
    assert document.data == {
        "name": "demo",
        "jobs": [{"name": "a", "steps": [{"run": "uptime", "env": {"A": 1}}]}],
    }


@pytest.mark.parametrize(
    ("path", "position"),
    [
        ((), (2, 1)),
        (("name",), (2, 1)),
        (("jobs",), (3, 1)),
        (("jobs", 0), (4, 5)),
        (("jobs", 0, "steps", 0), (6, 9)),
        (("jobs", 0, "steps", 0, "run"), (6, 9)),
        (("jobs", 0, "steps", 0, "env"), (7, 9)),
        (("jobs", 0, "steps", 0, "env", "A"), (7, 15)),
        (("jobs", 0, "steps", 0, "missing"), (6, 9)),
        (("jobs", 5, "steps"), (3, 1)),
    ],
)
def test_locate_gives_the_key_or_nearest_ancestor(tmp_path: Path, path: tuple, position) -> None:
    assert load_yaml(write(tmp_path, TEXT)).locate(path) == position


def test_location_carries_file_and_readable_path(tmp_path: Path) -> None:
    file = write(tmp_path, TEXT)
    location = load_yaml(file).location(("jobs", 0, "steps", 0, "run"))
    assert location == Location(str(file), 6, 9, "jobs[0].steps[0].run")


def test_format_path_reads_like_the_playbook() -> None:
    assert format_path(("jobs", 1, "steps", 0, "run")) == "jobs[1].steps[0].run"
    assert format_path(("vars", "a.b", 2)) == 'vars["a.b"][2]'
    assert format_path(()) == ""


def test_aliases_and_merge_keys_resolve(tmp_path: Path) -> None:
    text = "base: &b {user: x, port: 22}\nother:\n  <<: *b\n  port: 2222\nlist: [*b]\n"
    data = load_yaml(write(tmp_path, text)).data
    assert data["other"] == {"user": "x", "port": 2222}
    assert data["list"] == [{"user": "x", "port": 22}]


def test_later_merge_source_does_not_override_earlier(tmp_path: Path) -> None:
    text = "a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc:\n  <<: [*a, *b]\n"
    assert load_yaml(write(tmp_path, text)).data["c"] == {"k": 1, "j": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: [1, 2\n", ":3:1: YAML syntax error: did not find expected ',' or ']'"),
        (
            "a:\n\t- x\n",
            (
                ":2:1: YAML syntax error: found character that cannot start any token"
                " (YAML indents with spaces, not tabs)"
            ),
        ),
        ("a: 1\nb:\n  c: 1\n  c: 2\n", ":4:3: b: duplicate key 'c' (first at line 3)"),
        ("? [a]\n: 1\n", ":1:3: a mapping key must be a plain value, not a list or mapping"),
        ("a: &x [*x]\n", ":1:8: alias *x is inside the node it refers to"),
        ("a: !vault x\n", ":1:4: a: not an ansible-vault text"),
        (
            "a: 1\n---\nb: 2\n",
            (
                ":2:1: YAML syntax error: expected a single document in the stream,"
                " but found another document"
            ),
        ),
        ("# nothing here\n\n", ":1:1: file is empty; a playbook is a mapping with 'jobs'"),
        ("", ":1:1: file is empty; a playbook is a mapping with 'jobs'"),
        (b"a: caf\xe9\n", ":1:7: not UTF-8 text"),
    ],
)
def test_bad_yaml_is_one_located_line(tmp_path: Path, text: str | bytes, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PlaybookError) as caught:
        load_yaml(path)
    message = str(caught.value)
    assert message.startswith(f"{path}{expected}")
    assert "\n" not in message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match=r"nope\.yml: file not found$"):
        load_yaml(tmp_path / "nope.yml")
    with pytest.raises(PlaybookError, match=r": is a directory, not a file$"):
        load_yaml(tmp_path)


def test_other_callers_choose_the_error_class_and_empty_message(tmp_path: Path) -> None:
    path = write(tmp_path, "# empty\n")
    with pytest.raises(InventoryError, match="inventory is empty"):
        load_yaml(path, error_class=InventoryError, empty_message="inventory is empty")
    document = load_yaml(write(tmp_path, "a: 1\n"), error_class=InventoryError)
    error = document.error("bad value", ("a",))
    assert isinstance(error, InventoryError)
    assert str(error) == f"{path}:1:1: a: bad value"
