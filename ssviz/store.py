"""The per-user study's results in one embedded DuckDB file.

Tables (schema version :data:`SCHEMA_VERSION`, created on first use):

* ``meta(key, value)``: the ``schema`` marker (``ssviz-study``), ``schema_version`` and this
  store's random ``salt``;
* ``runs``: settings (JSON), a key of those settings, code version, source, started / finished;
* ``users``: per run and user, corpus size in characters and messages, timings;
* ``secrets``: per run and user, the secret's type, a salted scrypt hash and its
  last 4 digits, the template it was measured with, times present;
* ``measurements``: exposure by each method (with CI, rank, log-perplexity), and
  which one is the reported (``primary``) figure;
* ``extractions``: algorithm, whether the secret was found, nodes, seconds.

Secrets never enter the file in clear: results must be shareable with
stakeholders. (Caveat: a salted hash of a 9-digit SSN whose last 4 digits are
known leaves 10^5 candidates; scrypt makes each guess cost ~30 ms, so keep the
file among people who may know the secrets' last digits anyway.)

Every open goes through :mod:`ssviz.db`: a safe open (no file access, no
extensions) that refuses anything but this schema's base tables, one short
transaction per write with lock retries, so a running study (one writer) and the
app (readers) share the file. All values go through parameterized queries.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

import ssviz
from ssviz import db

from ssviz.errors import InvalidValueError, MissingFileError, SsvizError
from ssviz.paths import bundled, data_path
from ssviz.records import ComparisonRow, UserResult, names

BUNDLED_STUDY = bundled("study/enron-demo.duckdb")
DEFAULT_DB = data_path("results.duckdb")
SCHEMA_VERSION = 1
COMPARISON_COLUMNS = names(ComparisonRow)
EXPORT_TABLES = ("comparison", "runs", "users", "secrets", "measurements", "extractions")
LOCK_TIMEOUT = db.LOCK_TIMEOUT

SCHEMA = (
    "CREATE SEQUENCE IF NOT EXISTS run_ids START 1",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id INTEGER PRIMARY KEY, settings_key VARCHAR NOT NULL, settings JSON NOT NULL,
        code_version VARCHAR NOT NULL, source VARCHAR, started TIMESTAMP NOT NULL, finished TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS users (
        run_id INTEGER NOT NULL, "user" VARCHAR NOT NULL, corpus_chars BIGINT NOT NULL, messages INTEGER NOT NULL,
        corpus_hash VARCHAR, test_loss DOUBLE, train_seconds DOUBLE, seconds DOUBLE, stored TIMESTAMP NOT NULL,
        PRIMARY KEY (run_id, "user"))""",
    """CREATE TABLE IF NOT EXISTS secrets (
        run_id INTEGER NOT NULL, "user" VARCHAR NOT NULL, secret_hash VARCHAR NOT NULL, type VARCHAR NOT NULL,
        last4 VARCHAR NOT NULL, template VARCHAR NOT NULL, times_present INTEGER NOT NULL,
        times_trained INTEGER, PRIMARY KEY (run_id, "user", secret_hash))""",
    """CREATE TABLE IF NOT EXISTS measurements (
        run_id INTEGER NOT NULL, "user" VARCHAR NOT NULL, secret_hash VARCHAR NOT NULL, method VARCHAR NOT NULL,
        "primary" BOOLEAN NOT NULL, exposure DOUBLE, ci_low DOUBLE, ci_high DOUBLE, rank BIGINT,
        log_perplexity DOUBLE, log2_space_size DOUBLE, samples BIGINT, times_present INTEGER, seconds DOUBLE,
        message VARCHAR, PRIMARY KEY (run_id, "user", secret_hash, method))""",
    """CREATE TABLE IF NOT EXISTS extractions (
        run_id INTEGER NOT NULL, "user" VARCHAR NOT NULL, secret_hash VARCHAR NOT NULL, algorithm VARCHAR NOT NULL,
        found BOOLEAN NOT NULL, secret_rank INTEGER, nodes BIGINT, model_steps BIGINT, seconds DOUBLE,
        complete BOOLEAN, max_nodes BIGINT, PRIMARY KEY (run_id, "user", secret_hash, algorithm))""",
)

COMPARISON_SQL = """
WITH latest AS (SELECT "user", max(run_id) AS run_id FROM users WHERE ? IS NULL OR run_id = ? GROUP BY "user")
SELECT s."user", s.type, s.last4, s.times_present, m.exposure, m.method AS exposure_method,
       coalesce(e.found, false) AS extracted, u.corpus_chars, u.messages, s.run_id
FROM secrets s
JOIN latest l ON l."user" = s."user" AND l.run_id = s.run_id
JOIN users u ON u.run_id = s.run_id AND u."user" = s."user"
LEFT JOIN measurements m ON m.run_id = s.run_id AND m."user" = s."user" AND m.secret_hash = s.secret_hash
     AND m."primary"
LEFT JOIN extractions e ON e.run_id = s.run_id AND e."user" = s."user" AND e.secret_hash = s.secret_hash
     AND e.algorithm = 'dijkstra'
ORDER BY s."user", s.type, s.times_present DESC, s.last4
"""
STUDY = db.Schema("ssviz-study", SCHEMA_VERSION, SCHEMA, "results store")

