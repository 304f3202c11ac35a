"""`file`: a path is a file, a directory, a link, touched, or absent, with a mode and owner.

As Ansible's `file` module: `state: file` (the default) only checks that a regular file
is there (a link to one counts) and gives it its attributes; `directory` creates it and
its parents; `touch` creates a file or updates its time, and so always changes; `link`
makes `path` a symbolic link to `src` (replacing a link that pointed elsewhere, never a
file or directory); `absent` removes a file, a link or a whole directory tree.
"""

from __future__ import annotations

from typing import Any

from runner.errors import StepError
from runner.execution.actions.target import PRELUDE, RESULT, Converged, assign, octal, owner

STATES = ("file", "directory", "absent", "touch", "link")

_BODY = r"""
[ "$s" != link ] || L= H=-h m=
if [ -h "$p" ]; then t=link; elif [ -d "$p" ]; then t=directory
elif [ -f "$p" ]; then t=file; elif [ -e "$p" ]; then t=other; else t=absent; fi
emit type "$t"
if [ "$t" = link ]; then emit src "$(readlink -- "$p")"; fi
if [ "$t" != absent ]; then facts; fi
relink() { rm -f -- "$p" && ln -s -- "$src" "$p"; }
case $s in
absent) [ "$t" = absent ] || act rm -rf -- "$p" ;;
directory)
  if [ -d "$p" ]; then :; elif [ "$t" = absent ]; then act mkdir -p -- "$p"
  else fail "$p exists and is not a directory"; fi ;;
file)
  [ -e "$p" ] || fail "$p does not exist (state: file does not create it; state: touch does)"
  [ -f "$p" ] || fail "$p exists and is not a regular file" ;;
touch) act touch -- "$p" ;;
link)
  if [ "$t" = link ]; then [ "$(readlink -- "$p")" = "$src" ] || act relink
  elif [ "$t" = absent ]; then act ln -s -- "$src" "$p"
  else fail "$p exists and is not a link: remove it first (state: absent)"; fi ;;
esac
[ "$s" = absent ] || attrs
"""


def path_of(args: dict[str, Any]) -> str:
    """The rendered `path`, refused when empty or the root (never removed, never replaced)."""
    path = str(args.get("path") or "")
    if not path:
        raise StepError("path is empty")
    if _names_a_root_or_dot(path) and args.get("state") in ("absent", "link"):
        raise StepError(f"refusing state: {args['state']} on {path}")
    return path


def _names_a_root_or_dot(path: str) -> bool:
    """Whether `path` is the root or ends in `.` or `..` (`/`, `//`, `/.`, `/tmp/..`, `.`):
    such a path is never removed or replaced, so --check says so as the run would."""
    return path.rstrip("/").rsplit("/", 1)[-1] in ("", ".", "..")


def script(args: dict[str, Any], check: bool, diff: bool) -> str:
    """The /bin/sh script that brings `path` to `state` (or, with `check`, says whether
    it would change it)."""
    state = str(args.get("state") or "file")
    if state not in STATES:
        raise StepError(f"unknown state '{state}' (one of {', '.join(STATES)})")
    if state == "link" and not args.get("src"):
        raise StepError("state: link needs src, the path the link points to")
    values = assign(
        p=path_of(args),
        s=state,
        src=args.get("src"),
        m=octal(args.get("mode")),
        o=owner(args.get("owner")),
        g=args.get("group"),
        k=check,
    )
    return PRELUDE + values + _BODY + RESULT


def result(args: dict[str, Any], fields: dict[str, bytes]) -> Converged:
    """What the script reported: changed or not, the registered `path` and `state`, and
    the path's attributes before and after for --diff."""
    state = str(args.get("state") or "file")
    found = {name: value.decode("utf-8", "replace") for name, value in fields.items()}
    before = _describe(found)
    after = _describe(_expected(args, state, found))
    changed = found["result"] == "changed"
    facts = {"path": str(args["path"]), "state": state}
    return Converged(changed, found, facts, (before, after) if before != after else None)


def _expected(args: dict[str, Any], state: str, found: dict[str, str]) -> dict[str, str]:
    """The path's attributes as the step leaves them."""
    if state == "absent":
        return {"type": "absent"}
    kind = found.get("type", "absent")
    if state == "touch":
        kind = kind if kind in ("file", "directory", "other") else "file"
    elif state == "link" or kind != "link":  # a link to a file or directory stays one
        kind = state
    wanted = {
        "type": kind,
        "mode": octal(args.get("mode")) if state != "link" else None,
        "owner": args.get("owner"),
        "group": args.get("group"),
        "src": args.get("src") if state == "link" else None,
    }
    return {**found, "type": kind, **{k: str(v) for k, v in wanted.items() if v is not None}}


def _describe(found: dict[str, str]) -> bytes:
    """The attributes shown in a diff, one per line."""
    kind = found.get("type", "absent")
    lines = [f"state: {kind}"]
    if kind != "absent":
        shown = {**found, "mode": f"0{found['mode']}" if found.get("mode") else ""}
        keys = ("src", "mode", "owner", "group")
        lines += [f"{key}: {shown[key]}" for key in keys if shown.get(key)]
    if kind != "link":
        lines = [line for line in lines if not line.startswith("src: ")]
    return "".join(line + "\n" for line in lines).encode("utf-8")
