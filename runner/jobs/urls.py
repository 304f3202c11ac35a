"""Server URLs in messages: the password masked, and the host:port a user looks for."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

# libpq and redis-py also take the password as a parameter: `...?password=SECRET`.
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.I)


def mask_url(url: str) -> str:
    """`url` with its password, if any (in its user part or its `password` parameter),
    shown as `***`: for every message and listing."""
    return _QUERY_PASSWORD.sub(r"\1***", _mask_user_password(url))


def _mask_user_password(url: str) -> str:
    try:
        parts = urlsplit(url)
        malformed = check_url(url, None) is not None
    except ValueError:
        malformed = True
    if malformed:  # everything before the last "@" may be a password typed unencoded
        return re.sub(r"^([a-z][a-z0-9+.-]*://)([^:@]*:)?.*@", r"\1\2***@", url, flags=re.I)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if _has_port(parts) else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _has_port(parts: Any) -> bool:
    try:
        return parts.port is not None
    except ValueError:
        return False


def endpoint(url: str) -> str:
    """HOST:PORT of a server URL, for the one line that says it cannot be reached."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or 'localhost'}:{port}" if port else (parts.hostname or "localhost")


def hide_password(url: str, text: str) -> str:
    """`text` (a driver's error message, say) with `url`'s passwords, if any, as `***`."""
    for password in _passwords(url):
        text = text.replace(password, "***").replace(unquote(password), "***")
    return text


def _passwords(url: str) -> list[str]:
    """The passwords `url` holds: its user part's and its `password` parameters'."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:
        return []
    found += [value for key, value in parse_qsl(parts.query) if key.lower() == "password"]
    found += [m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(url)]
    return [password for password in found if password]


def check_url(url: str, schemes: tuple[str, ...] | None) -> str | None:
    """What is wrong with a server URL (`schemes`: the ones allowed), or None. A password
    holding `@ / ? # :` or a space must be percent-encoded (`@` as `%40`): drivers would
    take part of it for the host, and print it in their errors."""
    if any(c.isspace() for c in url) or "#" in url:
        return "a URL holds no spaces or '#': percent-encode them in a password ('#' as %23)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:  # never its words: they may quote the password
        return "malformed URL: check the host and port, and percent-encode '@ / ? #' in a password"
    if schemes is not None and parts.scheme.lower() not in schemes:
        return f"expected a {' or '.join(s + '://' for s in schemes)} URL"
    if parts.netloc.count("@") > 1 or "@" in parts.path + parts.query:
        return "percent-encode '@', '/' and '?' in the password ('@' as %40, '/' as %2F)"
    return None
