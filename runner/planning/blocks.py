"""`block:` / `rescue:` / `always:` in a job's steps, flattened as the playbook loads.

Every step of a job, at any depth of blocks, gets a place in the job's flat `steps`
(numbered in order, as `runner job show` lists them), with its blocks' keys already
applied: `when` combined with its own, `sudo`, `cwd` and `ignore_errors` where it says
nothing, `env` and `vars` under its own, `tags` added. The job's `tree` keeps the
structure (which steps are a block's body, rescue and always) for the step runner, which
is all that needs it; everything else reads the flat list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from runner.planning.model import Block, JobDef, Step
from runner.planning.yamlsource import Document, KeyPath

PARTS = ("block", "rescue", "always")
StepMaker = Callable[[Document, KeyPath, int, dict[str, Any]], Step]


@dataclass(frozen=True)
class _Inherited:
    """What the enclosing blocks give each step inside them."""

    when: str | None = None
    sudo: bool | None = None
    cwd: str | None = None
    ignore_errors: bool | None = None
    env: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)
    section: tuple[str, ...] = ()


def build_steps(
    document: Document,
    path: KeyPath,
    items: list[dict[str, Any]],
    make_step: StepMaker,
    included: dict[KeyPath, str] | None = None,
) -> tuple[tuple[Step, ...], tuple[int | Block, ...] | None]:
    """(every step, flattened; the tree of blocks, or None when there is no block) of the
    `steps:` list at `path`. `included`: the paths of blocks that were `include:` items."""
    builder = _Builder(document, make_step, included or {})
    tree = builder.nodes(path, items, _Inherited())
    return tuple(builder.steps), tree if builder.blocks else None


class _Builder:
    def __init__(
        self, document: Document, make_step: StepMaker, included: dict[KeyPath, str]
    ) -> None:
        self.document = document
        self.make_step = make_step
        self.included = included
        self.steps: list[Step] = []
        self.blocks = 0

    def nodes(
        self, path: KeyPath, items: list[dict[str, Any]], inherited: _Inherited
    ) -> tuple[int | Block, ...]:
        found: list[int | Block] = []
        for position, spec in enumerate(items):
            here = path + (position,)
            if "block" in spec:
                found.append(self.block(here, spec, inherited))
                continue
            step = self.make_step(self.document, here, len(self.steps), spec)
            self.steps.append(_apply(step, spec, inherited))
            found.append(step.index)
        return tuple(found)

    def block(self, path: KeyPath, spec: dict[str, Any], outer: _Inherited) -> Block:
        self.blocks += 1
        title = spec.get("name") or (
            f"include {self.included[path]}" if path in self.included else "block"
        )
        inner = _inner(spec, outer, title)
        parts = {
            part: self.nodes(
                path + (part,),
                spec.get(part) or [],
                inner
                if part == "block"
                else dataclasses.replace(inner, section=(*inner.section, part)),
            )
            for part in PARTS
        }
        where = self.document.location(path)
        return Block(where, parts["block"], parts["rescue"], parts["always"])


def _inner(spec: dict[str, Any], outer: _Inherited, title: str) -> _Inherited:
    """What a block's steps inherit: the outer blocks' keys with this block's over them."""
    when = condition(spec.get("when"))
    env = {str(key): env_value(value) for key, value in (spec.get("env") or {}).items()}
    return _Inherited(
        when=_both(outer.when, when),
        sudo=spec.get("sudo", outer.sudo),
        cwd=spec.get("cwd", outer.cwd),
        ignore_errors=spec.get("ignore_errors", outer.ignore_errors),
        env=outer.env | env,
        tags=tuple(dict.fromkeys((*outer.tags, *names(spec.get("tags"))))),
        vars=outer.vars | dict(spec.get("vars") or {}),
        section=(*outer.section, title),
    )


def _apply(step: Step, spec: dict[str, Any], inherited: _Inherited) -> Step:
    """`step` inside its blocks: their keys applied where the step's own do not say."""
    if not inherited.section:
        return step
    changes: dict[str, Any] = {
        "when": _both(inherited.when, step.when),
        "env": inherited.env | step.env,
        "tags": tuple(dict.fromkeys((*inherited.tags, *step.tags))),
        "scope_vars": inherited.vars,
        "section": " > ".join(inherited.section),
    }
    for key in ("sudo", "cwd", "ignore_errors"):
        if key not in spec and getattr(inherited, key) is not None:
            changes[key] = getattr(inherited, key)
    return dataclasses.replace(step, **changes)


def _both(outer: str | None, inner: str | None) -> str | None:
    """Two `when` conditions that must both hold."""
    if outer is None or inner is None:
        return inner if outer is None else outer
    return f"({outer}) and ({inner})"


def names(value: str | list[str] | None) -> tuple[str, ...]:
    """`needs` and `tags` take one name or a list; always a tuple, without repeats."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(dict.fromkeys(value))


def condition(value: str | bool | list[Any] | None) -> str | None:
    """A `when` as one Jinja2 expression; a list means all of its conditions hold."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    return " and ".join(f"({item})" for item in value)


def env_value(value: str | float | bool) -> str:
    """An `env:` value as the string the command sees (YAML's booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def walk_steps(steps: Any, path: KeyPath) -> list[tuple[KeyPath, dict[str, Any]]]:
    """(key path, mapping) of every step of a `steps:` list at `path`, inside blocks too,
    for checks that read the data as written."""
    found: list[tuple[KeyPath, dict[str, Any]]] = []
    for position, spec in enumerate(steps if isinstance(steps, list) else []):
        here = path + (position,)
        if not isinstance(spec, dict):
            continue
        if "block" in spec:
            for part in PARTS:
                found += walk_steps(spec.get(part), here + (part,))
            continue
        found.append((here, spec))
    return found


def rescued_steps(job: JobDef, ran: AbstractSet[int]) -> frozenset[int]:
    """The indexes of `job`'s steps whose failure a rescue took over on a host where the
    steps `ran` ran: those in the body of a block whose rescue ran (it runs only then)."""
    found: set[int] = set()

    def visit(nodes: tuple[int | Block, ...]) -> None:
        for node in nodes:
            if isinstance(node, Block):
                if _indexes(node.rescue) & ran:
                    found.update(_indexes(node.body))
                for part in (node.body, node.rescue, node.always):
                    visit(part)

    visit(job.tree or ())
    return frozenset(found)


def _indexes(nodes: tuple[int | Block, ...]) -> set[int]:
    """Every step index in `nodes`, inner blocks' too."""
    found: set[int] = set()
    for node in nodes:
        if isinstance(node, Block):
            for part in (node.body, node.rescue, node.always):
                found |= _indexes(part)
        else:
            found.add(node)
    return found
