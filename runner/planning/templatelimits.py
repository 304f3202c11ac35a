"""How much one operation in a template may make, checked before it is made.

A template can ask for a huge result in a few characters: `"x".zfill(10**9)`,
`"{:>1000000000}".format(1)`, `"x" | indent(10**9)`, `a ~ a` doubling in a chain of
variables, `lipsum(10**6)`. Each would fill the memory or run for minutes, so every
operation that takes a width or a count, or joins strings, is given an upper bound of
its result first and refused past MAX_LENGTH characters (or items) with one line saying
what was asked. Every filter's result is checked too, so growth by a constant factor
(`escape`, `urlencode`) cannot be chained without bound.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import jinja2
import jinja2.nativetypes
import jinja2.runtime
import jinja2.sandbox
from jinja2.utils import generate_lorem_ipsum

# A string or list of this many items, an integer of this many bits. Past them the render
# fails instead of filling the memory (`'x' * 10**10`) or computing for hours
# (`10 ** 100000000`). `range` has the sandbox's own limit (jinja2.sandbox.MAX_RANGE), which
# also bounds what makes one container per count (`slice`, `lipsum`'s words).
MAX_LENGTH = 10_000_000
MAX_INT_BITS = 100_000
MAX_PIECES = jinja2.sandbox.MAX_RANGE
_SIZED = (str, bytes, list, tuple)


def too_large(what: str, limit: int = MAX_LENGTH) -> jinja2.sandbox.SecurityError:
    """The error for an operation whose result would pass `limit` items."""
    return jinja2.sandbox.SecurityError(f"{what} makes more than {limit:,} items")


def check_length(length: int, what: str) -> None:
    """Refuse `what`, whose result would hold `length` items, past MAX_LENGTH."""
    if length > MAX_LENGTH:
        raise too_large(what)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _len(value: Any) -> int:
    return len(value) if isinstance(value, _SIZED) else 0


# -- joining: `~`, {% set %} blocks, a template's output ---------------------------------


def counted(pieces: Iterable[Any]) -> Iterator[Any]:
    """`pieces` as they come, refused once their strings pass MAX_LENGTH characters: a
    loop writing a large string is stopped at the limit, not at the end of the loop."""
    total = 0
    for piece in pieces:
        if isinstance(piece, str):
            total += len(piece)
            if total > MAX_LENGTH:
                raise too_large("joining strings")
        yield piece


_Joined = TypeVar("_Joined")


def _bounded(join: Callable[[Iterable[Any]], _Joined]) -> Callable[[Iterable[Any]], _Joined]:
    return lambda pieces: join(counted(pieces))


bounded_concat = _bounded("".join)


def bounded_native_concat(values: Iterable[Any]) -> Any | None:
    """Jinja2's native concat (a template's Python value), over bounded pieces."""
    return jinja2.nativetypes.native_concat(counted(values))


# Compiled templates call `~` as the runtime helper str_join (markup_join under autoescape);
# a compiled module rebinds them to these (REBIND, appended to its source). Output, {% set %}
# blocks and macro bodies go through the environment's concat.
str_join = _bounded(jinja2.runtime.str_join)
markup_join = _bounded(jinja2.runtime.markup_join)
REBIND = "\nfrom runner.planning.templatelimits import str_join, markup_join\n"


# -- str.format and % ------------------------------------------------------------------------

_PERCENT = re.compile(r"%(?:\(([^)]*)\))?[#0\- +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)


def _number(text: str) -> int:
    return MAX_LENGTH + 1 if len(text) > 9 else int(text or 0)


def check_percent(fmt: Any, args: Any) -> None:
    """Refuse `fmt % args` whose widths, precisions and strings pass MAX_LENGTH."""
    if not isinstance(fmt, str):
        return
    positional = iter(args if isinstance(args, tuple) else (args,))
    total = len(fmt)
    for match in _PERCENT.finditer(fmt):
        key, width, precision, kind = match.groups()
        for part in (width, precision):
            total += _int(next(positional, 0)) if part == "*" else _number(part or "")
        if kind == "%":
            continue
        value = args.get(key) if key is not None and isinstance(args, Mapping) else None
        total += _len(value if key is not None else next(positional, None))
    check_length(total, "formatting a string")


class _BoundedFormatter(jinja2.sandbox.SandboxedFormatter):
    """The sandbox's str.format, adding up each field's width, precision and value."""

    def __init__(self, env: jinja2.Environment) -> None:
        super().__init__(env)
        self.total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        self.total += sum(_number(n) for n in re.findall(r"\d+", format_spec)) + _len(value)
        check_length(self.total, "formatting a string")
        return super().format_field(value, format_spec)


def bounded_str_format(env: jinja2.Environment, value: Any) -> Callable[..., str] | None:
    """As SandboxedEnvironment.wrap_str_format, with each field bounded."""
    owner = getattr(value, "__self__", None)
    name = getattr(value, "__name__", "")
    if type(owner) is not str or name not in ("format", "format_map"):
        return None

    def wrapper(*args: Any, **kwargs: Any) -> str:
        if name == "format_map":
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one argument")
            kwargs, args = args[0], ()
        check_length(len(owner), "formatting a string")
        return _BoundedFormatter(env).vformat(owner, args, kwargs)

    return functools.update_wrapper(wrapper, value)


# -- methods: "x".zfill(n), sep.join(list), s.replace(a, b) ----------------------------------


def _replaced(s: Any, old: Any, new: Any, count: Any = -1) -> int:
    grow = _len(new) - _len(old)
    if grow <= 0:
        return len(s)
    times = s.count(old) if _len(old) else len(s) + 1
    count = _int(count) if _int(count) >= 0 and count is not None else times
    return len(s) + min(times, count) * grow


def _joined(sep: Any, items: list[Any]) -> int:
    return sum(_len(i) for i in items) + len(sep) * max(len(items) - 1, 0)


def _translated(s: Any, table: Any) -> int:
    if not isinstance(table, Mapping):
        return len(s)
    return len(s) * max([1, *(_len(v) for v in table.values())])


_METHODS: dict[str, Callable[..., int]] = {
    "zfill": lambda s, width, *_: max(len(s), _int(width)),
    "center": lambda s, width, *_: max(len(s), _int(width)),
    "ljust": lambda s, width, *_: max(len(s), _int(width)),
    "rjust": lambda s, width, *_: max(len(s), _int(width)),
    "expandtabs": lambda s, tabsize=8: (
        len(s) + s.count("\t" if isinstance(s, str) else b"\t") * _int(tabsize)
    ),
    "replace": _replaced,
    "translate": _translated,
    "to_bytes": lambda n, length=1, *_, **__: _int(length),
}


def check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a method call on a string or number whose result would pass MAX_LENGTH;
    the arguments to call it with (a `join`'s iterable read once, into a list)."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if not isinstance(owner, (str, bytes, int)):
        return args
    if name == "join" and len(args) == 1 and not kwargs:
        items = list(args[0])
        check_length(_joined(owner, items), f"{name}()")
        return (items,)
    estimate = _METHODS.get(name)
    if estimate is not None:
        try:
            size = estimate(owner, *args, **kwargs)
        except (TypeError, ValueError, AttributeError):
            return args  # the call itself says what is wrong with its arguments
        check_length(size, f"{name}()")
    return args


# -- filters -----------------------------------------------------------------------------------


def _lines(s: Any) -> int:
    return str(s).count("\n") + 1


def _json_shape(value: Any, depth: int = 1) -> tuple[int, int]:
    """(values, deepest nesting) of data to be dumped as JSON."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if not isinstance(value, (list, tuple)) or depth > 200:
        return 1, depth
    shapes = [_json_shape(v, depth + 1) for v in value]
    return 1 + sum(s[0] for s in shapes), max([depth, *(s[1] for s in shapes)])


