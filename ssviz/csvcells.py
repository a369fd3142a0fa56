"""Cells of every CSV ssviz writes, safe to open in a spreadsheet.

A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
read as a formula by Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)``
in a user name exfiltrates the sheet when clicked). Such text cells get a
leading ``'``, which spreadsheets treat as "this is text". Numbers stay numbers:
only ``str`` values are touched, so a negative exposure is written as it is.
"""

from __future__ import annotations

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value):
    """``value`` with a ``'`` in front when it is text a spreadsheet would run as a formula; else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells (and column names) are :func:`neutralize`-d; numeric columns,
    booleans and missing values are left exactly as they are."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s) \
                or isinstance(s.dtype, pd.CategoricalDtype):
            out[col] = s.astype(object).map(neutralize)
    out.columns = [neutralize(c) for c in out.columns]
    return out


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as UTF-8 CSV (no index) with its text cells neutralized: the app's downloads.

    Lines end in CRLF (RFC 4180) so that a cell holding a lone carriage return is quoted too: with
    ``\\n`` line ends the CSV writer leaves it bare and a spreadsheet splits the row there."""
    return safe_frame(df).to_csv(index=False, lineterminator="\r\n").encode("utf-8")


class CsvSafeTables:
    """A results store whose ``comparison()`` and ``table()`` give :func:`safe_frame` copies, so that its
    own ``export`` (DuckDB's CSV writer, its checks and file handling) writes neutralized cells."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def comparison(self, *a, **k) -> pd.DataFrame:
        return safe_frame(self._store.comparison(*a, **k))

    def table(self, *a, **k) -> pd.DataFrame:
        return safe_frame(self._store.table(*a, **k))

    def export(self, path, table: str = "comparison"):
        """The store's ``export`` run with this object as ``self`` (its frames neutralized)."""
        return type(self._store).export(self, path, table=table)
