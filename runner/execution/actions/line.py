"""`line`: one line of a text file present or absent, as Ansible's `lineinfile`.

With `regexp`, the last line matching it is replaced by `line` (state present) or every
matching line is removed (state absent); without, the line itself is looked for. A line
not found is added at the end, or after the last line matching `insertafter`, or before
the last line matching `insertbefore` (`BOF`: at the start). Regular expressions are
POSIX extended ones, matched by awk on the target (with LC_ALL=C), not Python's.

The new content is computed into a temporary file and, when it differs, written beside
the file and renamed over it with the file's mode and owner, so a reader sees the old
file or the new one, never a part (through a link, the file linked to is rewritten in
place). A missing file fails unless `create: true`.
"""

from __future__ import annotations

from typing import Any

from runner.errors import StepError
from runner.execution.actions.file import path_of
from runner.execution.actions.target import PRELUDE, RESULT, Converged, assign, octal, owner

_AWK_VALUE_LIMIT = 128 * 1024 - 8  # a NAME=value string's limit, less the name

_BODY = r"""
export LC_ALL=C
case $p in */*) dir=${p%/*};; *) dir=.;; esac
dir=${dir:-/}
case $dir in -*) dir=./$dir;; esac  # mktemp takes no `--` everywhere
if [ -e "$p" ]; then [ -f "$p" ] || fail "$p exists and is not a regular file"; f=$p
elif [ "$s" = absent ]; then emit result ok; exit 0
elif [ -n "$cr" ]; then f=/dev/null; [ -d "$dir" ] || fail "cannot create $p: no directory $dir"
else fail "$p does not exist (create: true creates it)"; fi
for r in "$re" "$ia" "$ib"; do
  case $r in ''|EOF|BOF) continue;; esac
  R=$r awk 'BEGIN { if ("" ~ ENVIRON["R"]) x = 1 }' </dev/null 2>/dev/null ||
    fail "not a valid extended regular expression: $r"
done
if [ -n "$k" ] || [ -h "$p" ]; then t=$(mktemp) || exit 1
else t=$(mktemp "$dir/.runner-line.XXXXXX") || exit 1; fi
trap 'rm -f -- "$t"' EXIT
trap 'exit 1' HUP INT TERM PIPE
RL=$l RE=$re RA=$ia RB=$ib RS=$s awk '
{ a[NR] = $0 }
function last(re,  i, w) { w = 0; for (i = 1; i <= n; i++) if (a[i] ~ re) w = i; return w }
END {
  n = NR; l = ENVIRON["RL"]; re = ENVIRON["RE"]; ch = 0
  if (ENVIRON["RS"] == "absent") {
    for (i = 1; i <= n; i++) {
      if ((re != "") ? (a[i] ~ re) : (a[i] == l)) ch = 1; else print a[i]
    }
    exit (ch ? 7 : 0)
  }
  at = (re != "") ? last(re) : 0
  if (at) { if (a[at] != l) { a[at] = l; ch = 1 } }
  else {
    for (i = 1; i <= n; i++) if (a[i] == l) at = i
    if (!at) {
      ch = 1; at = n + 1; ra = ENVIRON["RA"]; rb = ENVIRON["RB"]
      if (rb == "BOF") at = 1
      else if (rb != "") { w = last(rb); if (w) at = w }
      else if (ra != "" && ra != "EOF") { w = last(ra); if (w) at = w + 1 }
      for (i = n; i >= at; i--) a[i + 1] = a[i]
      a[at] = l; n++
    }
  }
  for (i = 1; i <= n; i++) print a[i]
  exit (ch ? 7 : 0)
}' < "$f" > "$t"
case $? in 0) ;; 7) c=1 ;; *) fail "cannot read $p" ;; esac
if [ -n "$c" ] && [ -n "$D" ]; then emitf before "$f"; emitf after "$t"; fi
if [ -n "$c" ] && [ -z "$k" ]; then
  if [ -h "$p" ]; then cat -- "$t" > "$p" || exit 1
  else
    if [ "$f" = "$p" ]; then
      chmod "$(st %a %Lp)" "$t" && { chown "$(st %u:%g %u:%g)" "$t" 2>/dev/null || :; }
    else chmod "$(printf %o $((0666 & ~0$(umask))))" "$t"; fi || exit 1
    mv -f -- "$t" "$p" || exit 1
  fi
fi
[ "$s" = absent ] || attrs
"""


def script(args: dict[str, Any], check: bool, diff: bool) -> str:
    """The /bin/sh script that makes the line present or absent in `path` (or, with
    `check`, says whether it would change the file)."""
    state = str(args.get("state") or "present")
    line, regexp = args.get("line"), args.get("regexp")
    if state not in ("present", "absent"):
        raise StepError(f"unknown state '{state}' (one of present, absent)")
    if state == "present" and line is None:
        raise StepError("state: present needs line")
    if state == "absent" and line is None and not regexp:
        raise StepError("state: absent needs line or regexp")
    if line is not None and "\n" in str(line):
        raise StepError("line must be a single line (it holds a newline)")
    _refuse_oversized(args)
    values = assign(
        p=path_of(args),
        s=state,
        l=line,
        re=regexp,
        ia=args.get("insertafter"),
        ib=args.get("insertbefore"),
        cr=args.get("create"),
        m=octal(args.get("mode")),
        o=owner(args.get("owner")),
        g=args.get("group"),
        k=check,
        D=diff,
    )
    return PRELUDE + values + _BODY + RESULT


def _refuse_oversized(args: dict[str, Any]) -> None:
    """Refuse a value awk cannot be given: each reaches it as one environment string, which
    the kernel caps (MAX_ARG_STRLEN), so a longer one would fail the script's awk."""
    for key in ("line", "regexp", "insertafter", "insertbefore"):
        size = len(str(args.get(key) or "").encode())
        if size > _AWK_VALUE_LIMIT:
            raise StepError(f"{key} is {size} bytes long: at most {_AWK_VALUE_LIMIT}")


def result(args: dict[str, Any], fields: dict[str, bytes]) -> Converged:
    """What the script reported: changed or not, the registered `path`, and the file's
    content before and after for --diff."""
    changed = fields["result"] == b"changed"
    before, after = fields.get("before"), fields.get("after")
    content = (before, after) if before is not None and after is not None else None
    facts = {"path": str(args["path"])}
    found = {name: value.decode("utf-8", "replace") for name, value in fields.items()}
    return Converged(changed, found, facts, content)
