"""Jinja2 templating with Ansible's habits: undefined variables are errors, `| quote`.

Variables are resolved lazily: a variable whose value is itself a template
(``url: "http://{{ inventory_hostname }}"``) is rendered when it is used, as Ansible
does, so precedence layers never need to be rendered up front for 10,000 hosts.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import json
import os.path
import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from types import CodeType
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nativetypes
import jinja2.sandbox

from runner.errors import RunnerError, TemplateError
from runner.planning import templatelimits as limits
from runner.planning.model import Location

_MARKERS = ("{{", "{%", "{#")
_MAX_DEPTH = 60  # variables rendering variables; each level costs ~15 Python frames
MAX_LENGTH = limits.MAX_LENGTH  # what one operation may make: see runner/planning/templatelimits.py
MAX_INT_BITS = limits.MAX_INT_BITS


def is_template(value: Any) -> bool:
    """True when `value` is a string holding Jinja2 markup."""
    return isinstance(value, str) and any(m in value for m in _MARKERS)


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "1", "true", "y", "t")
    return bool(value)


def _regex_replace(value: Any, pattern: str, replacement: str = "") -> str:
    return re.sub(pattern, replacement, str(value))


def _regex_search(value: Any, pattern: str) -> str | None:
    """Ansible's `regex_search`: the first match of `pattern`, or None."""
    match = re.search(pattern, str(value))
    return match.group(0) if match else None


def _mandatory(value: Any, msg: str | None = None) -> Any:
    if isinstance(value, jinja2.Undefined):
        raise jinja2.UndefinedError(msg or "a mandatory variable is undefined")
    return value


def _named(name: str, function: Any) -> Any:
    """`function` as a filter whose bad input fails the render naming the filter
    (`from_json: Expecting value...`), as a template error rather than a crash."""

    def apply(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError, re.error, binascii.Error) as exc:
            raise jinja2.TemplateRuntimeError(f"{name}: {exc}") from None

    return apply


def to_plain(value: Any) -> Any:
    """`value` as JSON can hold it, for `to_json` and `tojson`: any variable is
    serializable (Ansible's `hostvars[host]`, dates from YAML, sets...)."""
    if isinstance(value, Variables):  # a host's variables, without `hostvars` (as Ansible)
        return {key: value[key] for key in value if key != "hostvars"}
    if isinstance(value, Mapping):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


FILTERS = {
    name: _named(name, function)
    for name, function in {
        "quote": lambda v: shlex.quote(str(v)),
        "to_json": lambda v, **kw: limits.json_dumps(v, **{"default": to_plain, **kw}),
        "from_json": json.loads,
        "bool": _to_bool,
        "basename": os.path.basename,
        "dirname": os.path.dirname,
        "regex_replace": _regex_replace,
        "regex_search": _regex_search,
        "b64encode": lambda v: base64.b64encode(str(v).encode()).decode(),
        "b64decode": lambda v: base64.b64decode(str(v)).decode(),
    }.items()
}
FILTERS["mandatory"] = _mandatory


