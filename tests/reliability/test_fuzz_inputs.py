"""Bad input, generated: mutated playbooks, inventories, patterns and command lines.

Whatever a user feeds `validate`, `plan` and `inventory`, the answer is success or one
clean error line with exit 4 (bad playbook or inventory) or 5 (bad command line): never
a traceback, never exit 250 (an unexpected error, a bug). The commands run in-process
through `runner.cli.main.main` (fast); a few run through a real process as a user starts them.
Hypothesis is derandomized so every CI run tries the same inputs.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.cli.main import main
from tests.cli import run_runner

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = {p.name: p.read_text() for p in sorted((ROOT / "playbooks").glob("*.yml"))}
LOCAL_INI = (ROOT / "inventory" / "local.ini").read_text()
HOSTS_YML = (ROOT / "inventory" / "hosts.yml").read_text()
CLEAN_EXITS = {0, 4, 5}

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True, scope="module")
def _private_home() -> Any:
    """A RUNNER_HOME of its own, and tracebacks kept off (as a user has them)."""
    saved = {key: os.environ.get(key) for key in ("RUNNER_HOME", "RUNNER_DEBUG")}
    with tempfile.TemporaryDirectory() as home:
        os.environ["RUNNER_HOME"] = home
        os.environ.pop("RUNNER_DEBUG", None)
        yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def invoke(*argv: str) -> tuple[int, str, str]:
    """`runner ARGV` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as leave:  # --help, --version
            code = leave.code if isinstance(leave.code, int) else 0
    return code, out.getvalue(), err.getvalue()


def assert_clean(argv: tuple[str, ...], code: int, err: str) -> None:
    """Success, or exit 4/5 with exactly one error line (warnings aside), or for
    `validate` one located line per error, in the file's order; no traceback."""
    shown = f"runner {' '.join(argv)} -> {code}\n{err}"
    assert "Traceback" not in err, shown
    assert code in CLEAN_EXITS, shown
    if code != 0:
        errors = [line for line in err.splitlines() if not line.startswith("warning:")]
        assert errors and all(line.strip() for line in errors), shown
        if argv[0] != "validate" or len(errors) == 1:
            assert len(errors) == 1, shown
            return
        places = [re.match(r"(.*?):(\d+):(\d+): ", line) for line in errors]  # FILE:LINE:COL
        assert all(places), shown
        assert len({place[1] for place in places}) == 1, shown  # one file: validate's
        lines = [(int(place[2]), int(place[3])) for place in places]
        assert lines == sorted(lines), shown


def check(*argv: str) -> int:
    code, _out, err = invoke(*argv)
    assert_clean(argv, code, err)
    return code


# -- strategies --------------------------------------------------------------------------

