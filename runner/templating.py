"""Jinja2 templating with Ansible's habits: undefined variables are errors, `| quote`.

Variables are resolved lazily: a variable whose value is itself a template
(``url: "http://{{ inventory_hostname }}"``) is rendered when it is used, as Ansible
does, so precedence layers never need to be rendered up front for 10,000 hosts.
"""

from __future__ import annotations

import base64
import json
import os.path
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nativetypes
import jinja2.sandbox

from runner.errors import TemplateError
from runner.model import Location

_MARKERS = ("{{", "{%", "{#")
_MAX_DEPTH = 20


def is_template(value: Any) -> bool:
    """True when `value` is a string holding Jinja2 markup."""
    return isinstance(value, str) and any(m in value for m in _MARKERS)


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "1", "true", "y", "t")
    return bool(value)


def _regex_replace(value: Any, pattern: str, replacement: str = "") -> str:
    return re.sub(pattern, replacement, str(value))


def _mandatory(value: Any, msg: str | None = None) -> Any:
    if isinstance(value, jinja2.Undefined):
        raise jinja2.UndefinedError(msg or "a mandatory variable is undefined")
    return value


FILTERS = {
    "quote": lambda v: shlex.quote(str(v)),
    "to_json": lambda v, **kw: json.dumps(v, **kw),
    "from_json": json.loads,
    "bool": _to_bool,
    "basename": os.path.basename,
    "dirname": os.path.dirname,
    "regex_replace": _regex_replace,
    "b64encode": lambda v: base64.b64encode(str(v).encode()).decode(),
    "b64decode": lambda v: base64.b64decode(str(v)).decode(),
    "mandatory": _mandatory,
}


class _SandboxedNative(jinja2.sandbox.ImmutableSandboxedEnvironment,
                       jinja2.nativetypes.NativeEnvironment):
    """Renders to Python values (a loop's list), inside the same sandbox."""


