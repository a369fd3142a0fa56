"""The per-user study's results in one embedded DuckDB file.

Tables (schema version :data:`SCHEMA_VERSION`, created on first use):

* ``meta(key, value)``: ``schema_version`` and this store's random ``salt``;
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

Concurrency: DuckDB lets one process write, and readers in other processes
cannot open the file while it does. Every operation therefore opens the file,
works in one transaction and closes it at once, and a lock conflict is retried
with backoff: a running study (one writer) and the app (readers) share the file.
All values go through parameterized queries.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

import ssviz
from ssviz.errors import SsvizError
from ssviz.paths import bundled, data_path

BUNDLED_STUDY = bundled("study/enron-demo.duckdb")
DEFAULT_DB = data_path("results.duckdb")
SCHEMA_VERSION = 1
COMPARISON_COLUMNS = ["user", "type", "last4", "times_present", "exposure", "exposure_method", "extracted",
                      "corpus_chars", "messages", "run_id"]
EXPORT_TABLES = ("comparison", "runs", "users", "secrets", "measurements", "extractions")
LOCK_TIMEOUT = 60.0
# results are a few rows per secret: 16 KiB blocks (DuckDB's default is 256 KiB) keep a
# store, and the one shipped with the repository, a few hundred KB instead of megabytes
BLOCK_SIZE = 16384

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
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


def _is_lock_error(e: Exception) -> bool:
    text = str(e).lower()
    return "lock" in text or "conflicting" in text or "being used by another process" in text


class Store:
    """A results file; use as ``with Store(path) as s:`` (or call methods directly)."""

    def __init__(self, path=DEFAULT_DB, read_only: bool = False, lock_timeout: float = LOCK_TIMEOUT):
        self.path = Path(path)
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        self._salt: bytes | None = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        return None

    # --- connections --------------------------------------------------------------------
    @contextmanager
    def _connect(self, write: bool):
        """One short-lived connection (and transaction when writing), retried while another
        process holds the file."""
        if write and self.read_only:
            raise SsvizError(f"{self.path} was opened read-only")
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline, delay = time.monotonic() + self.lock_timeout, 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=not write,
                                     config={"default_block_size": str(BLOCK_SIZE)} if write else {})
                break
            except (duckdb.IOException, duckdb.ConnectionException) as e:
                if not _is_lock_error(e):
                    raise SsvizError(f"cannot open results store {self.path}: {e}") from None
                if time.monotonic() > deadline:
                    raise SsvizError(f"results store {self.path} stayed locked by another process for "
                                     f"{self.lock_timeout:.0f} s") from None
                time.sleep(delay * (0.5 + random.random()))  # jitter: not a reproducible choice
                delay = min(delay * 2, 1.0)
            except duckdb.Error as e:
                raise SsvizError(f"cannot open results store {self.path}: {e}") from None
        try:
            if write:
                con.execute("BEGIN TRANSACTION")
                try:
                    self._ensure_schema(con)
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            else:
                yield con
        finally:
            con.close()

    def _ensure_schema(self, con) -> None:
        for stmt in SCHEMA:
            con.execute(stmt)
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            # the salt must be unpredictable, so it is deliberately not seeded
            con.execute("INSERT INTO meta VALUES ('salt', ?)", [os.urandom(16).hex()])
        elif int(row[0]) != SCHEMA_VERSION:
            raise SsvizError(f"{self.path} has schema version {row[0]}, this ssviz reads version "
                             f"{SCHEMA_VERSION}: export it with the older version or start a new file")

    def _has_schema(self, con) -> bool:
        return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'secrets'")
                    .fetchone()[0])

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """A read-only query as a DataFrame (None when the file or its tables do not exist yet)."""
        if not self.path.exists():
            return None
        with self._connect(write=False) as con:
            if not self._has_schema(con):
                return None
            return con.execute(sql, params or []).df()

    # --- secrets -----------------------------------------------------------------------
    def salt(self) -> bytes:
        """This store's random salt (created with the schema)."""
        if self._salt is None:
            if self.read_only:
                df = self.query("SELECT value FROM meta WHERE key = 'salt'")
                if df is None or df.empty:
                    raise SsvizError(f"{self.path} has no salt yet (an empty store)")
                value = df["value"].iloc[0]
            else:
                with self._connect(write=True) as con:
                    value = con.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()[0]
            self._salt = bytes.fromhex(value)
        return self._salt

    def secret_hash(self, kind: str, digits: str) -> str:
        """The salted scrypt hash a secret is stored under (never the digits themselves)."""
        return hashlib.scrypt(f"{kind}:{digits}".encode(), salt=self.salt(), n=2 ** 14, r=8, p=1,
                              dklen=32).hex()

    # --- writing ---------------------------------------------------------------------------
    def start_run(self, settings: dict, source: str | None = None) -> int:
        """Resume the latest run with the same settings, or start one; returns its id."""
        text = json.dumps(settings, sort_keys=True, default=str)
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        with self._connect(write=True) as con:
            row = con.execute("SELECT run_id FROM runs WHERE settings_key = ? ORDER BY run_id DESC LIMIT 1",
                              [key]).fetchone()
            if row:
                con.execute("UPDATE runs SET finished = NULL WHERE run_id = ?", [row[0]])
                return int(row[0])
            run_id = con.execute("SELECT nextval('run_ids')").fetchone()[0]
            con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, now(), NULL)",
                        [run_id, key, text, ssviz.__version__, source])
            return int(run_id)

    def finish_run(self, run_id: int) -> None:
        with self._connect(write=True) as con:
            con.execute("UPDATE runs SET finished = now() WHERE run_id = ?", [run_id])

    def done_users(self, run_id: int) -> set[str]:
        df = self.query('SELECT "user" FROM users WHERE run_id = ?', [run_id])
        return set() if df is None else set(df["user"])

    def save_user(self, run_id: int, result: dict) -> None:
        """Store one user's results atomically (all rows or none).

        ``result``: ``user``, ``corpus_chars``, ``messages``, optional ``corpus_hash``,
        ``test_loss``, ``train_seconds``, ``seconds``, and ``secrets``: dicts with
        ``type``, ``value`` (hashed here, never stored), ``template``, ``times_present``,
        optional ``times_trained``, ``measurements`` (dicts with ``method``, ``primary``,
        ``exposure``, ``ci``, ``rank``, ``log_perplexity``, ``log2_space_size``, ``samples``,
        ``seconds``, ``message``) and ``extractions`` (dicts with ``algorithm``, ``found``,
        ``secret_rank``, ``nodes``, ``model_steps``, ``seconds``, ``complete``, ``max_nodes``).
        """
        user = result["user"]
        hashed = [(self.secret_hash(s["type"], s["value"]), s) for s in result["secrets"]]
        with self._connect(write=True) as con:
            for table in ("extractions", "measurements", "secrets", "users"):
                con.execute(f'DELETE FROM {table} WHERE run_id = ? AND "user" = ?', [run_id, user])
            con.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, now())",
                        [run_id, user, int(result["corpus_chars"]), int(result["messages"]),
                         result.get("corpus_hash"), result.get("test_loss"), result.get("train_seconds"),
                         result.get("seconds")])
            for h, s in hashed:
                value = str(s["value"])
                con.execute("INSERT INTO secrets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [run_id, user, h, s["type"], value[-4:], s["template"], int(s["times_present"]),
                             s.get("times_trained")])
                for m in s.get("measurements", []):
                    ci = m.get("ci") or [None, None]
                    con.execute("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [run_id, user, h, m["method"], bool(m.get("primary")), m.get("exposure"),
                                 ci[0], ci[1], m.get("rank"), m.get("log_perplexity"), m.get("log2_space_size"),
                                 m.get("samples"), int(s["times_present"]), m.get("seconds"), m.get("message")])
                for x in s.get("extractions", []):
                    con.execute("INSERT INTO extractions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                [run_id, user, h, x["algorithm"], bool(x["found"]), x.get("secret_rank"),
                                 x.get("nodes"), x.get("model_steps"), x.get("seconds"), x.get("complete"),
                                 x.get("max_nodes")])

    # --- reading ----------------------------------------------------------------------------
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
