"""Server URLs in messages: the password masked, and the host:port a user looks for."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit


def mask_url(url: str) -> str:
    """`url` with its password, if any, shown as `***`: for every message and listing."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^@/]*@", "//***@", url)
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
    """`text` (a driver's error message, say) with `url`'s password, if any, as `***`."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    if not password:
        return text
    return text.replace(password, "***").replace(unquote(password), "***")
