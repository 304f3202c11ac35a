"""The `package` action: packages present, absent or latest through apt, dnf or apk.

One sh script per step: it finds the manager (unless this host's is known already),
notes each package's installed version, acts (install, remove, upgrade) unless in
--check, and notes each version again. The step changed when a version differs, so an
install that found everything in place is `ok`. In --check the script asks instead what
would change: a package missing (present), installed (absent), or one the manager would
install or upgrade (latest: apt-get's simulation, dnf check-update, apk's --simulate).
"""

from __future__ import annotations

import shlex
from typing import Any

from runner.execution.actions.reply import MARK, Converged, Reply, changed, failed
from runner.planning.converge import package_names

MANAGERS = ("apt-get", "dnf", "apk")
_NONE = "-"  # a package's version when it is not installed

# Per manager: ver NAME (prints the installed version, or nothing), install/remove/latest
# NAMES, would_latest NAMES (prints the names an upgrade would install or upgrade), and
# refresh (the package lists).
_APT = r"""
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -q -o DPkg::Lock::Timeout=300 "$@"; }
ver() {
    s=$(dpkg-query -W -f='${Status} ${Version}' "${1%%=*}" 2>/dev/null) || return 0
    case $s in "install ok installed "*) printf '%s' "${s##* }" ;; esac
}
install() { apt_get -y install "$@"; }
remove() { apt_get -y remove "$@"; }
latest() { apt_get -y install "$@"; }
would_latest() {
    out=$(apt_get -s -y install "$@") || { printf '%s\n' "$out"; return 1; }
    printf '%s\n' "$out" | sed -n 's/^Inst \([^ ]*\) .*/\1/p'
}
refresh() { apt_get update; }
"""
_DNF = r"""
ver() { v=$(rpm -q --qf '%{EPOCH}:%{VERSION}-%{RELEASE}' "$1" 2>/dev/null) && printf '%s' "$v"; }
install() { dnf -y install "$@"; }
remove() { dnf -y remove "$@"; }
latest() { dnf -y install "$@" && dnf -y upgrade "$@"; }
would_latest() {
    for n; do [ -n "$(ver "$n")" ] || echo "$n"; done
    out=$(dnf -q check-update "$@"); rc=$?
    [ $rc = 100 ] || return $rc
    printf '%s\n' "$out" | while read -r n _; do [ -n "$n" ] && echo "${n%.*}"; done
}
refresh() { dnf -y makecache; }
"""
_APK = r"""
ver() {
    apk info -e "$1" >/dev/null 2>&1 || return 0
    apk list -I "$1" 2>/dev/null | sed -n '1s/ .*//p'
}
install() { apk add "$@"; }
remove() { apk del "$@"; }
latest() { apk add -u "$@"; }
would_latest() {
    out=$(apk add -s -u "$@") || { printf '%s\n' "$out"; return 1; }
    printf '%s\n' "$out" | sed -n -e 's/^([0-9/]*) Installing \([^ ]*\) .*/\1/p' \
        -e 's/^([0-9/]*) Upgrading \([^ ]*\) .*/\1/p'
}
refresh() { apk update; }
"""
_FUNCTIONS = {"apt-get": _APT, "dnf": _DNF, "apk": _APK}

# After the manager's functions: $mgr, $state, $check, $update and the names as "$@".
_BODY = r"""
vers() { when=$1; shift; for n; do v=$(ver "$n"); echo "$MARK $when $n ${v:-$NONE}"; done; }
if [ "$update" = 1 ] && [ "$check" = 0 ]; then refresh >&2 || exit $?; fi
vers before "$@"
todo=
case $state in
    present) for n; do [ -n "$(ver "$n")" ] || todo="$todo $n"; done ;;
    absent) for n; do [ -z "$(ver "$n")" ] || todo="$todo $n"; done ;;
esac
if [ "$check" = 1 ]; then
    if [ "$state" = latest ]; then todo=$(would_latest "$@") || exit $?; fi
    for n in $todo; do echo "$MARK would $n"; done
    exit 0
fi
case $state in
    present) [ -z "$todo" ] || install $todo || exit $? ;;
    absent) [ -z "$todo" ] || remove $todo || exit $? ;;
    latest) latest "$@" || exit $? ;;
esac
vers after "$@"
"""

_DETECT = r"""
for m in apt-get dnf apk; do
    if command -v "$m" >/dev/null 2>&1; then mgr=$m; break; fi
done
echo "$MARK manager ${mgr:-NONE}"
"""


def script(args: dict[str, Any], check: bool, facts: dict[str, str]) -> str:
    """The step's script: find the manager unless `facts` names it, then converge."""
    known = facts.get("manager", "")
    names = " ".join(shlex.quote(name) for name in package_names(args))
    lines = [
        "set -f",  # the names are split from $todo: no globbing (they hold no blanks)
        f"MARK={shlex.quote(MARK)} NONE={_NONE}",
        f"mgr={shlex.quote(known)} state={shlex.quote(str(args.get('state', 'present')))}",
        f"check={int(check)} update={int(bool(args.get('update_cache')))}",
        f"set -- {names}",
    ]
    if known:
        lines += [_FUNCTIONS[known], _BODY]
    else:
        lines += [_DETECT, 'case $mgr in ""|NONE) exit 3 ;; esac']
        for manager, functions in _FUNCTIONS.items():
            lines.append(f'if [ "$mgr" = {manager} ]; then {functions}\nfi')
        lines.append(_BODY)
    return "\n".join(lines)


def outcome(args: dict[str, Any], check: bool, facts: dict[str, str], reply: Reply) -> Converged:
    """Changed when a package's version differs after the step (in --check: when the
    script named any package that would change); the manager found is kept in `facts`."""
    found = reply.words("manager")
    if found and found[0] and found[0][0] in MANAGERS:
        facts["manager"] = found[0][0]
    elif found:
        return failed(f"no package manager found on this host (looked for {', '.join(MANAGERS)})")
    manager = facts.get("manager", "the package manager")
    if reply.rc != 0:
        return failed(f"{manager} failed (exit status {reply.rc})")
    before = {name: version for name, version, *_ in reply.words("before")}
    if check:
        gone = _NONE if args.get("state") == "absent" else "new"
        would = [name for name, *_ in reply.words("would")]
        return changed(True, [_what(name, before.get(name, _NONE), gone) for name in would])
    after = {name: version for name, version, *_ in reply.words("after")}
    moved = [name for name in before if before[name] != after.get(name)]
    return changed(False, [_what(name, before[name], after.get(name)) for name in moved])


def _what(name: str, before: str, after: str | None) -> str:
    """What happened (or would) to one package, judged by its versions before and after."""
    if before == _NONE:
        return f"install {name}"
    return f"remove {name}" if after in (None, _NONE) else f"upgrade {name}"
