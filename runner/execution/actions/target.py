"""What every converging action shares: its script's prelude and how its output is read.

An action is one /bin/sh script sent on stdin (one round trip): it inspects the target,
decides, changes what differs (nothing in check mode, `k` set) and prints named fields,
each framed by its byte length so that any content (a path with newlines, a file) comes
back intact: `NAME LENGTH\\n` then LENGTH bytes then `\\n`. The field `result` is
`changed` or `ok`; a failure is a non-zero exit with its reason on stderr.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from runner.errors import StepError

# `p` is the path acted on; `L` is -L to follow a link at `p` (empty: the link itself),
# `H` is -h for chown/chgrp on the link itself; `c` is set once something (would) change.
PRELUDE = r"""
c= L=-L H=
emit() { n=$(printf %s "$2" | wc -c); printf '%s %d\n%s\n' "$1" $n "$2"; }
emitf() { n=$(wc -c < "$2"); printf '%s %d\n' "$1" $n; cat -- "$2"; echo; }
fail() { printf '%s\n' "$*" >&2; exit 3; }
st() { stat $L -c "$1" -- "$p" 2>/dev/null || stat $L -f "$2" -- "$p" 2>/dev/null; }
act() { c=1; [ -n "$k" ] || "$@" || exit 1; }
attrs() {
  if [ -n "$m" ] && [ "$(st %a %Lp)" != "$m" ]; then act chmod -- "$m" "$p"; fi
  if [ -n "$o" ]; then set -- $(st '%u %U' '%u %Su')
    [ "$o" = "${1-}" ] || [ "$o" = "${2-}" ] || act chown $H -- "$o" "$p"; fi
  if [ -n "$g" ]; then set -- $(st '%g %G' '%g %Sg')
    [ "$g" = "${1-}" ] || [ "$g" = "${2-}" ] || act chgrp $H -- "$g" "$p"; fi
}
facts() { emit mode "$(st %a %Lp)"; emit owner "$(st %U %Su)"; emit group "$(st %G %Sg)"; }
"""
RESULT = '[ -n "$c" ] && emit result changed || emit result ok\n'


@dataclass
class Converged:
    """What a converging action found and did on the target."""

    changed: bool
    fields: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)  # added to the registered result
    diff: tuple[bytes, bytes] | None = None  # (before, after) to show with --diff


def assign(**values: Any) -> str:
    """Shell assignments of `values` (None as empty), each value quoted whatever it holds."""
    return " ".join(f"{name}={shlex.quote(_text(value))}" for name, value in values.items()) + "\n"


def _text(value: Any) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    return str(value)


def octal(mode: Any) -> str | None:
    """A playbook's mode ("0644", 644 or 0o644) as `stat %a` prints it ("644")."""
    if mode is None or mode == "":
        return None
    if isinstance(mode, int) and not isinstance(mode, bool) and mode < 0o1000:
        return f"{mode:o}"
    try:
        return f"{int(str(mode), 8):o}"
    except ValueError:
        raise StepError(f"'{mode}' is not an octal file mode like '0644'") from None


def owner(value: Any) -> Any:
    """A playbook's `owner`, refused when it holds `:`: chown would read `root:daemon` as an
    owner and a group, changing the group unasked and the step never converging."""
    if isinstance(value, str) and ":" in value:
        raise StepError(f"owner '{value}' is not a user name (set the group with group:)")
    return value


def parse_fields(output: bytes) -> dict[str, bytes]:
    """The framed fields a script printed (see the module's docstring)."""
    found: dict[str, bytes] = {}
    at = 0
    while at < len(output):
        end = output.find(b"\n", at)
        if end < 0:
            break
        name, _, size = output[at:end].decode("utf-8", "replace").partition(" ")
        if not size.isdigit():
            break
        start = end + 1
        found[name] = output[start : start + int(size)]
        at = start + int(size) + 1
    return found


def converged(rc: int | None, stdout: bytes, stderr: bytes) -> dict[str, bytes]:
    """The fields of a finished script; a StepError with its reason when it failed."""
    fields = parse_fields(stdout)
    if rc == 0 and fields.get("result") in (b"changed", b"ok"):
        return fields
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    reason = lines[-1] if lines else f"exit status {rc}"
    raise StepError(reason)
