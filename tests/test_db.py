"""Hostile results databases: every DuckDB file ssviz reads or writes goes through ssviz.db's safe open.

Each attack is tried on the library (study store and sweeps), the CLI and the comparison page's upload:
the file is refused with one line naming the problem, nothing of the server's files comes back, no
extension is fetched, and a refused file is left byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import time

import duckdb
import pytest

from ssviz import db
from ssviz.cli import main as cli_main
from ssviz.errors import MissingFileError, SsvizError
from ssviz.records import SweepRun
from ssviz.store import BUNDLED_STUDY, COMPARISON_COLUMNS, Store
from ssviz.sweeps import SWEEPS, save_run, list_sweeps, load_runs
from ssviz.paths import bundled
from tests.study.test_store import user_result

BUNDLED_SWEEP = bundled("defenses/demo-sweep.duckdb")
PASSWD_LINE = "root:"  # what /etc/passwd starts with: must never come back


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """A genuine ssviz study store (two users), made once; tests get a copy."""
    path = tmp_path_factory.mktemp("genuine") / "study.duckdb"
    s = Store(path)
    run = s.start_run({"epochs": 1})
    s.save_user(run, user_result("alice"))
    s.save_user(run, user_result("bob", ssn="078051120"))
    return path


@pytest.fixture
def study(genuine, tmp_path):
    path = tmp_path / "study.duckdb"
    shutil.copyfile(genuine, path)
    return path


def doctor(path, *statements) -> None:
    """Change a file behind ssviz's back, as an attacker would (a plain DuckDB connection, everything allowed)."""
    con = duckdb.connect(str(path))
    try:
        for stmt in statements:
            con.execute(stmt)
    finally:
        con.close()


# Each attack: (name, statements applied to a genuine store, words expected in the refusal)
ATTACKS = {
    "secrets-view-read_text": (["DROP TABLE secrets",
                                "CREATE VIEW secrets AS SELECT content AS \"user\", content AS type, content AS last4, "
                                "1 AS times_present, 'x' AS secret_hash, 1 AS run_id FROM read_text('/etc/passwd')"],
                               "view 'secrets'"),
    "users-view-read_csv": (["DROP TABLE users",
                             "CREATE VIEW users AS SELECT column0 AS \"user\", 1 AS run_id, 1 AS corpus_chars, "
                             "1 AS messages FROM read_csv('/etc/passwd', header=false, sep=':')"],
                            "view 'users'"),
    "macro-shadows-now": (["CREATE MACRO now() AS TIMESTAMP '2000-01-01'"], "macro 'now'"),
    "table-macro": (["CREATE MACRO passwd() AS TABLE SELECT * FROM read_text('/etc/passwd')"], "macro 'passwd'"),
    "missing-column": (["ALTER TABLE secrets DROP COLUMN times_trained"], "columns"),
    "extra-column": (["ALTER TABLE users ADD COLUMN note VARCHAR"], "columns"),
    "generated-column": (["ALTER TABLE meta RENAME TO meta_old",
                          "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, "
                          "home VARCHAR GENERATED ALWAYS AS (current_setting('home_directory')))",
                          "INSERT INTO meta (key, value) SELECT * FROM meta_old", "DROP TABLE meta_old"],
                         "columns"),
    "extra-table": (["CREATE TABLE notes (a INTEGER)"], "table 'notes'"),
    "other-schema": (["CREATE SCHEMA evil", "CREATE TABLE evil.secrets (a INTEGER)"], "evil"),
    "check-constraint": (["ALTER TABLE runs RENAME TO runs_old",
                          "CREATE TABLE runs (run_id INTEGER PRIMARY KEY, settings_key VARCHAR NOT NULL, "
                          "settings JSON NOT NULL, code_version VARCHAR NOT NULL, source VARCHAR, "
                          "started TIMESTAMP NOT NULL, finished TIMESTAMP, CHECK (length(source) < 1000))",
                          "INSERT INTO runs SELECT * FROM runs_old", "DROP TABLE runs_old"], "columns"),
    "extension-function-view": (["CREATE MACRO st_point(a, b) AS a + b",
                                 "CREATE VIEW extractions_v AS SELECT st_point(1, 2) AS p",
                                 "DROP MACRO st_point"], "view 'extractions_v'"),
    "newer-schema-version": (["UPDATE meta SET value = '99' WHERE key = 'schema_version'"], "schema version '99'"),
    "sweeps-marker": (["UPDATE meta SET value = 'ssviz-sweeps' WHERE key = 'schema'"], "sweeps database"),
}


