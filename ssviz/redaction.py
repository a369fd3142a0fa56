"""How secrets appear in anything meant for other people: only their last 4 characters.

The results store keeps the last 4 digits (and a salted hash); reports, scans and
exports show the same, unless a user explicitly asks to reveal secrets.
"""

from __future__ import annotations

MASK = "•"


def last4(value: str) -> str:
    return str(value)[-4:]


def redact(value: str, reveal: bool = False) -> str:
    """``••••1546`` for ``2811546``-like values (the whole value only when ``reveal``)."""
    value = str(value)
    if reveal:
        return value
    hidden = max(len(value) - 4, 0)
    return MASK * min(hidden, 4) + last4(value) if hidden else MASK * len(value)