def _check_size(operator: str, left: Any, right: Any) -> None:
    """Refuse `*`, `+`, `**` and `%` whose result would pass MAX_LENGTH or MAX_INT_BITS,
    before Python starts making it."""
    sized = (str, bytes, list, tuple)
    if operator == "%":
        limits.check_percent(left, right)
        return
    if operator == "**":
        grows = _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1
        if grows and right * (abs(left).bit_length() - 1) > MAX_INT_BITS:
            raise jinja2.sandbox.SecurityError(
                f"{left} ** {right} is too large (over {MAX_INT_BITS} bits)"
            )
        return
    if operator == "*":
        sequence, count = (left, right) if isinstance(left, sized) else (right, left)
        if isinstance(sequence, sized) and _is_int(count) and len(sequence) * count > MAX_LENGTH:
            raise jinja2.sandbox.SecurityError(
                f"repeating a {type(sequence).__name__} {count} times makes more than "
                f"{MAX_LENGTH} items"
            )
        return
    if isinstance(left, sized) and isinstance(right, sized) and len(left) + len(right) > MAX_LENGTH:
        raise jinja2.sandbox.SecurityError(f"joining them makes more than {MAX_LENGTH} items")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Sandboxed(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with what operators, `~`, method calls, str.format,
    filters and the output make bounded (runner/planning/templatelimits.py)."""

    intercepted_binops = frozenset(("*", "+", "**", "%"))
    concat: Callable[[Iterable[Any]], Any] = staticmethod(limits.bounded_concat)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_size(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        args = limits.check_call(obj, args, kwargs)
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        return limits.bounded_str_format(self, value) or super().wrap_str_format(value)

    def _compile(self, source: str, filename: str) -> CodeType:
        return super()._compile(source + limits.REBIND, filename)


class _SandboxedNative(_Sandboxed, jinja2.nativetypes.NativeEnvironment):
    """Renders to Python values (a loop's list), inside the same sandbox."""

    concat = staticmethod(limits.bounded_native_concat)


def _environment(cls: type[jinja2.Environment]) -> jinja2.Environment:
    env = cls(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters.update(FILTERS)
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": to_plain}  # tojson
    limits.bound(env)
    return env


class Literal(dict[str, Any]):
    """A layer of values used as they are, never rendered: registered results (a command's
    output may hold `{{`, as Ansible's "unsafe" values) and the runner's own variables."""


class Variables(Mapping[str, Any]):
    """Layers of variables, the last layer winning, with values rendered on lookup
    (except in `Literal` layers)."""

    def __init__(self, templar: Templar, *layers: Mapping[str, Any]) -> None:
        self._templar = templar
        self._layers = [layer for layer in layers if layer]
        self._rendering: list[str] = []  # the variables being rendered, outermost first

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
        if key in self._rendering:
            chain = " -> ".join([*self._rendering[self._rendering.index(key) :], key])
            raise jinja2.TemplateError(f"variable '{key}' refers to itself ({chain})")
        if len(self._rendering) >= _MAX_DEPTH:
            raise jinja2.TemplateError(
                f"variable '{key}': variables refer to each other more than {_MAX_DEPTH} deep"
            )
        self._rendering.append(key)
        try:
            return self._templar.render_value(value, self)
        finally:
            self._rendering.pop()

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
        self.env = _environment(_Sandboxed)
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
        # Jinja2 reads a shared context's mapping as it is; its stubs ask for a dict.
        ctx = template.new_context(variables, shared=True)  # type: ignore[arg-type]
        return template.environment.concat(template.root_render_func(ctx))

    def render(self, text: Any, variables: Mapping[str, Any], where: Location | None = None) -> Any:
        """Render `text` to a string (non-strings pass through); errors carry `where`."""
        if not is_template(text):
            return text
        try:
            return self._run(self._compile(text), variables)
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a template is the user's
            raise self._error(exc, text, where) from None

    def render_file(self, text: str, variables: Mapping[str, Any], file: str, path: str) -> str:
        """A template file's `text` rendered; an error is at `file`, at the failing line
        of it, quoting that line, under the playbook's key `path`."""
        try:
            return str(self._run(self._compile(text), variables))
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a template is the user's
            line = _template_line(self._cache.get(text), exc)
            quoted = text.splitlines()[line - 1] if line else text
            raise TemplateError(describe_error(exc, quoted), file, line, None, path) from None

    def render_native(
        self, value: Any, variables: Mapping[str, Any], where: Location | None = None
    ) -> Any:
        """Render keeping Python types (a loop's list, a number), recursing into containers."""
        try:
            return self.render_value(value, variables)
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a template is the user's
            raise self._error(exc, str(value), where) from None

    def evaluate(
        self, expr: Any, variables: Mapping[str, Any], where: Location | None = None
    ) -> Any:
        """Evaluate a bare expression (`when:`, `until:`) as Ansible does: no braces needed."""
        if isinstance(expr, bool):
            return expr
        if isinstance(expr, list):
            return all(self.evaluate(e, variables, where) for e in expr)
        text = str(expr)
        try:
            template = self._expr_cache.get(text)
            if template is None:
                # As compile_expression does, but run with a shared context (see _run):
                # only the variables the expression reads are looked up and rendered.
                template = self.native_env.from_string(expression_source(text))
                self._expr_cache[text] = template
            ctx = template.new_context(variables, shared=True)  # type: ignore[arg-type]  # as _run
            result = self.native_env.concat(template.root_render_func(ctx))
            if isinstance(result, jinja2.Undefined):
                result._fail_with_undefined_error()
            return result
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a template is the user's
            raise self._error(exc, str(expr), where) from None

    def names(self, value: Any) -> AbstractSet[str]:
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

    def expression_names(self, expr: Any) -> AbstractSet[str]:
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
    def _error(exc: Exception, text: str, where: Location | None) -> TemplateError:
        message = describe_error(exc, text)
        if where is None:
            return TemplateError(message)
        return TemplateError(message, where.file, where.line, where.col, where.path)


def expression_source(expr: str) -> str:
    """A bare `when:`/`until:` expression as the template that evaluates it (Ansible
    takes it with or without braces)."""
    text = expr.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2]
    return "{{ (" + text + ") }}"


def describe_error(exc: Exception, text: str) -> str:
    """One line saying what went wrong in template `text`: the variable that is
    undefined, the syntax error, or the failure of a filter or an operation."""
    short = text if len(text) <= 60 else text[:57] + "..."
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined variable: {_undefined_name(exc)} in {short!r}"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        line = f" (line {exc.lineno} of the template)" if (exc.lineno or 1) > 1 else ""
        return f"template syntax error: {exc.message}{line} in {short!r}"
    if isinstance(exc, jinja2.TemplateError):
        return f"template error: {exc} in {short!r}"
    if isinstance(exc, MemoryError):
        return f"template error: out of memory in {short!r}"
    if isinstance(exc, RecursionError):
        return f"template error: nested too deep in {short!r}"
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"template error: {detail} in {short!r}"


@functools.lru_cache(maxsize=1)
def _checker() -> jinja2.Environment:
    env = _environment(_Sandboxed)
    env.optimized = False  # compiled to be checked, never run: fold no constant
    return env


def syntax_error(text: str, expression: bool = False) -> jinja2.TemplateSyntaxError | None:
    """The syntax error in template `text` (an expression, for `when:`), or None; a
    filter or test that does not exist is one too, as rendering it would find.

    Compiles without Jinja2's optimizer: nothing is rendered or folded, so no value is
    needed and no constant in the template is computed."""
    try:
        _checker().compile(expression_source(text) if expression else text)
    except jinja2.TemplateSyntaxError as exc:
        return exc
    return None


def _template_line(template: jinja2.Template | None, exc: BaseException) -> int | None:
    """The line of `template` whose code raised `exc` (its innermost frame there), or
    where its syntax error is."""
    if isinstance(exc, jinja2.TemplateSyntaxError) or template is None:
        return getattr(exc, "lineno", None)
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


def _undefined_name(exc: jinja2.UndefinedError) -> str:
    """Turn Jinja2's "'x' is undefined" into "'x'" and keep attribute messages readable."""
    text = str(exc.message or exc)
    match = re.match(r"^'([^']+)' is undefined$", text)
    if match:
        return f"'{match.group(1)}'"
    return text