def check_json_indent(value: Any, indent: Any) -> None:
    """Refuse JSON whose indentation (each value on its own line, indented by its
    depth) would pass MAX_LENGTH."""
    width = len(indent) if isinstance(indent, str) else _int(indent)
    if width:
        values, depth = _json_shape(value)
        check_length(values * (1 + width * depth), "indenting JSON")


def _center(f: Any, value: Any, width: Any = 80) -> Any:
    check_length(max(len(str(value)), _int(width)), "center")
    return f(value, width)


def _indent(f: Any, s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> Any:
    per_line = len(width) if isinstance(width, str) else _int(width)
    check_length(len(str(s)) + _lines(s) * per_line, "indent")
    return f(s, width, first, blank)


def _wordwrap(f: Any, env: Any, s: Any, width: Any = 79, *args: Any, **kwargs: Any) -> Any:
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
    text = str(s)
    breaks = len(text) // max(_int(width), 1) + sum(text.count(c) for c in " \t\n-") + 1
    check_length(len(text) + breaks * len(wrapstring or "\n"), "wordwrap")
    return f(env, s, width, *args, **kwargs)


def _join(f: Any, ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
    items = list(value)
    if attribute is None:
        check_length(_joined(str(d), items), "join")
    return f(ctx, items, d, attribute)


def _replace(f: Any, ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
    check_length(_replaced(str(s), str(old), str(new), -1 if count is None else count), "replace")
    return f(ctx, s, old, new, count)


def _format(f: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
    check_percent(value, kwargs or args)
    return f(value, *args, **kwargs)


def _sum(f: Any, env: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    items = list(iterable)
    if attribute is None and isinstance(start, _SIZED):
        check_length(_len(start) + sum(_len(i) for i in items), "sum")
    return f(env, items, attribute, start)


def _slice(f: Any, ctx: Any, value: Any, slices: Any, fill_with: Any = None) -> Any:
    if _int(slices) > MAX_PIECES:
        raise too_large(f"slice({slices})", MAX_PIECES)
    return f(ctx, value, slices, fill_with)


def _batch(f: Any, value: Any, linecount: Any, fill_with: Any = None) -> Any:
    check_length(_int(linecount), "batch")
    return f(value, linecount, fill_with)


def _tojson(f: Any, ctx: Any, value: Any, indent: Any = None) -> Any:
    check_json_indent(value, indent)
    return f(ctx, value, indent)


_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "join": _join,
    "replace": _replace,
    "format": _format,
    "sum": _sum,
    "tojson": _tojson,
    "slice": _slice,
    "batch": _batch,
}


def bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` with its result bounded: checked before it is made where the filter
    takes a width or count, and by its length after in every case."""
    check = _FILTERS.get(name)

    @functools.wraps(function)  # keeps Jinja2's pass_context/pass_environment mark
    def apply(*args: Any, **kwargs: Any) -> Any:
        result = check(function, *args, **kwargs) if check else function(*args, **kwargs)
        if isinstance(result, _SIZED):
            check_length(len(result), name)
        return result

    return apply


def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja2's `lipsum`, refused past MAX_PIECES words."""
    if _int(n) * _int(max) > MAX_PIECES:
        raise too_large(f"lipsum({n}, max={max})", MAX_PIECES)
    return str(generate_lorem_ipsum(n, html, min, max))


def bound(env: jinja2.Environment) -> None:
    """Put the bounded filters and `lipsum` in `env`."""
    env.filters.update({name: bounded_filter(name, f) for name, f in env.filters.items()})
    env.globals["lipsum"] = lipsum


def json_dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps, refused when its `indent` would pass MAX_LENGTH."""
    check_json_indent(value, kwargs.get("indent"))
    return json.dumps(value, **kwargs)
