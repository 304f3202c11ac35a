"""Read a YAML file into plain data while remembering where every node stands.

Schema and semantic errors must point at the line a user wrote, so the loader composes
the YAML node graph (which carries marks) instead of calling ``safe_load`` (which drops
them), builds the plain Python data itself, and keeps a table from key path to 1-based
line and column. Building the data by hand also lets it refuse a duplicate key in a
mapping, which PyYAML would silently let the last one win.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from runner.errors import LocatedError, PlaybookError
from runner.planning import vault
from runner.planning.files import MAX_SOURCE, special
from runner.planning.model import Location

try:  # libyaml's parser is several times faster; the pure one gives the same nodes.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

KeyPath = tuple[Any, ...]
Position = tuple[int, int]

EMPTY_PLAYBOOK = "file is empty; a playbook is a mapping with 'jobs'"
MAX_DEPTH = 100  # lists and mappings inside each other; no real file comes close
ALIAS_NODES = 100_000  # nodes aliases may add to any file, more to a large one (alias_budget)
ALIAS_CHARS = 64_000_000  # characters of scalars aliases may add: far above any real file
_MERGE_TAG = "tag:yaml.org,2002:merge"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def format_path(path: Iterable[Any]) -> str:
    """Render a key path as a user reads it: ``("jobs", 1, "run")`` -> ``jobs[1].run``."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and _IDENTIFIER.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, default=str)}]"
    return text


@dataclass(frozen=True)
class Document:
    """A loaded YAML file: its plain data and the position of every node in it.

    ``positions`` maps a key path to the 1-based (line, column) of that node; for a
    value in a mapping it is the position of its key, which is where a user looks.
    """

    file: str
    data: Any
    positions: dict[KeyPath, Position] = field(default_factory=dict, repr=False)
    error_class: type[LocatedError] = PlaybookError
    encrypted: bool = False  # the whole file was an ansible-vault text

    def locate(self, path: Iterable[Any]) -> Position:
        """The (line, col) of the node at `path`, or of its nearest existing ancestor."""
        key = tuple(path)
        while key and key not in self.positions:
            key = key[:-1]
        return self.positions.get(key, (1, 1))

    def location(self, path: Iterable[Any]) -> Location:
        """A model `Location` for the node at `path`, to keep on the dataclass built from it."""
        key = tuple(path)
        line, col = self.locate(key)
        return Location(self.file, line, col, format_path(key))

    def error(
        self, message: str, path: Iterable[Any], at: Iterable[Any] | None = None
    ) -> LocatedError:
        """An `error_class` naming `path`, placed at the node `at` (by default `path` itself)."""
        shown = tuple(path)
        line, col = self.locate(shown if at is None else at)
        return self.error_class(message, self.file, line, col, format_path(shown))


def load_yaml(
    path: str | Path,
    error_class: type[LocatedError] = PlaybookError,
    empty_message: str = EMPTY_PLAYBOOK,
    secret_key: str | None = None,
) -> Document:
    """Read and parse one YAML file into a `Document`, or raise `error_class` saying where.

    A missing or unreadable file, a syntax error, an empty file (or one with only
    comments), a duplicate key, a non-scalar key and a recursive alias are all errors.
    A wholly ansible-vault encrypted file is decrypted, and its values are secrets: all
    of them, or with `secret_key` those under that key (a playbook's `vars`).
    """
    file = str(path)
    text = _read_text(Path(path), file, error_class)
    encrypted = vault.is_encrypted(text)
    if encrypted:
        text = vault.reveal(text, error_class, file, 1, 1)
    try:
        check_depth(text, file, error_class)
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text, file, error_class) from None
    except ReaderError as exc:
        line, col = _line_col(text, exc.position)
        message = f"YAML error: character U+{exc.character:04X} not allowed: {exc.reason}"
        raise error_class(message, file, line, col) from None
    except yaml.YAMLError as exc:
        raise error_class(f"YAML error: {exc}", file) from None
    if root is None:
        raise error_class(empty_message, file, 1, 1)
    builder = _Builder(file, error_class)
    builder.positions[()] = _position(root)
    data = builder.build(root, ())
    if encrypted:
        vault.remember_data(data if secret_key is None else vault.under_key(data, secret_key))
    return Document(file, data, builder.positions, error_class, encrypted)


