"""One-line messages: long values cut short and long lists summarized, so an error never floods a terminal."""

from __future__ import annotations

import re
from collections.abc import Iterable


def clip(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters with a count of what was left out: messages stay one short line."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def summarize(items: Iterable, limit: int = 5) -> str:
    """The first ``limit`` items, comma-separated, and how many more (for lists of names in a message)."""
    items = list(items)
    shown = ", ".join(clip(str(i), 60) for i in items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit:,} more"


# the password part runs to the last @ before the host: a password may hold @ itself
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)?[^\s/@:'\"<>]+:[^\s/'\"<>]*@")
_SCHEME_USER = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/'\"<>]+@")


def hide_credentials(text) -> str:
    """``text`` with the credentials of any URL or address replaced by ``***``: ``ray://alice:pw@host:10001``
    becomes ``ray://***@host:10001`` (also ``user:pw@host`` without a scheme and ``scheme://token@host``).
    Every message or result that shows an address goes through this: a password typed into an option never
    reaches a terminal, a log or a JSON result."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme') or ''}***@", str(text))
    return _SCHEME_USER.sub(lambda m: f"{m.group('scheme')}***@", text)