def _one_line(text: str) -> None:
    assert "\n" not in text.strip() and PASSWD_LINE not in text and "Traceback" not in text


@pytest.mark.slow
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_doctored_store_is_refused_by_every_reader_and_writer(study, attack, capsys):
    statements, words = ATTACKS[attack]
    doctor(study, *statements)
    before = sha(study)
    for read in (lambda: Store(study, read_only=True).comparison(), lambda: Store(study).start_run({})):
        with pytest.raises(SsvizError, match="not a study results store|schema version|sweeps database") as e:
            read()
        assert words in str(e.value)
        _one_line(str(e.value))
    assert sha(study) == before  # refused, not modified (not even the schema marker)
    for argv in (["enron-show", "--db", str(study)],
                 ["enron-export", "--db", str(study), "--out", str(study.parent / "t.csv")]):
        assert cli_main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("error: ") and words in err
        _one_line(err)
    assert not (study.parent / "t.csv").exists() and sha(study) == before


NOT_DUCKDB = {
    "sqlite": "a SQLite database",
    "text": "not a DuckDB database file",
    "empty-file": "an empty file",
    "folder": "a folder",
}


def _make_not_duckdb(path, kind: str) -> None:
    if kind == "sqlite":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE secrets (user TEXT)")
        con.commit()
        con.close()
    elif kind == "text":
        path.write_text("root:x:0:0:root:/root:/bin/bash\n" * 20)
    elif kind == "empty-file":
        path.write_bytes(b"")
    else:
        path.mkdir()