# Any text a file may hold: control characters, surrogates-free unicode, YAML punctuation.
NASTY_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list(":-[]{}!&*#|>'\"%@`,?\t\n\r\x00\x1b\x7f\u2028\ufeff")),
    ),
    max_size=30,
)
HUGE_NUMBERS = st.sampled_from(
    [10**400, -(10**400), 2**63, -(2**63) - 1, float("inf"), float("nan"), -0.0, 1e308]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_NUMBERS,
    st.floats(),
    NASTY_TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(NASTY_TEXT, inner, max_size=3)
    ),
    max_leaves=8,
)
YAML_TAGS = st.sampled_from(
    [
        "!!python/object/apply:os.system ['echo pwned']",
        "!!python/object:runner.planning.model.Step {}",
        "!!python/name:os.system",
        "!!binary aGVsbG8=",
        "!!timestamp 2001-12-14",
        "!!set {a, b}",
        "!!omap [a: 1]",
        "!!float nan",
        "!!int 0x7fffffffffffffffffff",
        "!secret x",
        "!vault |\n  $ANSIBLE_VAULT;1.1;AES256",
        "&anchor x",
        "*undefined_alias",
        "<<: *nothing",
    ]
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a loaded YAML document."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


def at(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def structural_mutation(draw: Any, text: str) -> str:
    """Delete or rename a key, change a value's type, or bury it deep in lists."""
    data = yaml.safe_load(text)
    path = draw(st.sampled_from(paths(data)[1:]))
    parent, key = at(data, path[:-1]), path[-1]
    kind = draw(st.sampled_from(["delete", "rename", "retype", "nest"]))
    if kind == "delete":
        del parent[key]
    elif kind == "rename" and isinstance(parent, dict):
        parent[draw(NASTY_TEXT)] = parent.pop(key)
    elif kind == "nest":
        depth = draw(st.sampled_from([5, 50, 500]))
        for _ in range(depth):
            parent[key] = [parent[key]]
    else:
        parent[key] = draw(VALUES)
    return yaml.safe_dump(data, allow_unicode=draw(st.booleans()), sort_keys=False)


@st.composite
def text_mutation(draw: Any, text: str) -> str:
    """Inject characters, truncate, duplicate a line, add a YAML tag, nest very deep."""
    lines = text.splitlines(keepends=True)
    kind = draw(st.sampled_from(["inject", "truncate", "duplicate", "tag", "deep", "bytes"]))
    if kind == "inject":
        at_ = draw(st.integers(0, len(text)))
        return text[:at_] + draw(NASTY_TEXT) + text[at_:]
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if kind == "duplicate":
        index = draw(st.integers(0, len(lines) - 1))
        return "".join(lines[: index + 1] + [lines[index]] + lines[index + 1 :])
    if kind == "deep":
        depth = draw(st.sampled_from([100, 1000, 5000]))
        return text + "extra: " + "[" * depth + "]" * depth + "\n"
    if kind == "bytes":
        return text.encode("utf-8").decode("latin-1")[: draw(st.integers(0, len(text)))]
    index = draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    if ":" not in line:
        return "".join(lines[:index] + [draw(YAML_TAGS) + "\n"] + lines[index:])
    head, _sep, _value = line.partition(":")
    lines[index] = f"{head}: {draw(YAML_TAGS)}\n"
    return "".join(lines)


def mutated(text: str) -> st.SearchStrategy[str]:
    return st.one_of(structural_mutation(text), text_mutation(text))


MUTATED_PLAYBOOKS = st.sampled_from(sorted(PLAYBOOKS)).flatmap(lambda n: mutated(PLAYBOOKS[n]))

INI_LINES = st.sampled_from(
    [
        "[web",
        "[web:children]",
        "[web:vars]",
        "[]",
        "[:vars]",
        "[a:b:c]",
        "web[01:",
        "web[1:3:0]",
        "web[z:a]",
        "web[01:03]",
        "db-[a:c] x=1",
        "host ansible_port=notaport",
        "host ansible_port=99999999999999999999",
        "host x='unterminated",
        "host x=[1, 2",
        "host =value",
        "host x==1",
        "host ansible_connection=telnet",
        "localhost",
        "all",
        "ungrouped",
        "h\x00st",
        "[all:children]\nall",
        "[a:children]\nb\n[b:children]\na",
    ]
)
INVENTORY_TEXTS = st.one_of(
    mutated(HOSTS_YML),
    text_mutation(LOCAL_INI),
    st.lists(st.one_of(INI_LINES, NASTY_TEXT), max_size=8).map("\n".join),
)
PATTERNS = st.one_of(
    st.text(alphabet="abwedo*?!&:,;[]~^-0123456789.\\ ", max_size=20),
    st.sampled_from(
        [
            "",
            ":",
            "::",
            "!",
            "&",
            "web[",
            "web[1",
            "web[-1]",
            "web[0:]",
            "web[1:0]",
            "~(",
            "~[",
            "all:!all",
            "webservers[99999999999999999999]",
            "*:&*:!*",
            "@",
            "@/nonexistent",
        ]
    ),
    NASTY_TEXT,
)


def write(directory: str, name: str, text: str) -> str:
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    return str(path)


# -- the properties ----------------------------------------------------------------------


@FUZZ
@given(text=MUTATED_PLAYBOOKS)
def test_mutated_playbooks_validate_and_plan_cleanly(text):
    with tempfile.TemporaryDirectory() as work:
        play = write(work, "play.yml", text)
        inventory = write(work, "hosts.ini", LOCAL_INI)
        check("validate", play)
        check("validate", play, "-i", inventory)
        check("plan", play, "-i", inventory, "--format", "json")


@FUZZ
@given(text=INVENTORY_TEXTS, pattern=PATTERNS, yaml_name=st.booleans())
def test_mutated_inventories_and_patterns_answer_cleanly(text, pattern, yaml_name):
    with tempfile.TemporaryDirectory() as work:
        inventory = write(work, "hosts.yml" if yaml_name else "hosts.ini", text)
        check("inventory", "-i", inventory, "--", pattern)
        check("inventory", "-i", inventory, "all", "--limit", pattern, "--format", "json")
        play = write(work, "play.yml", PLAYBOOKS["hello.yml"])
        check("plan", play, "-i", inventory, "-l", pattern)


@FUZZ
@given(pattern=PATTERNS, limit=PATTERNS)
def test_patterns_on_a_good_inventory_answer_cleanly(pattern, limit):
    inventory = str(ROOT / "inventory" / "hosts.yml")
    check("inventory", "-i", inventory, "--", pattern)
    check("inventory", "-i", inventory, "--limit", limit, "--", pattern)


@FUZZ
@given(content=st.binary(max_size=40), pattern=PATTERNS)
def test_any_limit_file_answers_cleanly(content, pattern):
    with tempfile.TemporaryDirectory() as work:
        retry = Path(work) / "hosts.retry"
        retry.write_bytes(content)
        inventory = str(ROOT / "inventory" / "local.ini")
        check("inventory", "-i", inventory, "--limit", f"@{retry}", "--", pattern)


EXTRA_VARS = st.one_of(
    NASTY_TEXT,
    st.builds(lambda k, v: f"{k}={v}", NASTY_TEXT, NASTY_TEXT),
    st.builds(lambda v: "@" + v, NASTY_TEXT),
    st.sampled_from(["{", "[1, 2]", '{"a": }', "=", "x=", "=1", "@", "{}", "null", "- a"]),
)


@FUZZ
@given(extra=st.lists(EXTRA_VARS, min_size=1, max_size=3))
def test_garbage_extra_vars_answer_cleanly(extra):
    play = str(ROOT / "playbooks" / "hello.yml")
    argv = ["plan", play, "-i", str(ROOT / "inventory" / "local.ini")]
    for value in extra:
        argv += ["-e", value]
    check(*argv)


# -- a handful through a real process ------------------------------------------------------

REAL_PROCESS_CASES = {
    "python tag": ("play", "jobs: !!python/object/apply:os.system ['touch pwned']\n"),
    "truncated playbook": ("play", PLAYBOOKS["diagnostics.yml"][:333]),
    "deep nesting": ("play", "jobs: " + "[" * 5000 + "]" * 5000 + "\n"),
    "huge number": ("play", PLAYBOOKS["hello.yml"] + "    timeout: " + "9" * 400 + "\n"),
    "control characters": ("play", "name: a\x1b[31m\x00\njobs: []\n"),
    "ini with a broken range": ("inventory", "[web]\nweb[01:\n"),
    "yaml inventory a list": ("inventory", "- a\n- b\n"),
    "python tag in an inventory": (
        "inventory",
        "all:\n  vars:\n    x: !!python/object/apply:os.system ['touch pwned']\n",
    ),
}


@pytest.mark.parametrize("case", sorted(REAL_PROCESS_CASES))
def test_bad_files_through_a_real_process(case, tmp_path):
    kind, text = REAL_PROCESS_CASES[case]
    path = write(str(tmp_path), "input.yml", text)
    inventory = str(ROOT / "inventory" / "local.ini")
    argv = ["validate", path] if kind == "play" else ["inventory", "-i", path]
    if kind == "play":
        argv_plan = ["plan", path, "-i", inventory]
    for args in [argv] + ([argv_plan] if kind == "play" else []):
        proc = run_runner(*args, home=tmp_path / "home", timeout=60, cwd=tmp_path)
        assert_clean(tuple(args), proc.returncode, proc.stderr)
        assert proc.returncode == 4, proc.stderr
    assert not (tmp_path / "pwned").exists()


# -- each crash the properties found, kept as a case -------------------------------------

DEEP = "[" * 5000 + "]" * 5000
LOCATED = object()  # the error line starts with FILE:1: (any wording after it)
HELLO = str(ROOT / "playbooks" / "hello.yml")


def _bomb(indent: str) -> str:
    """Nine levels of nine aliases ("billion laughs"): 340 bytes, 387 million nodes."""
    lines = [f"{indent}a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{indent}{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    return "\n".join(lines) + "\n"


def _yaml_inventory(vars_text: str) -> str:
    return "all:\n  hosts:\n    h1:\n  vars:\n" + vars_text


FOUND = {
    # name: (file name, file text, argv after the command, exit code, what the line says)
    "NUL in a playbook": (
        "p.yml",
        "name: a\nb: x\x00y\n",
        ["validate"],
        4,
        ":2:5: YAML error: character U+0000",
    ),
    # Refused either by runner's own depth check or by libyaml's (PyYAML 6.0.4 stops at
    # 1000 levels with words of its own): what counts is one line naming file and line.
    "lists nested 5000 deep": ("p.yml", f"jobs: {DEEP}\n", ["validate"], 4, LOCATED),
    "a 5000-digit number": (
        "p.yml",
        f"vars: {{n: {'9' * 5000}}}\njobs: []\n",
        ["validate"],
        4,
        "4300 digits",
    ),
    "a 13th month": (
        "p.yml",
        "vars: {t: !!timestamp 2001-13-45}\njobs: []\n",
        ["validate"],
        4,
        "month must be in 1..12",
    ),
    "a 400-digit timeout": (
        "p.yml",
        PLAYBOOKS["hello.yml"] + f"    timeout: {'9' * 400}\n",
        ["validate"],
        4,
        "(400 digits) is above the maximum",
    ),
    "a NaN timeout": (
        "p.yml",
        PLAYBOOKS["hello.yml"] + "    timeout: .nan\n",
        ["validate"],
        4,
        "jobs[0].timeout: must be a number, not NaN",
    ),
    "NUL in an inventory": (
        "hosts.yml",
        "all:\n  hosts:\n    h\x00st:\n",
        ["inventory", "-i"],
        4,
        "U+0000",
    ),
    "inventory nested 5000 deep": ("hosts.yml", f"all: {DEEP}\n", ["inventory", "-i"], 4, LOCATED),
    "a limit file not UTF-8": (
        "l.retry",
        "\udcff\n",
        ["inventory", "--limit", "@"],
        5,  # the limit file is a command-line option's value
        "not UTF-8",
    ),
    # Words starting with ':' are the position: FILE:LINE:COL: must start the line.
    "an alias bomb in a playbook": (
        "p.yml",
        f"vars:\n{_bomb('  ')}jobs: []\n",
        ["validate"],
        4,
        ":7:10: aliases expand the data past",
    ),
    "an alias bomb in an extra-vars file": (
        "v.yml",
        _bomb(""),
        ["plan", HELLO, "-e", "@"],
        4,
        ":6:8: aliases expand the data past",
    ),
    # 1 MB naming a 1 MB string 3,000 times: 3 GB for every later check to read.
    "aliases of a large string": (
        "p.yml",
        f"vars:\n  s: &s {'x' * 10**6}\n  l: [{'*s, ' * 3000}]\njobs: []\n",
        ["validate"],
        4,
        ":3:263: aliases expand the data past 64,000,000 characters",
    ),
    "an alias bomb in an inventory": (
        "hosts.yml",
        _yaml_inventory(_bomb("    ")),
        ["inventory", "-i"],
        4,
        ":10:12: aliases expand",
    ),
    "a recursive alias in an inventory": (
        "hosts.yml",
        _yaml_inventory("    a: &a [*a]\n"),
        ["inventory", "-i"],
        4,
        ":5:12: alias *a is inside",
    ),
    "a 5000-digit number in an inventory": (
        "hosts.yml",
        _yaml_inventory(f"    n: {'9' * 5000}\n"),
        ["inventory", "-i"],
        4,
        ":5:8: invalid YAML: cannot read",
    ),
    "a 13th month in an inventory": (
        "hosts.yml",
        _yaml_inventory("    t: !!timestamp 2001-13-45\n"),
        ["inventory", "-i"],
        4,
        ":5:8: invalid YAML: cannot read",
    ),
    "a merge of a number in an inventory": (
        "hosts.yml",
        _yaml_inventory("    m:\n      <<: [1]\n"),
        ["inventory", "-i"],
        4,
        ":6:12: invalid YAML",
    ),
    "a range of 100 million hosts": (
        "hosts.ini",
        "[web]\nweb[1:99999999]\n",
        ["inventory", "-i"],
        4,
        ":2: web[1:99999999]: bad host range: the range names more",
    ),
    "a range of ranges in YAML": (
        "hosts.yml",
        "all:\n  hosts:\n    h[1:9999][1:9999]:\n",
        ["inventory", "-i"],
        4,
        ":3: h[1:9999][1:9999]: bad host range",
    ),
    "a port past 65535": (
        "hosts.ini",
        "[web]\nh ansible_port=123565\n",
        ["inventory", "-i"],
        4,
        ":2: h: ansible_port: must be a port number from 1 to 65535",
    ),
    "a port past 65535 after the name": (
        "hosts.ini",
        "[web]\nh:123565\n",
        ["inventory", "-i"],
        4,
        ":2: h: port must be a port number from 1 to 65535",
    ),
    "a port that is true": (
        "hosts.ini",
        "[web]\nh\n[web:vars]\nansible_port=True\n",
        ["inventory", "-i"],
        4,
        ":4: web: ansible_port: must be a port number",
    ),
    "a port of 1e400": (
        "hosts.yml",
        "all:\n  hosts:\n    h:\n      ansible_port: 1e400\n",
        ["inventory", "-i"],
        4,
        ":4: h: ansible_port: must be a port number",
    ),
    "a winrm connection": (
        "hosts.ini",
        "[web]\nh ansible_connection=winrm\n",
        ["inventory", "-i"],
        4,
        ":2: h: ansible_connection: connection 'winrm' is not one runner has",
    ),
    "a docker connection for a group": (
        "hosts.yml",
        "all:\n  hosts:\n    h:\n  vars:\n    ansible_connection: docker\n",
        ["inventory", "-i"],
        4,
        ":5: all: ansible_connection: connection 'docker' is not one",
    ),
}


@pytest.mark.parametrize("case", sorted(FOUND))
def test_inputs_that_once_crashed_get_one_located_line(case, tmp_path):
    name, text, argv, code, words = FOUND[case]
    path = write(str(tmp_path), name, text)
    argv = [*argv[:-1], argv[-1] + path] if argv[-1] == "@" else [*argv, path]
    got, _out, err = invoke(*argv)
    assert_clean(tuple(argv), got, err)
    assert got == code, err
    if words is LOCATED:
        assert re.match(re.escape(path) + r":1:\d+: \S", err), err
    elif words.startswith(":"):
        assert err.startswith(path + words), err
    else:
        assert words in err, err


@pytest.mark.parametrize(
    "extra, words",
    [
        ("'", "No closing quotation"),
        ("{", "not valid JSON or YAML"),
        ("{a: " + "[" * 3000, "-e"),
        ("@\n0", "\\n0: cannot read the file"),  # the newline shown escaped: still one line
        ("@\x00", "NUL"),
        (_bomb("").replace("\n", ", ").join("{}"), "aliases expand the data past"),
    ],
)
def test_garbage_extra_vars_that_once_crashed(extra, words):
    code, _out, err = invoke("plan", str(ROOT / "playbooks" / "hello.yml"), "-e", extra)
    assert_clean(("plan", "-e", extra), code, err)
    assert code in (4, 5) and words in err, err


# -- bad command lines: exit 5, one line ----------------------------------------------------

SUBCOMMANDS = [
    ["validate", "x.yml"],
    ["plan", "x.yml"],
    ["run", "x.yml"],
    ["inventory"],
    ["job", "list"],
    ["job", "show", "1"],
    ["job", "receive", "1"],
    ["job", "wait", "1"],
    ["job", "stop", "1"],
    ["job", "remove", "1"],
]
BAD_COMMAND_LINES = [
    *([*command, "--no-such-option"] for command in SUBCOMMANDS),
    *([*command, "-Z"] for command in SUBCOMMANDS),
    ["nosuchcommand"],
    ["job"],
    ["job", "frobnicate"],
    ["validate"],
    ["plan"],
    ["plan", "x.yml", "-i"],
    ["plan", "x.yml", "-e"],
    ["plan", "x.yml", "-l"],
    ["plan", "x.yml", "--format"],
    ["plan", "x.yml", "--format", "yaml"],
    ["run", "x.yml", "-f"],
    ["run", "x.yml", "-f", "-3"],
    ["run", "x.yml", "-f", "1e3"],
    ["run", "x.yml", "-f", "0x10"],
    ["run", "x.yml", "-f", ""],
    ["run", "x.yml", "-q", "-v"],
    ["run", "x.yml", "--junit"],
    ["run", "x.yml", "--retry-file"],
    ["run", "x.yml", "--format", "xml"],
    ["job", "wait", "1", "--timeout", "-5"],
    ["job", "wait", "1", "--timeout", "nan"],
    ["job", "wait", "1", "--timeout", "inf"],
    ["job", "wait", "1", "--timeout", "soon"],
    ["job", "wait", "1", "--timeout"],
    ["job", "wait"],
    ["job", "stop"],
    ["job", "remove"],
    ["job", "show"],
    ["job", "receive"],
    ["job", "receive", "1", "--format", "xml"],
    ["job", "list", "--newest", "0"],
    ["job", "list", "--newest", "-1"],
    ["job", "list", "--newest", "many"],
    ["job", "list", "--before", "yesterday"],
    ["job", "list", "--after", "2024-13-01"],
    ["job", "list", "--state", "Bogus"],
    ["job", "list", "--format", "xml"],
    ["inventory", "a", "b"],
    ["inventory", "-i"],
    ["plan", str(ROOT / "playbooks" / "hello.yml"), "-e", "not a pair"],
    ["plan", str(ROOT / "playbooks" / "hello.yml"), "-e", "1x=2"],
    ["plan", str(ROOT / "playbooks" / "hello.yml"), "-e", "[1, 2]"],
    ["plan", str(ROOT / "playbooks" / "hello.yml"), "-e", "{a: 1"],
    ["plan", str(ROOT / "playbooks" / "hello.yml"), "-e", "x='unclosed"],
    ["plan", str(ROOT / "playbooks" / "hello.yml"), "--start-at-job", "nosuchjob"],
]


@pytest.mark.parametrize("argv", BAD_COMMAND_LINES, ids=lambda a: " ".join(a))
def test_bad_command_line_exits_5_with_one_line(argv):
    code, _out, err = invoke(*argv)
    assert_clean(tuple(argv), code, err)
    assert code == 5, err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "x.yml", "--bogus"],
        ["job", "wait", "1", "--timeout", "-1"],
        ["job", "nosuch"],
        ["plan", "x.yml", "-e", "x='unclosed"],
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_command_line_through_a_real_process(argv, tmp_path):
    proc = run_runner(*argv, home=tmp_path, timeout=60, cwd=tmp_path)
    assert_clean(tuple(argv), proc.returncode, proc.stderr)
    assert proc.returncode == 5, proc.stderr
