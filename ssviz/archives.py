"""The one rule for names inside archives (zip, tar) that ssviz unpacks or reads: stay inside the folder.

Maildir archives and zipped model directories are untrusted: a member named
``../x``, ``/etc/x``, ``C:\\x`` or with a NUL byte must never be written or read
as if it were inside the archive's folder.
"""

from __future__ import annotations

import re

_DRIVE = re.compile(r"^[A-Za-z]:")


def member_parts(name: str) -> tuple[str, ...] | None:
    """The relative path parts of member ``name`` (``\\`` read as ``/``, ``.`` and empty parts dropped),
    or None when the name points outside the archive's folder or names nothing."""
    unified = name.replace("\\", "/")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if unified.startswith("/") or _DRIVE.match(unified) or ".." in parts or "\x00" in name or not parts:
        return None
    return parts
