"""The `service` action: a systemd unit started, stopped, restarted or reloaded, and
enabled or disabled, through systemctl.

One sh script per step: it makes sure systemd runs the host (systemctl is there and
/run/systemd/system exists, as sd_booted(3) checks), asks `systemctl is-active` and
`is-enabled`, and runs only what the unit needs (all of it named, not run, in --check).
Restarted and reloaded always act, so they are always `changed`.
"""

from __future__ import annotations

import shlex
from typing import Any

from runner.execution.actions.reply import MARK, Converged, Reply, changed, failed

_NO_SYSTEMD = {
    "systemctl": "no running systemd on this host: systemctl is not installed",
    "booted": "no running systemd on this host: /run/systemd/system is absent "
    "(PID 1 is not systemd)",
}

_BODY = r"""
if ! command -v systemctl >/dev/null 2>&1; then echo "$MARK nosystemd systemctl"; exit 3; fi
if [ ! -d /run/systemd/system ]; then echo "$MARK nosystemd booted"; exit 3; fi
act() {
    echo "$MARK do $1"
    [ "$check" = 1 ] || systemctl "$1" "$unit" || exit $?
}
active=$(systemctl is-active "$unit" 2>/dev/null)
case $enabled in
    true) systemctl is-enabled --quiet "$unit" 2>/dev/null || act enable ;;
    false) case $(systemctl is-enabled "$unit" 2>/dev/null) in
        enabled|enabled-runtime) act disable ;;
    esac ;;
esac
case $state:$active in
    started:active|started:activating|started:reloading) ;;
    started:*) act start ;;
    stopped:active|stopped:activating|stopped:reloading) act stop ;;
    restarted:*) act restart ;;
    reloaded:active) act reload ;;
    reloaded:*) act start ;;
esac
"""


def script(args: dict[str, Any], check: bool) -> str:
    """The step's script: check systemd, then the unit, then act on what differs."""
    enabled = args.get("enabled")
    lines = [
        f"MARK={shlex.quote(MARK)} unit={shlex.quote(str(args['name']))}",
        f"state={shlex.quote(str(args.get('state', '')))} check={int(check)}",
        f"enabled={'' if enabled is None else str(bool(enabled)).lower()}",
        _BODY,
    ]
    return "\n".join(lines)


def outcome(args: dict[str, Any], check: bool, reply: Reply) -> Converged:
    """Changed when systemctl was asked to do anything (in --check: would be)."""
    missing = reply.words("nosystemd")
    if missing:
        return failed(_NO_SYSTEMD.get(missing[0][0] if missing[0] else "", _NO_SYSTEMD["booted"]))
    done = [f"{verb} {args['name']}" for verb, *_ in reply.words("do")]
    if reply.rc != 0:
        last = done[-1] if done else f"ask about {args['name']}"
        return failed(f"systemctl could not {last} (exit status {reply.rc})")
    return changed(check, done)
