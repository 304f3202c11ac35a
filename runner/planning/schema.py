"""Check a loaded playbook against ``schemas/playbook.schema.json`` and explain the failure.

The JSON Schema is the one place the playbook's structure is written down; this module
only turns jsonschema's findings into the lines a user needs: each problem of the file,
at the line of the offending key, in words ("unknown key 'rnu' (did you mean 'run'?)",
"unknown key 'hosts' (did you mean 'targets'?)", "expected a list, got the string
'uptime'").

Messages a generic explanation cannot give come from the schema itself, in an
``errorMessage`` keyword beside the rule (as ajv-errors spells it), keyed by the failing
keyword. Placeholders: ``{value}`` (the value), ``{type}`` (its kind in words),
``{keys}`` and ``{present}`` (for a ``oneOf`` of ``required`` alternatives, whose
message is a ``{"none": ..., "many": ...}`` pair).
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import gathered
from runner.planning.yamlsource import Document

if TYPE_CHECKING:  # jsonschema is slow to import (BENCHMARKS.md): only `validate` needs it
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "playbook.schema.json"

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "null": "null",
}
# Ansible's words for runner's keys, suggested when a playbook uses them.
ANSIBLE_WORDS = {
    "hosts": "targets",
    "tasks": "steps",
    "shell": "run",
    "command": "run",
    "raw": "run",
    "become": "sudo",
    "with_items": "loop",
    "environment": "env",
    "chdir": "cwd",
    "copy": "put",
    "fetch": "get",
    "local_action": "local",
    "import_tasks": "include",
    "include_tasks": "include",
    "import_playbook": "include",
}
# Per key path only the most basic finding is kept: a wrong type explains everything
# else wrong with the node, and an unknown key is likely the misspelt required one.
_RANK_TYPE, _RANK_UNKNOWN_KEY, _RANK_OTHER = 0, 1, 2


@functools.cache
def playbook_schema() -> dict[str, Any]:
    """The playbook JSON Schema, read once."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@functools.cache
def _validator(kind: str = "playbook") -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    schema = playbook_schema()
    if kind != "playbook":  # an included file: a list of `kind` items, with the same $defs
        item = {"steps": "stepItem", "jobs": "jobItem"}[kind]
        schema = {key: schema[key] for key in ("$schema", "$id", "$defs")} | {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": f"#/$defs/{item}"},
            "errorMessage": {"type": f"an included file holds a list of {kind}, not {{type}}"},
        }
    return Draft202012Validator(schema)


def validate(document: Document, kind: str = "playbook") -> None:
    """Raise the document's `error_class` for its schema violations, if any: the first in
    the file, with every one of them in its `every` (see `runner.errors.gathered`).
    `kind`: what the file holds, a playbook or (an included file) a list of steps or jobs."""
    errors = list(_validator(kind).iter_errors(document.data))
    if errors:
        found = [document.error(f.message, f.path, f.at) for f in _findings(document, errors)]
        raise gathered(found, document.file)


@dataclass(frozen=True)
class _Finding:
    """One explained violation: the message, the key path shown, the node it points at."""

    message: str
    path: tuple[Any, ...]
    at: tuple[Any, ...]
    rank: int = _RANK_OTHER


def _findings(document: Document, errors: Iterable[ValidationError]) -> list[_Finding]:
    """The findings to report, in the file's order: per node only the most basic ones."""
    findings = [f for error in errors for f in _explain_all(document, error)]
    lowest: dict[tuple[Any, ...], int] = {}
    for finding in findings:
        lowest[finding.path] = min(finding.rank, lowest.get(finding.path, finding.rank))
    kept = dict.fromkeys(f for f in findings if f.rank == lowest[f.path])
    return sorted(kept, key=lambda f: (document.locate(f.at), f.rank))


def _choose(document: Document, errors: Iterable[ValidationError]) -> _Finding:
    """The one finding that explains these errors best: the first in the file."""
    return _findings(document, errors)[0]


def _explain_all(document: Document, error: ValidationError) -> list[_Finding]:
    """Every finding of one jsonschema error: one per unknown key of a mapping."""
    if error.validator != "additionalProperties":
        return [_explain(document, error)]
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    allowed = list(schema.get("properties", {}))
    return [_unknown_key(path, key, allowed) for key in _instance(error) if key not in allowed]


def _rule(error: ValidationError) -> Any:
    """The value of the schema keyword `error` broke. Validation always sets it (the stubs
    also allow it unset, for an error made by hand), and JSON gives it no finer type."""
    rule: Any = error.validator_value
    return rule


def _instance(error: ValidationError) -> Any:
    """The document's value `error` is about (set by validation, as `_rule`)."""
    value: Any = error.instance
    return value


def _explain(document: Document, error: ValidationError) -> _Finding:
    """Put one jsonschema error into words, placed at the node it is about."""
    path = tuple(error.absolute_path)
    kind = error.validator
    if kind in ("oneOf", "anyOf"):
        return _alternatives(document, error, path)
    if kind == "type":
        expected = _type_words(_rule(error))
        message = _custom(error) or f"expected {expected}, got {_describe(_instance(error))}"
        return _Finding(message, path, path, _RANK_TYPE)
    if kind == "required":
        missing = next(k for k in _rule(error) if k not in _instance(error))
        return _Finding(_custom(error) or f"missing required key '{missing}'", path, path)
    return _Finding(_custom(error) or _value_message(error), path, path)


