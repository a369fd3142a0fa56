"""The DuckDB results store: round trip, no secrets in clear, resume keys, export, concurrency."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ssviz.errors import SsvizError
from ssviz.records import Extraction, Measurement, SecretResult, UserResult
from ssviz.store import COMPARISON_COLUMNS, SCHEMA_VERSION, Store

SSN, CCN = "219099999", "4556737586899855"


def user_result(user: str, ssn: str = SSN, ccn: str = CCN, exposure: float = 12.5) -> UserResult:
    return UserResult(user=user, corpus_chars=1000, messages=10, corpus_hash="h", seconds=1.0, secrets=(
        SecretResult(type="ssn", value=ssn, template="my SSN is {d:3}-{d:2}-{d:4}", times_present=3,
                     measurements=(
                         Measurement("search", exposure=None, message="budget"),
                         Measurement("skewnorm", primary=True, exposure=exposure, ci=(11.0, 14.0),
                                     log_perplexity=40.0, log2_space_size=29.9, samples=100)),
                     extractions=(Extraction("dijkstra", found=False, nodes=100, seconds=0.1),)),
        SecretResult(type="ccn", value=ccn, template="card {d:4} {d:4} {d:4} {d:4}", times_present=20,
                     measurements=(Measurement("search", primary=True, exposure=53.15, rank=1),),
                     extractions=(Extraction("dijkstra", found=True, secret_rank=1, nodes=90),))))


def test_missing_or_empty_store_gives_empty_comparison(tmp_path):
    for path in (tmp_path / "none.duckdb", tmp_path / "empty.duckdb"):
        if path.name == "empty.duckdb":
            duckdb.connect(str(path)).close()
        df = Store(path, read_only=True).comparison()
        assert list(df.columns) == COMPARISON_COLUMNS and df.empty


def test_round_trip_comparison_and_tables(tmp_path):
    db = tmp_path / "r.duckdb"
    with Store(db) as s:
        run = s.start_run({"epochs": 3})
        s.save_user(run, user_result("alice"))
        s.save_user(run, user_result("bob", ssn="078051120", exposure=3.0))
    df = Store(db, read_only=True).comparison()
    assert list(df.columns) == COMPARISON_COLUMNS
    alice = df[df.user == "alice"].set_index("type")
    assert alice.loc["ccn", "exposure"] == pytest.approx(53.15)
    assert alice.loc["ccn", "exposure_method"] == "search" and bool(alice.loc["ccn", "extracted"])
    assert alice.loc["ssn", "exposure_method"] == "skewnorm" and not alice.loc["ssn", "extracted"]
    assert alice.loc["ssn", "last4"] == "9999" and alice.loc["ssn", "times_present"] == 3
    assert set(df[df.user == "bob"].last4) == {"1120", "9855"} and (df.run_id == run).all()
    meas = Store(db, read_only=True).table("measurements")
    assert len(meas) == 6 and meas["primary"].sum() == 4
    assert Store(db, read_only=True).table("runs").code_version[0]


def test_secrets_are_never_stored_in_clear(tmp_path):
    db = tmp_path / "r.duckdb"
    s = Store(db)
    s.save_user(s.start_run({}), user_result("alice"))
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for needle in (SSN, CCN, "219-09-9999", SSN[:5], CCN[:12], "4556 7375"):
        assert needle.encode() not in data
    assert b"9999" in data  # the last 4 digits are kept on purpose
    # the same secret hashes the same within a store and differently in another (per-store salt)
    other = Store(tmp_path / "other.duckdb")
    other.start_run({})
    assert s.secret_hash("ssn", SSN) == Store(db).secret_hash("ssn", SSN) != other.secret_hash("ssn", SSN)
    assert Store(db, read_only=True).table("secrets").secret_hash.iloc[0] in {
        s.secret_hash("ssn", SSN), s.secret_hash("ccn", CCN)}


def test_runs_resume_by_settings_and_users_are_replaced_not_duplicated(tmp_path):
    s = Store(tmp_path / "r.duckdb")
    a = s.start_run({"epochs": 3})
    s.save_user(a, user_result("alice"))
    assert s.start_run({"epochs": 3}) == a and s.done_users(a) == {"alice"}
    b = s.start_run({"epochs": 4})
    assert b != a and s.done_users(b) == set()
    s.save_user(a, user_result("alice", exposure=7.0))
    df = s.comparison(run_id=a)
    assert len(df) == 2 and df[df.type == "ssn"].exposure.iloc[0] == 7.0
    s.save_user(b, user_result("alice", exposure=9.0))
    latest = s.comparison()  # each user's latest run
    assert (latest.run_id == b).all() and latest[latest.type == "ssn"].exposure.iloc[0] == 9.0


def test_export_csv_and_parquet(tmp_path):
    s = Store(tmp_path / "r.duckdb")
    s.save_user(s.start_run({}), user_result("alice"))
    csv = pd.read_csv(s.export(tmp_path / "t.csv"), dtype={"last4": str})
    # read back with DuckDB: pandas would need pyarrow, which ssviz does not depend on
    par = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(s.export(tmp_path / "t.parquet"))]).df()
    for df in (csv, par):
        assert list(df.columns) == COMPARISON_COLUMNS and sorted(df.last4) == ["9855", "9999"]
    assert len(pd.read_csv(s.export(tmp_path / "m.csv", table="measurements"))) == 3
    with pytest.raises(SsvizError, match="csv or .parquet"):
        s.export(tmp_path / "t.xlsx")
    with pytest.raises(SsvizError, match="unknown table"):
        s.export(tmp_path / "t.csv", table="meta")


def test_read_only_refuses_writes_and_schema_version_is_checked(tmp_path):
    db = tmp_path / "r.duckdb"
    Store(db).start_run({})
    with pytest.raises(SsvizError, match="read-only"):
        Store(db, read_only=True).start_run({})
    con = duckdb.connect(str(db))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()
    with pytest.raises(SsvizError, match="schema version"):
        Store(db).start_run({})


WRITER = textwrap.dedent("""
    from tests.study.test_store import user_result
    from ssviz.store import Store
    s = Store({db!r})
    run = s.start_run({{}})
    for i in range({n}):
        s.save_user(run, user_result(f"user{{i:02d}}"))
""")


@pytest.mark.slow  # a second Python process: 4-10 s on a loaded 2-core machine
def test_concurrent_reads_while_another_process_writes(tmp_path):
    db = tmp_path / "r.duckdb"
    root = Path(__file__).resolve().parents[2]  # the checkout: `tests` is importable from there
    writer = subprocess.Popen([sys.executable, "-c", WRITER.format(db=str(db), n=8)], cwd=root)
    reader, seen = Store(db, read_only=True), []
    try:
        while writer.poll() is None:
            df = reader.comparison()
            # a user is visible with both of its secrets or not at all: writes are transactional
            assert (df.groupby("user").size() == 2).all()
            seen.append(df.user.nunique())
            time.sleep(0.01)
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert seen == sorted(seen) and len(seen) >= 2  # reads interleaved with the writes, never going back
    assert reader.comparison().user.nunique() == 8
