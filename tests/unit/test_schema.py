"""The playbook JSON Schema itself, and how schema.validate words and places a violation."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from runner.errors import PlaybookError
from runner.schema import playbook_schema, validate
from runner.yamlsource import load_yaml


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


def test_unknown_key_points_at_that_key_not_the_mapping(tmp_path: Path) -> None:
    text = JOB + "      - run: uptime\n        name: x\n        ignore_error: true\n"
    assert check(tmp_path, text) == (
        "7:9: jobs[0].steps[0]: unknown key 'ignore_error' (did you mean 'ignore_errors'?)"
    )


def test_unknown_key_with_nothing_close_gets_no_guess(tmp_path: Path) -> None:
    assert check(tmp_path, JOB + "      - run: x\n        zzz: 1\n") == (
        "6:9: jobs[0].steps[0]: unknown key 'zzz'"
    )


def test_first_problem_in_the_file_is_reported(tmp_path: Path) -> None:
    text = JOB + "      - run: x\n        retries: many\n      - run: y\n        sudo: maybe\n"
    assert check(tmp_path, text) == (
        "6:9: jobs[0].steps[0].retries: expected an integer, got the string 'many'"
    )


def test_misspelt_action_is_reported_as_unknown_key_not_as_missing_action(tmp_path: Path) -> None:
    text = JOB + "      - name: first\n        lcoal: hostname\n"
    assert check(tmp_path, text) == (
        "6:9: jobs[0].steps[0]: unknown key 'lcoal' (did you mean 'local'?)"
    )


def test_wrong_kind_names_both_kinds(tmp_path: Path) -> None:
    assert check(tmp_path, JOB + "      - run: x\n        sudo: 'yes please'\n") == (
        "6:9: jobs[0].steps[0].sudo: expected a boolean (true or false),"
        " got the string 'yes please'"
    )
    assert check(tmp_path, "jobs:\n") == "1:1: jobs: expected a list, got nothing (null)"


def test_alternatives_that_all_fail_on_kind_list_every_kind(tmp_path: Path) -> None:
    text = "jobs:\n  - name: a\n    targets: {web: 1}\n    steps:\n      - run: x\n"
    assert check(tmp_path, text) == (
        "3:5: jobs[0].targets: expected a string or a list, got a mapping"
    )


def test_alternative_of_the_right_kind_is_explained(tmp_path: Path) -> None:
    text = "jobs:\n  - name: a\n    targets: all\n    needs: [b, 7]\n    steps:\n      - run: x\n"
    assert check(tmp_path, text) == "4:16: jobs[0].needs[1]: expected a string, got the number 7"


def test_template_step_needs_an_object_with_src_and_dest(tmp_path: Path) -> None:
    text = JOB + "      - template: {src: motd.j2, dest: /etc/motd, mode: 'rw'}\n"
    assert check(tmp_path, text) == (
        "5:51: jobs[0].steps[0].template.mode: 'rw' is not an octal file mode like '0644'"
    )


def test_yaml_keys_that_are_not_strings_do_not_break_validation(tmp_path: Path) -> None:
    path = tmp_path / "site.yml"
    path.write_text("vars: {1: one, true: yes}\n" + JOB + "      - run: x\n")
    validate(load_yaml(path))
