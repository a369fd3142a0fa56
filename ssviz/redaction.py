"""How secrets appear in anything meant for other people: at most a small tail of their characters.

Every surface (reports, scans, the app, the command line a report records) goes
through :func:`redact` / :func:`tail`, so the rule lives in one place: a secret
of 4 or fewer characters shows nothing, a longer one at most a third of its
characters and never more than 4 (``•••120`` for an SSN). Showing the last 4 of
a 6-digit secret would leave only 100 candidates; a third leaves at least
10^(2n/3) of an n-digit secret's fillers unknown.
"""

from __future__ import annotations

MASK = "•"
MAX_SHOWN = 4  # never more characters than this, however long the secret

# The shortest secret of each kind (``ssviz.scan.KINDS``), for tails stored without their secret.
MIN_LENGTH = {"ssn": 9, "ccn": 13, "phone": 10, "aws": 16, "github": 36}


def shown_count(length: int) -> int:
    """How many trailing characters of a ``length``-character secret may be shown: none up to 4
    characters, at most a third above, and never more than :data:`MAX_SHOWN`."""
    return 0 if length <= 4 else min(MAX_SHOWN, length // 3)


def tail(value: str) -> str:
    """The trailing characters of ``value`` that :func:`redact` shows (``"120"`` for ``"078051120"``)."""
    value = str(value)
    n = shown_count(len(value))
    return value[len(value) - n:] if n else ""


def last4(value: str) -> str:
    """Kept for callers of the old name: the shown tail, which is at most 4 characters."""
    return tail(value)


def stored_tail(last: str, kind: str | None = None) -> str:
    """A tail stored without its secret (a store's ``last4`` column) cut to what the rule allows for the
    shortest secret of ``kind``: an SSN's stored ``1120`` is shown as ``120``."""
    last = str(last)
    n = shown_count(MIN_LENGTH.get(str(kind or "").lower(), 0)) if kind else len(last)
    return last[len(last) - n:] if n else ""


def redact(value: str, reveal: bool = False) -> str:
    """``•••••120`` for ``078051120`` (the whole value only when ``reveal``): see :func:`shown_count`."""
    value = str(value)
    if reveal:
        return value
    shown = tail(value)
    return MASK * min(len(value) - len(shown), 5) + shown


def redact_words(words, secrets, reveal: bool = False) -> list[str]:
    """``words`` (a command line) with every occurrence of each of ``secrets`` redacted, wherever it
    appears: after ``--secret``, in ``--secret=…``, after an abbreviation (``--sec``), or anywhere else."""
    words = [str(w) for w in words]
    if reveal:
        return words
    values = sorted({str(s) for s in secrets if str(s)}, key=len, reverse=True)
    out = []
    for w in words:
        for v in values:
            w = w.replace(v, redact(v))
        out.append(w)
    return out


def redact_tails(df):
    """A copy of a comparison frame (columns ``type`` and ``last4``) whose stored tails are cut to what
    :func:`stored_tail` allows for each row's kind: what the app and the CLI show and download."""
    if df is None or "last4" not in getattr(df, "columns", ()) or "type" not in df.columns:
        return df
    out = df.copy()
    out["last4"] = [stored_tail(l4, t) for l4, t in zip(out["last4"].astype(str), out["type"].astype(str))]
    return out