def check_depth(text: str, file: str, error_class: type[LocatedError]) -> None:
    """Refuse, before composing, nesting deeper than MAX_DEPTH (libyaml's composer recurses
    in C, and a few hundred kilobytes of ``[[[[`` would crash the process), an alias inside
    the node it names, and aliases that expand the data past `alias_budget` nodes (nine
    levels of nine aliases, a few hundred bytes, are nearly 400 million nodes) or past
    ALIAS_CHARS characters (a 1 MB string named 3,000 times is 3 GB to check)."""
    _EventCheck(file, error_class).run(yaml.parse(text, Loader=_Loader))


def alias_budget(written: int) -> int:
    """How many nodes aliases may add to a file of `written` nodes: ALIAS_NODES, plus ten
    for each node written, so a large file may reuse its anchors in proportion."""
    return ALIAS_NODES + 10 * written


class _EventCheck:
    """One pass over the parse events, counting nesting and what aliases expand to.

    The size of each anchored node (its nodes and its scalars' characters once aliases in
    it are expanded) is known when it closes, so each alias adds that size without
    building anything."""

    def __init__(self, file: str, error_class: type[LocatedError]) -> None:
        self.file = file
        self.error_class = error_class
        self.open: list[list[Any]] = []  # [anchor, nodes, characters] per open collection
        self.sizes: dict[str, tuple[int, int] | None] = {}  # None while the node is open
        self.written = 0
        self.added = 0
        self.added_chars = 0

    def fail(self, message: str, event: Any) -> LocatedError:
        mark = event.start_mark
        return self.error_class(message, self.file, mark.line + 1, mark.column + 1)

    def run(self, events: Iterable[Any]) -> None:
        for event in events:
            if isinstance(event, CollectionStartEvent):
                self.start(event)
            elif isinstance(event, CollectionEndEvent):
                anchor, nodes, chars = self.open.pop()
                self.close(anchor, nodes, chars)
            elif isinstance(event, AliasEvent):
                self.alias(event)
            elif isinstance(event, ScalarEvent):
                self.written += 1
                self.close(event.anchor, 1, len(event.value))

    def start(self, event: CollectionStartEvent) -> None:
        if len(self.open) >= MAX_DEPTH:
            raise self.fail(f"lists and mappings nested more than {MAX_DEPTH} deep", event)
        self.written += 1
        self.open.append([event.anchor, 1, 0])
        if event.anchor is not None:
            self.sizes[event.anchor] = None

    def close(self, anchor: str | None, nodes: int, chars: int) -> None:
        if anchor is not None:
            self.sizes[anchor] = (nodes, chars)
        if self.open:
            self.open[-1][1] += nodes
            self.open[-1][2] += chars

    def alias(self, event: AliasEvent) -> None:
        if event.anchor in self.sizes and self.sizes[event.anchor] is None:
            raise self.fail(f"alias *{event.anchor} is inside the node it refers to", event)
        assert event.anchor is not None  # an alias always names its anchor
        # An undefined anchor counts as one node: the composer says what is wrong with it.
        nodes, chars = self.sizes.get(event.anchor) or (1, 0)
        self.added += nodes
        self.added_chars += chars
        if self.added > alias_budget(self.written):
            budget = alias_budget(self.written)
            raise self.fail(
                f"aliases expand the data past {budget:,} nodes (*{event.anchor}: {nodes:,})",
                event,
            )
        if self.added_chars > ALIAS_CHARS:
            raise self.fail(
                f"aliases expand the data past {ALIAS_CHARS:,} characters "
                f"(*{event.anchor}: {chars:,})",
                event,
            )
        if self.open:
            self.open[-1][1] += nodes
            self.open[-1][2] += chars


def _line_col(text: str, position: int) -> Position:
    """The 1-based line and column of character `position` in `text`."""
    position = max(0, min(position, len(text)))
    return text.count("\n", 0, position) + 1, position - (text.rfind("\n", 0, position) + 1) + 1


def _read_text(path: Path, file: str, error_class: type[LocatedError]) -> str:
    """The file's text, or an error saying in words why it cannot be read."""
    refused = special(str(path), MAX_SOURCE)  # a FIFO would wait for ever, /dev/zero fill memory
    if refused is not None:
        raise error_class(refused, file)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error_class("file not found", file) from None
    except IsADirectoryError:
        raise error_class("is a directory, not a file", file) from None
    except OSError as exc:
        raise error_class(f"cannot read: {exc.strerror or exc}", file) from None
    except ValueError:  # a NUL in the path
        raise error_class("not a file name: it holds a NUL character", file) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error_class("not UTF-8 text", file, line, col) from None