# What every number read back may hold: table -> column -> least value (and finite). A file edited or
# damaged by hand must never print NaN, infinite or negative counts as results.
_EPS = 1e-6
VALUE_RULES = {
    "users": {"corpus_chars": 0, "messages": 0, "test_loss": -_EPS, "train_seconds": 0, "seconds": 0},
    "secrets": {"times_present": 0, "times_trained": 0},
    "measurements": {"exposure": -_EPS, "ci_low": None, "ci_high": None, "rank": 1, "log_perplexity": -_EPS,
                     "log2_space_size": 0, "samples": 0, "times_present": 0, "seconds": 0},
    "extractions": {"secret_rank": 1, "nodes": 0, "model_steps": 0, "seconds": 0, "max_nodes": 0},
}


def check_values(con, path) -> None:
    """Refuse, in one line naming the file, table, column and user, a number no run can have stored.

    Checked in SQL (a scan per column, no rows brought into Python), every time results are read.
    """
    for table, rules in VALUE_RULES.items():
        for col, least in rules.items():
            x = f'CAST("{col}" AS DOUBLE)'  # names from the fixed table above, never from input
            cond = f"isnan({x}) OR isinf({x})" + ("" if least is None else f" OR {x} < {least}")
            row = con.execute(f'SELECT "user", "{col}" FROM {table} WHERE "{col}" IS NOT NULL AND ({cond}) '
                              "LIMIT 1").fetchone()
            if row is not None:
                raise InvalidValueError(f"{path}: {table}.{col} holds {row[1]!r} (user {str(row[0])[:60]!r}): not "
                                        "a possible value (the file was edited or damaged); no result is shown "
                                        "from it")


