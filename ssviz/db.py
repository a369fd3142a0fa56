"""The one way ssviz opens a DuckDB file (the study store, the sweeps database).

Every file is treated as possibly hostile (an upload, a ``--db`` path someone
typed), so every open, read or write, is the same **safe open**:

* DuckDB's configuration turns off everything a file could use to reach beyond
  itself: external access (``read_text``, ``read_csv``, ``COPY``, ``ATTACH``),
  extension auto-install and auto-load (a SQLite file or a view naming an
  extension's function would otherwise download one), and the configuration is
  locked so no statement can turn them back on;
* the file must start like a DuckDB database (a SQLite or text file is refused
  before DuckDB sees it);
* its catalog must be ssviz's: the expected objects are **base tables** with the
  columns and constraints the schema's own DDL creates (compared with that DDL
  run in memory, so there is no second copy of the columns), and nothing else:
  no view, macro, type, index, sequence or schema ssviz did not create. A macro
  could replace a built-in function (``now()``), a view could read a file.

A file passes when it carries this schema's marker (``meta.schema`` = e.g.
``ssviz-study``) or, made before the marker existed, has exactly the schema's
tables (a ``meta`` table being optional). Anything else is refused with one
line, and a refused file is never written: the check runs inside the write
transaction, before any statement that changes the file.

Concurrency: DuckDB lets one process write, and other processes cannot even
read while it does. So every read and every write opens the file, does one
short transaction and closes it; a lock conflict is retried with backoff
(jitter) for ``lock_timeout`` seconds. A long job (a study, a sweep) writes one
result per transaction, so readers get in between.
"""

from __future__ import annotations

import os
import random
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

from ssviz.errors import SsvizError

LOCK_TIMEOUT = 60.0
# results are a few rows per secret or run: 16 KiB blocks (DuckDB's default is 256 KiB) keep a
# file, and the ones shipped with the repository, a few hundred KB instead of megabytes
BLOCK_SIZE = 16384
SAFE_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "default_block_size": str(BLOCK_SIZE),  # only used when the file is created
    "lock_configuration": True,             # last: nothing after it can change the above
}
META_DDL = "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"
DUCKDB_MAGIC = b"DUCK"       # bytes 8..12 of every DuckDB database file
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Schema:
    """What one kind of ssviz file holds; ``name`` is the marker written in ``meta``."""

    name: str              # e.g. "ssviz-study"
    version: int
    ddl: tuple[str, ...]   # CREATE ... IF NOT EXISTS statements (``meta`` is added here)
    what: str              # how messages call the file, e.g. "results store"


KNOWN = {"ssviz-study": "a study results store", "ssviz-sweeps": "a sweeps database",
         "ssviz-shards": "an exact-enumeration shards file"}


# --- opening ---------------------------------------------------------------------------------
def _first_line(e: Exception, limit: int = 200) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _is_lock_error(e: Exception) -> bool:
    """Only DuckDB's own lock messages: a corrupt file's ("checksum ... in block ...") is reported at once."""
    text = str(e).lower()
    if "corrupt" in text or "checksum" in text:
        return False
    # "different configuration": this process holds the file open in the other mode (read vs write)
    return ("could not set lock on file" in text or "conflicting lock" in text
            or "being used by another process" in text or "different configuration" in text)