def _syntax_error(
    exc: yaml.MarkedYAMLError, text: str, file: str, error_class: type[LocatedError]
) -> LocatedError:
    """One line for a YAML parse error, placed at the problem (or its context)."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    message = f"YAML syntax error: {problem}"
    if exc.context and problem.startswith("but "):  # "expected X" + "but found Y"
        message = f"YAML syntax error: {exc.context}, {problem}"
    elif mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        message += " (YAML indents with spaces, not tabs)"
    elif exc.context and exc.context != problem:
        message += f" ({exc.context}"
        ctx = exc.context_mark
        if ctx is not None and mark is not None and ctx.line != mark.line:
            message += f" at line {ctx.line + 1}"
        message += ")"
    if mark is None:
        return error_class(message, file)
    return error_class(message, file, mark.line + 1, mark.column + 1)


def _char_at(text: str, line: int, column: int) -> str:
    """The character at a 0-based line and column of `text`, or '' past its end."""
    lines = text.splitlines()
    return lines[line][column : column + 1] if line < len(lines) else ""


def _position(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turns composed nodes into plain data, recording the position of each key path."""

    def __init__(self, file: str, error_class: type[LocatedError]) -> None:
        self.file = file
        self.error_class = error_class
        self.positions: dict[KeyPath, Position] = {}
        self._scalars = SafeConstructor()
        self._open: set[int] = set()  # collection nodes being built, to catch alias loops

    def fail(self, message: str, node: Node, path: KeyPath) -> LocatedError:
        line, col = _position(node)
        return self.error_class(message, self.file, line, col, format_path(path))

    def build(self, node: Node, path: KeyPath) -> Any:
        """The plain value of `node`, found at `path`."""
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if node.tag == vault.TAG:
            raise self.fail(
                f"{vault.TAG} takes an encrypted string, not a list or mapping", node, path
            )
        if id(node) in self._open:
            raise self.fail("an alias refers to a node that contains it", node, path)
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self.sequence(node, path)
            assert isinstance(node, MappingNode)  # the only other kind of node
            return self.mapping(node, path)
        finally:
            self._open.discard(id(node))

    def scalar(self, node: ScalarNode, path: KeyPath) -> Any:
        if node.tag == vault.TAG:
            line, col = _position(node)
            return vault.reveal_inline(
                node.value, self.error_class, self.file, line, col, format_path(path)
            )
        try:
            return self._scalars.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise self.fail(str(exc.problem or exc).strip(), node, path) from None
        except (ValueError, OverflowError) as exc:  # a 5000-digit number, a 13th month...
            why = str(exc).split(";")[0]
            raise self.fail(
                f"cannot read the value {node.value[:40]!r}: {why}", node, path
            ) from None

    def sequence(self, node: SequenceNode, path: KeyPath) -> list[Any]:
        items = []
        for index, child in enumerate(node.value):
            self.positions[path + (index,)] = _position(child)
            items.append(self.build(child, path + (index,)))
        return items

    def mapping(self, node: MappingNode, path: KeyPath) -> dict[Any, Any]:
        """A dict; ``<<`` merges go first so that the mapping's own keys override them."""
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.merge(result, value_node, path)
        explicit: dict[tuple[type, Any], Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.key(key_node, path)
            seen = (type(key), key)  # YAML's 1 and true are different keys; Python's are not
            if seen in explicit:
                first = explicit[seen].start_mark.line + 1
                raise self.fail(f"duplicate key {key!r} (first at line {first})", key_node, path)
            explicit[seen] = key_node
            self.positions[path + (key,)] = _position(key_node)
            result[key] = self.build(value_node, path + (key,))
        return result

    def key(self, node: Node, path: KeyPath) -> Any:
        if not isinstance(node, ScalarNode):
            message = "a mapping key must be a plain value, not a list or mapping"
            raise self.fail(message, node, path)
        return self.scalar(node, path)

    def merge(self, result: dict[Any, Any], node: Node, path: KeyPath) -> None:
        """Apply a ``<<: *anchor`` merge; of several merged mappings the first listed wins."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, MappingNode):
                raise self.fail("'<<' merges only mappings", source, path)
            for key, value in self.build(source, path).items():
                result.setdefault(key, value)