class Store:
    """A results file; use as ``with Store(path) as s:`` (or call methods directly).

    ``missing_ok=False`` makes reading a file that does not exist an error (the CLI: a typo in
    ``--db`` must not look like an empty study); by default it reads as an empty store.
    """

    def __init__(self, path=DEFAULT_DB, read_only: bool = False, lock_timeout: float = LOCK_TIMEOUT,
                 missing_ok: bool = True):
        self.path = Path(path)
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        self.missing_ok = missing_ok
        self._salt: bytes | None = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        return None

    # --- connections (all through ssviz.db) ---------------------------------------------------
    @contextmanager
    def _write(self):
        """One short transaction on the checked file, with this store's salt in place."""
        if self.read_only:
            raise SsvizError(f"{self.path} was opened read-only")
        with db.writing(self.path, STUDY, self.lock_timeout) as con:
            # the salt must be unpredictable, so it is deliberately not seeded
            con.execute("INSERT INTO meta VALUES ('salt', ?) ON CONFLICT DO NOTHING", [os.urandom(16).hex()])
            yield con

    @contextmanager
    def _read(self):
        """A read-only connection to the checked file, or None when it holds no results yet."""
        if not self.missing_ok and not self.path.exists():
            raise MissingFileError(f"results file not found: {self.path}")
        with db.reading(self.path, STUDY, self.lock_timeout) as con:
            if con is not None:
                check_values(con, self.path)
            yield con

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """A read-only query as a DataFrame (None when the file or its tables do not exist yet)."""
        with self._read() as con:
            return None if con is None else con.execute(sql, params or []).df()

    def fetch(self, sql: str, params: list | None = None) -> list[tuple] | None:
        """A read-only query as Python values (NULL is None, never NaN); None without results yet."""
        with self._read() as con:
            return None if con is None else con.execute(sql, params or []).fetchall()

    # --- secrets -----------------------------------------------------------------------
    def salt(self) -> bytes:
        """This store's random salt (created with the schema)."""
        if self._salt is None:
            if self.read_only:
                rows = self.fetch("SELECT value FROM meta WHERE key = 'salt'")
                if not rows:
                    raise SsvizError(f"{self.path} has no salt yet (an empty store)")
                value = rows[0][0]
            else:
                with self._write() as con:
                    value = con.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()[0]
            if not isinstance(value, str) or len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
                raise InvalidValueError(f"{self.path}: meta.salt is not 32 hex digits (the file was edited or "
                                        "damaged): its secrets' hashes cannot be checked")
            self._salt = bytes.fromhex(value)
        return self._salt

    def secret_hash(self, kind: str, digits: str) -> str:
        """The salted scrypt hash a secret is stored under (never the digits themselves)."""
        return hashlib.scrypt(f"{kind}:{digits}".encode(), salt=self.salt(), n=2 ** 14, r=8, p=1,
                              dklen=32).hex()

    # --- writing ---------------------------------------------------------------------------
    def prepare(self) -> "Store":
        """Create the file, or check it is an ssviz results store, now: a foreign, locked or unwritable
        file fails before hours of work, not after."""
        self.salt()
        return self

    @staticmethod
    def run_key(settings: dict, source: str | None = None) -> str:
        """The key a run is resumed by: its settings and its source (an identity, not only a label)."""
        text = json.dumps([settings, source], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def start_run(self, settings: dict, source: str | None = None, source_id: str | None = None) -> int:
        """Resume the latest run with the same settings and source, or start one; returns its id.

        ``source`` is stored to tell people where the results came from; ``source_id``, when given,
        identifies the source for resuming instead of ``source`` (the study passes a fingerprint of
        the mail, so a moved maildir resumes and a different one at the same path does not).
        """
        key = self.run_key(settings, source_id if source_id is not None else source)
        with self._write() as con:
            row = con.execute("SELECT run_id FROM runs WHERE settings_key = ? ORDER BY run_id DESC LIMIT 1",
                              [key]).fetchone()
            if row:
                con.execute("UPDATE runs SET finished = NULL WHERE run_id = ?", [row[0]])
                return int(row[0])
            run_id = con.execute("SELECT nextval('run_ids')").fetchone()[0]
            con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, now(), NULL)",
                        [run_id, key, json.dumps(settings, sort_keys=True, default=str), ssviz.__version__,
                         source])
            return int(run_id)

    def finish_run(self, run_id: int) -> None:
        with self._write() as con:
            con.execute("UPDATE runs SET finished = now() WHERE run_id = ?", [run_id])

    def done_users(self, run_id: int) -> set[str]:
        return {u for u, in self.fetch('SELECT "user" FROM users WHERE run_id = ?', [run_id]) or []}

    def stored_corpora(self, run_id: int) -> dict[str, str | None]:
        """User -> corpus hash of the users already stored in a run (a changed corpus is measured again)."""
        return dict(self.fetch('SELECT "user", corpus_hash FROM users WHERE run_id = ?', [run_id]) or [])

    def save_user(self, run_id: int, result: UserResult) -> None:
        """Store one user's results atomically (all rows or none); secrets are hashed here, never stored."""
        user = result.user
        hashed = [(self.secret_hash(s.type, s.value), s) for s in result.secrets]
        with self._write() as con:
            for table in ("extractions", "measurements", "secrets", "users"):
                con.execute(f'DELETE FROM {table} WHERE run_id = ? AND "user" = ?', [run_id, user])
            con.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, now())",
                        [run_id, user, result.corpus_chars, result.messages, result.corpus_hash,
                         result.test_loss, result.train_seconds, result.seconds])
            for h, s in hashed:
                con.execute("INSERT INTO secrets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [run_id, user, h, s.type, str(s.value)[-4:], s.template, s.times_present,
                             s.times_trained])
                for m in s.measurements:
                    ci = m.ci or (None, None)
                    con.execute("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [run_id, user, h, m.method, m.primary, m.exposure, ci[0], ci[1], m.rank,
                                 m.log_perplexity, m.log2_space_size, m.samples, s.times_present, m.seconds,
                                 m.message])
                for x in s.extractions:
                    con.execute("INSERT INTO extractions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [run_id, user, h, x.algorithm, x.found, x.secret_rank, x.nodes, x.model_steps,
                                 x.seconds, x.complete, x.max_nodes])

    # --- reading ----------------------------------------------------------------------------
    def rows(self, run_id: int | None = None) -> list[ComparisonRow]:
        """The Table 5 view as records (missing numbers are None); empty for an empty store."""
        return [ComparisonRow(*r) for r in self.fetch(COMPARISON_SQL, [run_id, run_id]) or []]

    def comparison(self, run_id: int | None = None) -> pd.DataFrame:
        """The Table 5 view: one row per distinct secret per user (each user's latest run,
        or only ``run_id``); empty with the same columns for a missing or empty store."""
        df = self.query(COMPARISON_SQL, [run_id, run_id])
        if df is None:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
                COMPARISON_COLUMNS, ["object", "object", "object", "int64", "float64", "object", "bool",
                                     "int64", "int64", "int64"])})
        df["extracted"] = df["extracted"].astype(bool)
        return df[COMPARISON_COLUMNS]

    def table(self, name: str) -> pd.DataFrame:
        """One whole table (``runs``, ``users``, ``secrets``, ``measurements``, ``extractions``)."""
        if name not in EXPORT_TABLES or name == "comparison":
            raise SsvizError(f"unknown table {name!r}: expected one of {', '.join(EXPORT_TABLES[1:])}")
        df = self.query(f'SELECT * FROM {name}')  # name checked against the fixed list above
        return pd.DataFrame() if df is None else df

    def export(self, path, table: str = "comparison") -> Path:
        """Write the comparison (or one table) to ``.csv`` or ``.parquet`` with DuckDB's writers."""
        path = Path(path)
        fmt = path.suffix.lower()
        if fmt not in (".csv", ".parquet"):
            raise SsvizError(f"export to .csv or .parquet, not {path.name!r}")
        df = self.comparison() if table == "comparison" else self.table(table)
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect()  # in memory: the store itself stays unlocked while the file is written
        try:
            rel = con.from_df(df)
            rel.write_csv(str(path), header=True) if fmt == ".csv" else rel.write_parquet(str(path))
        finally:
            con.close()
        return path

