"""The playbook JSON Schema itself, and how schema.validate words and places a violation."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from runner.errors import PlaybookError
from runner.planning.schema import playbook_schema, validate
from runner.planning.yamlsource import load_yaml


def walk(node: Any, path: str = "#"):
    """Every (json-pointer-ish path, subschema) in the schema."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key != "if":  # a condition's properties are tests, not keys a user writes
                yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


def test_schema_is_valid_draft_2020_12_with_an_id() -> None:
    schema = playbook_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("playbook.schema.json")


def test_schema_ships_inside_the_package() -> None:
    shipped = resources.files("runner") / "schemas" / "playbook.schema.json"
    assert json.loads(shipped.read_text(encoding="utf-8")) == playbook_schema()


def test_every_mapping_refuses_unknown_keys() -> None:
    open_maps = [
        path
        for path, node in walk(playbook_schema())
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert open_maps == []


def described(prop: dict[str, Any]) -> bool:
    """A description on the property itself or on the definition it refers to."""
    if prop.get("description"):
        return True
    ref = prop.get("$ref", "")
    return ref.startswith("#/$defs/") and bool(
        playbook_schema()["$defs"][ref.removeprefix("#/$defs/")].get("description")
    )


def test_every_property_has_help_for_an_editor() -> None:
    bare = [
        f"{path}/{name}"
        for path, node in walk(playbook_schema())
        if isinstance(node.get("properties"), dict)
        for name, prop in node["properties"].items()
        if not described(prop)
    ]
    assert bare == []


def check(tmp_path: Path, text: str) -> str:
    path = tmp_path / "site.yml"
    path.write_text(text)
    with pytest.raises(PlaybookError) as caught:
        validate(load_yaml(path))
    return str(caught.value).removeprefix(f"{path}:")


JOB = "jobs:\n  - name: a\n    targets: all\n    steps:\n"


def test_valid_document_passes(tmp_path: Path) -> None:
    path = tmp_path / "site.yml"
    path.write_text(JOB + "      - run: uptime\n        register: up\n        loop: [1, 2]\n")
    validate(load_yaml(path))


STEP = JOB + "      - run: x\n"
WORDING = {
    "unknown key points at that key, not at its mapping": (
        JOB + "      - run: uptime\n        name: x\n        ignore_error: true\n",
        "7:9: jobs[0].steps[0]: unknown key 'ignore_error' (did you mean 'ignore_errors'?)",
    ),
    "unknown key with nothing close gets no guess": (
        STEP + "        zzz: 1\n",
        "6:9: jobs[0].steps[0]: unknown key 'zzz'",
    ),
    "first problem in the file is reported": (
        STEP + "        retries: many\n      - run: y\n        sudo: maybe\n",
        "6:9: jobs[0].steps[0].retries: expected an integer, got the string 'many'",
    ),
    "misspelt action is an unknown key, not a missing action": (
        JOB + "      - name: first\n        lcoal: hostname\n",
        "6:9: jobs[0].steps[0]: unknown key 'lcoal' (did you mean 'local'?)",
    ),
    "wrong kind names both kinds": (
        STEP + "        sudo: 'yes please'\n",
        (
            "6:9: jobs[0].steps[0].sudo: expected a boolean (true or false),"
            " got the string 'yes please'"
        ),
    ),
    "nothing where a list belongs": ("jobs:\n", "1:1: jobs: expected a list, got nothing (null)"),
    "alternatives that all fail on kind list every kind": (
        "jobs:\n  - name: a\n    targets: {web: 1}\n    steps:\n      - run: x\n",
        "3:5: jobs[0].targets: expected a string or a list, got a mapping",
    ),
    "the alternative of the right kind is explained": (
        "jobs:\n  - name: a\n    targets: all\n    needs: [b, 7]\n    steps:\n      - run: x\n",
        "4:16: jobs[0].needs[1]: expected a string, got the number 7",
    ),
    "the schema's own message for a pattern": (
        JOB + "      - template: {src: motd.j2, dest: /etc/motd, mode: 'rw'}\n",
        "5:51: jobs[0].steps[0].template.mode: 'rw' is not an octal file mode like '0644'",
    ),
}


@pytest.mark.parametrize("case", list(WORDING))
def test_violation_is_worded_and_placed(tmp_path: Path, case: str) -> None:
    text, expected = WORDING[case]
    assert check(tmp_path, text) == expected


def test_yaml_keys_that_are_not_strings_do_not_break_validation(tmp_path: Path) -> None:
    path = tmp_path / "site.yml"
    path.write_text("vars: {1: one, true: yes}\n" + JOB + "      - run: x\n")
    validate(load_yaml(path))