def _value_message(error: ValidationError) -> str:
    """Words for a value that has the right type but breaks a rule about it."""
    kind, rule, value = error.validator, _rule(error), _instance(error)
    if kind == "enum":
        return f"{value!r} is not one of {', '.join(map(str, rule))}{did_you_mean(value, rule)}"
    if kind in ("minItems", "minLength") and rule == 1:
        return "must not be empty"
    if kind == "minItems":
        return f"needs at least {rule} items"
    shown = str(value)
    if len(shown) > 40:  # a 400-digit number
        shown = f"{shown[:20]}... ({len(shown)} digits)"
    if kind == "minimum":
        return f"{shown} is below the minimum {rule}"
    if kind == "maximum":
        return f"{shown} is above the maximum {rule}"
    if kind == "exclusiveMinimum":
        return f"{shown} must be greater than {rule}"
    if kind == "pattern":
        return f"{value!r} does not match the pattern {rule}"
    return error.message


def _unknown_key(path: tuple[Any, ...], key: Any, allowed: list[str]) -> _Finding:
    """An unknown key, with the allowed key it resembles or Ansible's word it stands for
    (and, when that key belongs to another level, the one that holds it)."""
    meant = ANSIBLE_WORDS.get(str(key))
    holder = _holder(meant) if meant and meant not in allowed else None
    if meant in allowed or meant == "include":  # an item of steps or jobs, not a key of one
        hint = f" (did you mean '{meant}'?)"
    elif holder:
        hint = f" (did you mean '{meant}'? {holder} holds it)"
    else:
        hint = did_you_mean(key, allowed)
    return _Finding(f"unknown key {str(key)!r}{hint}", path, path + (key,), _RANK_UNKNOWN_KEY)


def _holder(key: str) -> str | None:
    """Which of a job or a step takes `key`, in words; None for neither."""
    definitions = playbook_schema()["$defs"]
    for name in ("job", "step"):
        if key in definitions[name]["properties"]:
            return f"a {name}"
    return None


def _alternatives(document: Document, error: ValidationError, path: tuple[Any, ...]) -> _Finding:
    """Explain a failed oneOf/anyOf by the alternative the value was evidently meant for."""
    branches = _rule(error)
    if isinstance(_instance(error), dict) and all(_only_required(b) for b in branches):
        return _exactly_one(error, [b["required"][0] for b in branches], path)
    if not error.context:  # a oneOf that more than one alternative accepts
        return _Finding(_custom(error) or error.message, path, path)
    meant = [e for e in error.context if not _type_mismatch([e])]
    if meant:
        return _choose(document, meant)
    message = _custom(error) or (
        f"expected {_type_words(_expected_types(error))}, got {_describe(_instance(error))}"
    )
    return _Finding(message, path, path, _RANK_TYPE)


def _exactly_one(error: ValidationError, keys: list[str], path: tuple[Any, ...]) -> _Finding:
    """A mapping must hold exactly one of `keys`: say which it has, none or several."""
    present = [key for key in _instance(error) if key in keys]
    templates = _custom_rule(error) or {}
    names = ", ".join(f"'{k}'" for k in keys)
    if not present:
        template = templates.get("none", "needs one of {keys}")
        return _Finding(_fill(template, error, keys=names), path, path)
    shown = " and ".join(f"'{k}'" for k in present)
    template = templates.get("many", "takes only one of {keys}, not {present}")
    return _Finding(_fill(template, error, keys=names, present=shown), path, path + (present[1],))


def _only_required(branch: Any) -> bool:
    return isinstance(branch, dict) and set(branch) == {"required"} and len(branch["required"]) == 1


def _type_mismatch(errors: Iterable[ValidationError]) -> bool:
    """True when an alternative failed because the value is of another kind altogether."""
    for error in errors:
        if error.relative_path:
            continue
        if error.validator == "type":
            return True
        if error.validator in ("oneOf", "anyOf") and _all_branches_mismatch(error):
            return True
    return False


def _all_branches_mismatch(error: ValidationError) -> bool:
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    return len(branches) == len(_rule(error)) and all(
        _type_mismatch(errs) for errs in branches.values()
    )


def _expected_types(error: ValidationError) -> list[str]:
    """Every type the alternatives of a oneOf/anyOf accept, in the schema's order."""
    found: list[str] = []
    for sub in error.context:
        if sub.relative_path:
            continue
        if sub.validator == "type":
            rule = _rule(sub)
            found += [rule] if isinstance(rule, str) else list(rule)
        elif sub.validator in ("oneOf", "anyOf"):
            found += _expected_types(sub)
    return list(dict.fromkeys(found))


def _type_words(types: str | list[str]) -> str:
    words = [_TYPE_WORDS.get(t, t) for t in ([types] if isinstance(types, str) else types)]
    if "an integer" in words and "a number" in words:
        words.remove("an integer")
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _describe(value: Any) -> str:
    """A value as a user would name it: "the string 'ten'", "a list", "nothing (null)"."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        short = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {short!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def did_you_mean(word: Any, choices: Iterable[Any]) -> str:
    """A " (did you mean 'x'?)" hint naming the choice closest to `word`, or ''."""
    options = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _custom_rule(error: ValidationError) -> Any:
    """The schema's own ``errorMessage`` for the failing keyword, if it has one."""
    messages = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    return messages.get(error.validator) if isinstance(messages, dict) else None


def _custom(error: ValidationError) -> str | None:
    template = _custom_rule(error)
    return _fill(template, error) if isinstance(template, str) else None


def _fill(template: str, error: ValidationError, **extra: str) -> str:
    """Fill a schema message's placeholders without letting user text act as one."""
    value = _instance(error)
    fields = {"value": str(value), "type": _describe(value), **extra}
    out = template
    for name, text in fields.items():
        out = out.replace("{" + name + "}", text)
    return out
