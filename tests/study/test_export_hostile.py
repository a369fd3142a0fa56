"""``enron-export`` of a store whose user names are spreadsheet formulas: neutralized text, numbers intact."""

from __future__ import annotations

import pandas as pd
import pytest

from ssviz.cli import main
from ssviz.records import Measurement, SecretResult, UserResult
from ssviz.store import COMPARISON_COLUMNS, Store

USERS = ["=HYPERLINK(\"http://x.example\",\"a\")", "+cmd", "-1+1", "@SUM(A1)", "\t=1", "\r=2", "plain-user"]


def result(user: str, exposure: float) -> UserResult:
    return UserResult(user=user, corpus_chars=1000, messages=10, corpus_hash="h", seconds=1.0, secrets=(
        SecretResult(type="ssn", value="219099999", template="=cmd SSN {d:3}-{d:2}-{d:4}", times_present=3,
                     measurements=(Measurement("skewnorm", primary=True, exposure=exposure, ci=(-1.0, 1.0),
                                               log_perplexity=40.0, log2_space_size=29.9, samples=100),)),))


@pytest.fixture
def store(tmp_path):
    db = tmp_path / "r.duckdb"
    with Store(db) as s:
        run = s.start_run({})
        for i, u in enumerate(USERS):
            s.save_user(run, result(u, 2.5 + i))
    return db


@pytest.mark.parametrize("table", ["comparison", "users", "secrets"])
def test_enron_export_csv_neutralizes_formula_text(store, tmp_path, table):
    out = tmp_path / f"{table}.csv"
    assert main(["enron-export", "--db", str(store), "--out", str(out), "--table", table]) == 0
    df = pd.read_csv(out, keep_default_na=False, dtype=str)
    for col in df.columns:
        for cell in df[col]:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (col, cell)
            assert not cell.startswith("-") or _number(cell), (col, cell)
    if table == "comparison":
        assert list(df.columns) == COMPARISON_COLUMNS
        assert sorted(df["user"]) == sorted(("'" + u if u[0] in "=+-@\t\r" else u) for u in USERS)
        assert sorted(float(x) for x in df["exposure"]) == sorted(2.5 + i for i in range(len(USERS)))


def test_enron_export_parquet_keeps_values_as_they_are(store, tmp_path):
    import duckdb
    out = tmp_path / "t.parquet"
    assert main(["enron-export", "--db", str(store), "--out", str(out)]) == 0
    df = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(out)]).df()
    assert sorted(df["user"]) == sorted(USERS)


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def test_enron_show_shows_at_most_a_third_of_each_secret(store, capsys):
    assert main(["enron-show", "--db", str(store)]) == 0
    out = capsys.readouterr().out
    assert "9999" not in out and " 999 " in out  # the SSN 219-09-9999: its stored last 4 cut to 3


@pytest.mark.parametrize("kind,stored,shown", [("ssn", "1120", "120"), ("SSN", "1120", "120"), ("ccn", "1111", "1111"),
                                               ("phone", "0134", "134"), ("unknown", "1234", "")])
def test_stored_tails_are_cut_to_what_the_kind_allows(kind, stored, shown):
    from ssviz.redaction import redact_tails, stored_tail
    assert stored_tail(stored, kind) == shown
    df = redact_tails(pd.DataFrame({"type": [kind], "last4": [stored], "user": ["u"]}))
    assert list(df["last4"]) == [shown]