@pytest.mark.parametrize("kind", sorted(NOT_DUCKDB))
def test_a_file_that_is_not_duckdb_is_refused_with_one_line_and_left_alone(tmp_path, kind, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # where DuckDB would download an extension to
    path = tmp_path / "r.duckdb"
    _make_not_duckdb(path, kind)
    before = sha(path) if path.is_file() else None
    t0 = time.perf_counter()
    for call in (lambda: Store(path, read_only=True).comparison(), lambda: Store(path).start_run({}),
                 lambda: load_runs(path), lambda: list_sweeps(path)):
        with pytest.raises(SsvizError, match=NOT_DUCKDB[kind]):
            call()
    assert cli_main(["enron-show", "--db", str(path)]) == 2
    err = capsys.readouterr().err
    assert NOT_DUCKDB[kind] in err
    _one_line(err)
    assert time.perf_counter() - t0 < 10  # no download attempt (DuckDB tries sqlite_scanner for a SQLite file)
    assert not (tmp_path / "home" / ".duckdb").exists()
    assert (sha(path) if path.is_file() else None) == before


def test_the_safe_configuration_itself_blocks_file_access_and_extension_loading(tmp_path, monkeypatch):
    """Below the catalog check: a connection opened by ssviz.db cannot read files, load extensions or be
    reconfigured, even for a query ssviz itself would never run."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = tmp_path / "x.duckdb"
    doctor(path, "CREATE TABLE t (a INTEGER)")
    con = db._open(path, False, 5.0, "test file")
    try:
        for sql in ("SELECT * FROM read_text('/etc/passwd')", "SELECT * FROM read_csv('/etc/passwd')",
                    "SET enable_external_access = true", "SET autoinstall_known_extensions = true",
                    "LOAD sqlite", "INSTALL spatial", f"ATTACH '{tmp_path / 'other.duckdb'}'"):
            with pytest.raises(duckdb.Error):
                con.execute(sql).fetchall()
    finally:
        con.close()
    # and DuckDB's own SQLite detection (which downloads sqlite_scanner) fails fast without fetching anything
    lite = tmp_path / "lite.db"
    _make_not_duckdb(lite, "sqlite")
    with pytest.raises(SsvizError, match="cannot open"):
        db._open(lite, False, 5.0, "test file")
    assert not (tmp_path / "home" / ".duckdb").exists()


def test_another_tools_database_is_refused_not_modified(tmp_path):
    """Item 7: a non-empty DuckDB file without ssviz's marker is never written (no tables added, no half-commit)."""
    path = tmp_path / "theirs.duckdb"
    doctor(path, "CREATE TABLE orders (id INTEGER, amount DOUBLE)", "INSERT INTO orders VALUES (1, 9.5)",
           "CREATE VIEW v AS SELECT * FROM orders")
    before = sha(path)
    run = SweepRun("s", "hidden=8", "hidden", "8", None, None, 0, 1.0, "exact", 1, 2.0, 2.0, 1, None, 1.0, "[]", "{}")
    for write in (lambda: Store(path).start_run({}), lambda: Store(path).save_user(1, user_result("alice")),
                  lambda: save_run(path, run)):
        with pytest.raises(SsvizError, match="is not a (study results store|sweeps database)"):
            write()
    assert sha(path) == before
    with duckdb.connect(str(path), read_only=True) as con:
        assert sorted(r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()) == ["orders"]
    # the two kinds of ssviz file are not confused either
    sweeps = tmp_path / "sweeps.duckdb"
    save_run(sweeps, run)
    with pytest.raises(SsvizError, match="is a sweeps database, not a study results store"):
        Store(sweeps).start_run({})
    study = tmp_path / "study.duckdb"
    Store(study).start_run({})
    with pytest.raises(SsvizError, match="is a study results store, not a sweeps database"):
        load_runs(study)


def test_an_empty_duckdb_database_reads_empty_and_is_initialized_on_first_write(tmp_path):
    path = tmp_path / "new.duckdb"
    duckdb.connect(str(path)).close()
    assert Store(path, read_only=True).comparison().empty and load_runs(path).empty
    Store(path).save_user(Store(path).start_run({}), user_result("alice"))
    assert len(Store(path, read_only=True).rows()) == 2
    with duckdb.connect(str(path), read_only=True) as con:
        assert dict(con.execute("SELECT key, value FROM meta").fetchall())["schema"] == "ssviz-study"


def test_bundled_files_made_before_the_marker_are_read_unchanged_and_marked_when_written(tmp_path):
    for path, read in ((BUNDLED_STUDY, lambda p: Store(p, read_only=True).comparison()),
                       (BUNDLED_SWEEP, lambda p: range(int(list_sweeps(p)["runs"].sum())))):
        before = sha(path)
        assert len(read(path)) > 0
        assert sha(path) == before  # reading never writes the marker into a shipped file
        copy = tmp_path / path.name
        shutil.copyfile(path, copy)
        rows = len(read(copy))
        if path == BUNDLED_STUDY:
            Store(copy).finish_run(int(Store(copy, read_only=True).rows()[0].run_id))
        else:
            save_run(copy, SweepRun("new", "hidden=8", "hidden", "8", None, None, 0, None, None, None, None, None,
                                     1, None, 1.0, "[]", "{}"))
        with duckdb.connect(str(copy), read_only=True) as con:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        assert meta["schema"] == ("ssviz-study" if path == BUNDLED_STUDY else "ssviz-sweeps")
        assert meta["schema_version"] == "1"
        assert len(read(copy)) >= rows
    assert len(load_runs(BUNDLED_SWEEP)) > 0


def test_missing_results_file_is_an_error_for_the_cli_and_empty_for_the_library(tmp_path, capsys):
    missing = tmp_path / "typo.duckdb"
    assert list(Store(missing, read_only=True).comparison().columns) == COMPARISON_COLUMNS
    with pytest.raises(MissingFileError, match="not found"):
        Store(missing, read_only=True, missing_ok=False).rows()
    assert isinstance(MissingFileError("x"), FileNotFoundError)
    for argv in (["enron-show", "--db", str(missing)], ["enron-show", "--db", str(missing), "--json"],
                 ["enron-export", "--db", str(missing), "--out", str(tmp_path / "t.csv")]):
        assert cli_main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and "results file not found" in err and str(missing) in err
    assert not missing.exists() and not (tmp_path / "t.csv").exists()


def test_store_rows_give_none_not_nan_for_a_secret_no_method_measured(tmp_path, capsys):
    from ssviz.records import Measurement, SecretResult, UserResult
    path = tmp_path / "r.duckdb"
    s = Store(path)
    s.save_user(s.start_run({}), UserResult("carol", 100, 1, secrets=(SecretResult(
        "ssn", "219099999", "SSN {d:9}", 2, measurements=(Measurement("search", message="budget"),)),)))
    (row,) = Store(path, read_only=True).rows()
    assert row.exposure is None and row.exposure_method is None and row.extracted is False
    assert cli_main(["enron-show", "--db", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and '"exposure": null' in out and '"exposure_method": null' in out


@pytest.mark.slow
def test_a_lock_held_by_another_connection_is_waited_for_then_reported(tmp_path):
    path = tmp_path / "r.duckdb"
    Store(path).start_run({})
    holder = duckdb.connect(str(path))  # this process holds it for writing, with another configuration
    try:
        t0 = time.perf_counter()
        with pytest.raises(SsvizError, match="stayed locked"):
            Store(path, read_only=True, lock_timeout=0.5).rows()
        assert 0.4 < time.perf_counter() - t0 < 5
    finally:
        holder.close()
    assert Store(path, read_only=True).rows() == []


def test_checks_are_cached_only_while_the_file_is_unchanged(study):
    assert len(Store(study, read_only=True).rows()) == 4
    doctor(study, "CREATE MACRO now() AS TIMESTAMP '2000-01-01'")  # changed after it passed
    with pytest.raises(SsvizError, match="macro 'now'"):
        Store(study, read_only=True).rows()


@pytest.mark.slow
def test_the_comparison_page_refuses_a_hostile_upload_with_one_message(study):
    from tests.app.test_app import open_page
    doctor(study, *ATTACKS["secrets-view-read_text"][0])
    at = open_page("comparison")
    at.selectbox(key="w_cmp_store").select("upload").run()
    at.file_uploader(key="w_cmp_upload").upload("study.duckdb", study.read_bytes()).run()
    assert not at.exception
    assert len(at.error) == 1 and "view 'secrets'" in at.error[0].value
    assert PASSWD_LINE not in at.error[0].value
    assert not at.metric and not at.dataframe


# --- uploaded results files (ui.cache) --------------------------------------------------------------
UPLOAD = """
import os, signal, sys
from ui.cache import uploaded_results_file
path = uploaded_results_file(open(sys.argv[1], "rb").read())
print(path, flush=True)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _upload_in_process(tmp_path, source, how: str):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", UPLOAD, str(source), how], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    return Path(done.stdout.strip()), done


@pytest.mark.slow
def test_uploaded_results_files_are_private_and_removed_at_exit_or_on_the_next_start(tmp_path):
    path, done = _upload_in_process(tmp_path, BUNDLED_STUDY, "exit")
    assert done.returncode == 0, done.stderr
    assert path.parent.parent == tmp_path / "tmp" and not path.exists()  # removed at exit
    killed, done = _upload_in_process(tmp_path, BUNDLED_STUDY, "kill")
    assert done.returncode != 0 and killed.exists()  # kill -9: no exit handler ran
    assert killed.stat().st_mode & 0o777 == 0o600 and killed.parent.stat().st_mode & 0o777 == 0o700
    assert killed.read_bytes() == BUNDLED_STUDY.read_bytes()
    _upload_in_process(tmp_path, BUNDLED_STUDY, "exit")
    assert not killed.parent.exists()  # the next start removed the dead process's folder


def test_uploaded_results_files_are_bounded_and_checked_before_reading(tmp_path, study):
    import stat
    from ui import cache
    first = cache.uploaded_results_file(BUNDLED_STUDY.read_bytes())
    assert stat.S_IMODE(first.stat().st_mode) == 0o600 and stat.S_IMODE(first.parent.stat().st_mode) == 0o700
    assert first.parent.name.startswith("ssviz-session-") and cache.uploaded_results_file(
        BUNDLED_STUDY.read_bytes()) == first  # the same upload is written once
    assert len(Store(first, read_only=True).rows()) > 0
    doctor(study, *ATTACKS["users-view-read_csv"][0])
    hostile = cache.uploaded_results_file(study.read_bytes())
    with pytest.raises(SsvizError, match="view 'users'"):
        Store(hostile, read_only=True).comparison()
    for i in range(cache.MAX_UPLOADED_RESULTS + 3):
        cache.uploaded_results_file(f"not a database {i}".encode())
    assert len(list(first.parent.glob("results-*.duckdb"))) == cache.MAX_UPLOADED_RESULTS


def test_a_study_refuses_a_foreign_db_before_reading_any_mail(tmp_path, monkeypatch):
    from ssviz.enron import pipeline
    path = tmp_path / "theirs.duckdb"
    doctor(path, "CREATE TABLE orders (id INTEGER)")
    before = sha(path)
    monkeypatch.setattr(pipeline, "build_corpora", lambda *a, **k: pytest.fail("read mail before checking --db"))
    for db_path in (path, tmp_path / "lite.db"):
        if db_path.name == "lite.db":
            _make_not_duckdb(db_path, "sqlite")
        with pytest.raises(SsvizError, match="is not a study results store|SQLite"):
            pipeline.run_study(tmp_path / "mail", db_path)
    assert sha(path) == before