def check_file(path: Path, what: str) -> None:
    """Refuse, before DuckDB opens it, a path that is not a DuckDB database file.

    Folders, FIFOs and devices are refused from ``stat`` alone: opening a FIFO to
    read its head would block until something writes to it.
    """
    kind = what if what.endswith("file") else f"{what} file"
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise SsvizError(f"cannot read {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(mode):
        raise SsvizError(f"{path} is a folder, not a DuckDB {kind}")
    if not stat.S_ISREG(mode):
        raise SsvizError(f"{path} is not a regular file (a FIFO, socket or device), not a DuckDB {kind}")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise SsvizError(f"cannot read {path}: {e.strerror or e}") from None
    if not head:
        raise SsvizError(f"{path} is an empty file, not a DuckDB {what}")
    if head.startswith(SQLITE_MAGIC):
        raise SsvizError(f"{path} is a SQLite database, not a DuckDB {what}")
    if head[8:12] != DUCKDB_MAGIC:
        raise SsvizError(f"{path} is not a DuckDB database file (expected a {what})")


def _open(path: Path, write: bool, lock_timeout: float, what: str):
    """A safe connection, retried with backoff while another process holds the file."""
    deadline, delay = time.monotonic() + lock_timeout, 0.02
    while True:
        try:
            return duckdb.connect(str(path), read_only=not write, config=SAFE_CONFIG)
        except duckdb.Error as e:
            if not _is_lock_error(e):
                corrupt = " (the file is corrupt)" if "corrupt" in str(e).lower() else ""
                raise SsvizError(f"cannot open {what} {path}{corrupt}: {_first_line(e)}") from None
            if time.monotonic() > deadline:
                raise SsvizError(f"{what} {path} stayed locked by another process for {lock_timeout:.0f} s") from None
            time.sleep(delay * (0.5 + random.random()))  # jitter: not a reproducible choice
            delay = min(delay * 2, 1.0)


# --- checking the catalog --------------------------------------------------------------------
_OBJECTS = """
SELECT 'table', schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()
UNION ALL SELECT 'view', schema_name, view_name FROM duckdb_views()
    WHERE database_name = current_database() AND NOT internal
UNION ALL SELECT DISTINCT 'macro', schema_name, function_name FROM duckdb_functions()
    WHERE database_name = current_database() AND NOT internal
UNION ALL SELECT 'sequence', schema_name, sequence_name FROM duckdb_sequences() WHERE database_name = current_database()
UNION ALL SELECT 'type', schema_name, type_name FROM duckdb_types()
    WHERE database_name = current_database() AND NOT internal
UNION ALL SELECT 'index', schema_name, index_name FROM duckdb_indexes() WHERE database_name = current_database()
UNION ALL SELECT 'schema', schema_name, schema_name FROM duckdb_schemas()
    WHERE database_name = current_database() AND NOT internal
"""
_COLUMNS = """
SELECT table_name, column_name, data_type, column_default, is_nullable, is_generated
FROM information_schema.columns WHERE table_catalog = current_database() AND table_schema = 'main'
ORDER BY table_name, ordinal_position
"""
_CONSTRAINTS = """
SELECT table_name, constraint_type, constraint_text FROM duckdb_constraints()
WHERE database_name = current_database() ORDER BY ALL
"""


def _catalog(con) -> tuple[set, dict, dict]:
    objects = {tuple(r) for r in con.execute(_OBJECTS).fetchall()}
    columns, constraints = {}, {}
    for table, *col in con.execute(_COLUMNS).fetchall():
        columns.setdefault(table, []).append(tuple(col))
    for table, *c in con.execute(_CONSTRAINTS).fetchall():
        constraints.setdefault(table, []).append(tuple(c))
    return objects, columns, constraints


@cache
def _expected(schema: Schema) -> tuple[set, dict, dict]:
    """The catalog the schema's own DDL makes (run once in memory)."""
    con = duckdb.connect(config=SAFE_CONFIG)
    try:
        for stmt in (META_DDL, *schema.ddl):
            con.execute(stmt)
        return _catalog(con)
    finally:
        con.close()


def _name(obj: tuple) -> str:
    kind, schema, name = obj
    name = name if schema == "main" or kind == "schema" else f"{schema}.{name}"
    return f"{kind} {name[:40]!r}"


def inspect(con, schema: Schema, path: Path) -> dict | None:
    """``meta`` as a dict when the open file is ssviz's ``schema``, None when it holds nothing at all;
    anything else raises SsvizError (one line, nothing written)."""
    objects, columns, constraints = _catalog(con)
    if not objects:
        return None
    want_objects, want_columns, want_constraints = _expected(schema)
    refuse = f"{path} is not {KNOWN.get(schema.name, schema.what)}"
    meta = {}
    if ("table", "main", "meta") in objects and columns.get("meta") == want_columns["meta"]:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    marker = meta.get("schema")
    if marker is not None and marker != schema.name:
        raise SsvizError(f"{path} is {KNOWN.get(marker, 'another kind of file')}, "
                         f"not {KNOWN.get(schema.name, schema.what)}")
    unexpected = sorted(objects - want_objects)
    missing = sorted(want_objects - objects - {("table", "main", "meta")})
    if unexpected or missing:
        listed = ", ".join(_name(o) for o in unexpected[:3]) + (" ..." if len(unexpected) > 3 else "")
        raise SsvizError(f"{refuse}: it has {listed}" if unexpected else f"{refuse}: it lacks {_name(missing[0])}")
    for table in sorted(name for kind, _, name in objects if kind == "table"):
        if columns.get(table) != want_columns[table] or constraints.get(table) != want_constraints.get(table):
            raise SsvizError(f"{refuse}: table {table!r} does not have ssviz's columns")
    version = meta.get("schema_version", str(schema.version))  # a legacy sweeps file has no meta: version 1
    if version != str(schema.version):
        raise SsvizError(f"{path} has schema version {version[:20]!r}, this ssviz reads version {schema.version}: "
                         "export it with the matching version or start a new file")
    return meta


# --- files already checked ------------------------------------------------------------------
# A check costs a few catalog queries (~40 ms on an idle 2-core machine, 100+ ms loaded; listing
# functions to find macros is most of it). A file passed, and unchanged since, is not checked
# again: "unchanged" is its (and its WAL's) device, inode, size, mtime and ctime (ctime cannot be set
# back by a user), taken while DuckDB's lock keeps other writers out.
_checked: dict[tuple[str, str], tuple[tuple, dict]] = {}  # (path, schema) -> (stat key, meta)


def _stat_key(path: Path) -> tuple:
    def one(p: Path):
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
    return one(path), one(path.with_name(path.name + ".wal"))


def _inspect_once(con, schema: Schema, path: Path) -> dict | None:
    """:func:`inspect`, skipped for a file that passed and has not changed since."""
    key = (str(path.resolve()), schema.name)
    stat, meta = _checked.get(key, (None, None))
    if stat is not None and stat == _stat_key(path):
        return dict(meta)
    meta = inspect(con, schema, path)
    if meta is not None:
        _checked[key] = (_stat_key(path), dict(meta))
    return meta


# --- the two ways in ---------------------------------------------------------------------------
@contextmanager
def reading(path, schema: Schema, lock_timeout: float = LOCK_TIMEOUT):
    """A read-only connection to a checked file; None when the file does not exist or is an empty database."""
    path = Path(path)
    if not path.exists():
        yield None
        return
    check_file(path, schema.what)
    con = _open(path, False, lock_timeout, schema.what)
    try:
        try:
            ours = _inspect_once(con, schema, path)
        except duckdb.Error as e:
            raise SsvizError(f"cannot read {schema.what} {path}: {_first_line(e)}") from None
        yield None if ours is None else con
    finally:
        con.close()


@contextmanager
def writing(path, schema: Schema, lock_timeout: float = LOCK_TIMEOUT):
    """One transaction on a checked file (created with the schema when missing or empty): committed when
    the block ends, rolled back on any error. A refused file is left byte for byte as it was."""
    path = Path(path)
    if path.exists():
        check_file(path, schema.what)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, True, lock_timeout, schema.what)
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            try:
                meta = _prepare(con, schema, path)
            except duckdb.Error as e:
                raise SsvizError(f"cannot write {schema.what} {path}: {_first_line(e)}") from None
            yield con
            con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:  # the failed statement was the COMMIT itself
                pass
            raise
    finally:
        con.close()
    _checked[(str(path.resolve()), schema.name)] = (_stat_key(path), meta)  # checked at the start, changed only by us


def _prepare(con, schema: Schema, path: Path) -> dict:
    """Check the file, then create the schema (a new or empty file) or add the marker (a file made before
    it); returns ``meta`` as it will be after the commit."""
    meta = _inspect_once(con, schema, path)
    if meta is None or "schema" not in meta:
        for stmt in (META_DDL, *schema.ddl):
            con.execute(stmt)
        con.execute("INSERT INTO meta VALUES ('schema', ?), ('schema_version', ?) ON CONFLICT DO NOTHING",
                    [schema.name, str(schema.version)])
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    return meta