def _environment(cls: type[jinja2.Environment]) -> jinja2.Environment:
    env = cls(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters.update(FILTERS)
    return env


class Literal(dict):  # type: ignore[type-arg]
    """A layer of values used as they are, never rendered: registered results (a command's
    output may hold `{{`, as Ansible's "unsafe" values) and the runner's own variables."""


class Variables(Mapping[str, Any]):
    """Layers of variables, the last layer winning, with values rendered on lookup
    (except in `Literal` layers)."""

    def __init__(self, templar: Templar, *layers: Mapping[str, Any]) -> None:
        self._templar = templar
        self._layers = [layer for layer in layers if layer]
        self._depth = 0

    def _find(self, key: str) -> tuple[Any, bool]:
        for layer in reversed(self._layers):
            if key in layer:
                return layer[key], not isinstance(layer, Literal)
        if key in self._templar.env.globals:
            return self._templar.env.globals[key], False
        raise KeyError(key)

    def raw(self, key: str) -> Any:
        return self._find(key)[0]

    def __getitem__(self, key: str) -> Any:
        value, render = self._find(key)
        if not render or not _needs_render(value):
            return value
        if self._depth >= _MAX_DEPTH:
            raise jinja2.TemplateError(f"variable '{key}' refers to itself")
        self._depth += 1
        try:
            return self._templar.render_value(value, self)
        finally:
            self._depth -= 1

    def __contains__(self, key: object) -> bool:
        return any(key in layer for layer in self._layers) or key in self._templar.env.globals

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for layer in reversed(self._layers):
            for key in layer:
                if key not in seen:
                    seen.add(key)
                    yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def child(self, *layers: Mapping[str, Any]) -> Variables:
        """These variables with more layers on top (loop `item`, `until`'s result): values
        the runner made, used as they are."""
        return Variables(self._templar, *self._layers, *(Literal(layer) for layer in layers))


def _needs_render(value: Any) -> bool:
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(_needs_render(v) for v in value.values())
    if isinstance(value, list):
        return any(_needs_render(v) for v in value)
    return False


class Templar:
    """Renders strings and evaluates conditions; compiled templates are cached by text."""

    def __init__(self) -> None:
        # Sandboxed: a value from an inventory or -e is rendered too (as Ansible does), so
        # it must not reach Python internals ('{{ "".__class__ }}') or mutate data.
        self.env = _environment(jinja2.sandbox.ImmutableSandboxedEnvironment)
        self.native_env = _environment(_SandboxedNative)
        self._cache: dict[str, jinja2.Template] = {}
        self._native_cache: dict[str, jinja2.Template] = {}
        self._expr_cache: dict[str, jinja2.Template] = {}
        self._names_cache: dict[str, frozenset[str]] = {}

    def _compile(self, text: str, native: bool = False) -> jinja2.Template:
        cache = self._native_cache if native else self._cache
        template = cache.get(text)
        if template is None:
            template = (self.native_env if native else self.env).from_string(text)
            cache[text] = template
        return template

    def variables(self, *layers: Mapping[str, Any]) -> Variables:
        return Variables(self, *layers)

    def render_value(self, value: Any, variables: Mapping[str, Any]) -> Any:
        """Render a variable's value: strings, and lists and dicts of them, keeping types."""
        if isinstance(value, str):
            if not is_template(value):
                return value
            return self._run(self._compile(value, native=True), variables)
        if isinstance(value, dict):
            return {k: self.render_value(v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render_value(v, variables) for v in value]
        return value

    def _run(self, template: jinja2.Template, variables: Mapping[str, Any]) -> Any:
        ctx = template.new_context(variables, shared=True)  # type: ignore[arg-type]
        return template.environment.concat(template.root_render_func(ctx))  # type: ignore[attr-defined]

    def render(self, text: Any, variables: Mapping[str, Any], where: Location | None = None) -> Any:
        """Render `text` to a string (non-strings pass through); errors carry `where`."""
        if not is_template(text):
            return text
        try:
            return self._run(self._compile(text), variables)
        except jinja2.TemplateError as exc:
            raise self._error(exc, text, where) from None

    def render_native(
        self, value: Any, variables: Mapping[str, Any], where: Location | None = None
    ) -> Any:
        """Render keeping Python types (a loop's list, a number), recursing into containers."""
        try:
            return self.render_value(value, variables)
        except jinja2.TemplateError as exc:
            raise self._error(exc, str(value), where) from None

    def evaluate(self, expr: Any, variables: Mapping[str, Any], where: Location | None = None) -> Any:
        """Evaluate a bare expression (`when:`, `until:`) as Ansible does: no braces needed."""
        if isinstance(expr, bool):
            return expr
        if isinstance(expr, list):
            return all(self.evaluate(e, variables, where) for e in expr)
        text = str(expr).strip()
        if text.startswith("{{") and text.endswith("}}"):
            text = text[2:-2]
        try:
            template = self._expr_cache.get(text)
            if template is None:
                # As compile_expression does, but run with a shared context (see _run):
                # only the variables the expression reads are looked up and rendered.
                template = self.native_env.from_string("{{ (" + text + ") }}")
                self._expr_cache[text] = template
            ctx = template.new_context(variables, shared=True)  # type: ignore[arg-type]
            result = self.native_env.concat(template.root_render_func(ctx))  # type: ignore[attr-defined]
            if isinstance(result, jinja2.Undefined):
                result._fail_with_undefined_error()
            return result
        except jinja2.TemplateError as exc:
            raise self._error(exc, str(expr), where) from None

    def names(self, value: Any) -> set[str]:
        """The variable names a template (or a container of them) reads (cached by text)."""
        if isinstance(value, str):
            found = self._names_cache.get(value)
            if found is None:
                found = self._names_cache[value] = self._parse_names(value)
            return found
        if isinstance(value, dict):
            return set().union(*(self.names(v) for v in value.values())) if value else set()
        if isinstance(value, list):
            return set().union(*(self.names(v) for v in value)) if value else set()
        return set()

    def _parse_names(self, value: str) -> frozenset[str]:
        if not is_template(value):
            return frozenset()
        try:
            return frozenset(jinja2.meta.find_undeclared_variables(self.env.parse(value)))
        except jinja2.TemplateSyntaxError:
            return frozenset()

    def expression_names(self, expr: Any) -> set[str]:
        """The variable names a bare `when:`/`until:` expression reads."""
        if isinstance(expr, list):
            return set().union(*(self.expression_names(e) for e in expr)) if expr else set()
        if not isinstance(expr, str):
            return set()
        text = expr.strip()
        if not (text.startswith("{{") and text.endswith("}}")):
            text = "{{ " + text + " }}"
        return self.names(text)

    @staticmethod
    def _error(exc: jinja2.TemplateError, text: str, where: Location | None) -> TemplateError:
        short = text if len(text) <= 60 else text[:57] + "..."
        if isinstance(exc, jinja2.UndefinedError):
            message = f"undefined variable: {_undefined_name(exc)} in {short!r}"
        elif isinstance(exc, jinja2.TemplateSyntaxError):
            message = f"template syntax error: {exc.message} in {short!r}"
        else:
            message = f"template error: {exc} in {short!r}"
        if where is None:
            return TemplateError(message)
        return TemplateError(message, where.file, where.line, where.col, where.path)


def _undefined_name(exc: jinja2.UndefinedError) -> str:
    """Turn Jinja2's "'x' is undefined" into "'x'" and keep attribute messages readable."""
    text = str(exc.message or exc)
    match = re.match(r"^'([^']+)' is undefined$", text)
    if match:
        return f"'{match.group(1)}'"
    return text
