"""Study stores and shard files that are damaged, odd, or hold impossible values: one line each, at once."""

from __future__ import annotations

import os
import time

import pytest

from ssviz.errors import SsvizError
from ssviz.exposure.sharded import ShardStore
from ssviz.store import Store

RUN = dict(model_sha256="x" * 64, template="t", space_size=10, shard_size=5, chunk_size=5, threshold=1.0, bin_bits=1)


def _one_line(fn, match: str, seconds: float = 5.0) -> str:
    start = time.monotonic()
    with pytest.raises(SsvizError, match=match) as info:
        fn()
    assert time.monotonic() - start < seconds
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    return message


@pytest.mark.parametrize("make", ["folder", "fifo"])
@pytest.mark.parametrize("opener", [ShardStore, lambda p: Store(p, read_only=True).rows(), lambda p: Store(p).start_run({})])
def test_a_store_path_that_is_not_a_file_is_named_at_once(tmp_path, make, opener):
    path = tmp_path / "shards.duckdb"
    if make == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    message = _one_line(lambda: opener(path), "folder" if make == "folder" else "not a regular file")
    assert str(path) in message


@pytest.mark.parametrize("offset", [4096, 8192, 12288, 16484])
@pytest.mark.parametrize("opener", [ShardStore, lambda p: Store(p, read_only=True).rows(), lambda p: Store(p).start_run({})])
def test_a_corrupt_database_is_reported_as_corrupt_not_locked(tmp_path, offset, opener):
    path = tmp_path / "s.duckdb"
    if opener is ShardStore:
        ShardStore(path).begin("r", RUN)
    else:
        Store(path).start_run({})
    data = bytearray(path.read_bytes())
    data[offset:offset + 2000] = bytes((i * 37 + 11) % 256 for i in range(2000))
    path.write_bytes(bytes(data))
    message = _one_line(lambda: opener(path), "corrupt|Corrupt", seconds=5.0)
    assert "locked" not in message and str(path) in message


# --- a study store holding values no run can have written -----------------------------------------
from tests.study.test_store import user_result  # noqa: E402


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("store") / "r.duckdb"
    with Store(path) as s:
        run = s.start_run({"epochs": 3})
        s.save_user(run, user_result("alice"))
        s.save_user(run, user_result("bob"))
    return path.read_bytes()


@pytest.fixture
def _damaged(tmp_path, clean_store):
    def make(_tmp, sql: str):
        return _damage(tmp_path, clean_store, sql)
    return make


def _damage(tmp_path, clean: bytes, sql: str):
    import duckdb
    path = tmp_path / "r.duckdb"
    path.write_bytes(clean)
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()
    return path


DAMAGE = [
    ("UPDATE measurements SET exposure = 'NaN'::DOUBLE WHERE \"primary\"", "measurements.exposure"),
    ("UPDATE measurements SET exposure = 'inf'::DOUBLE WHERE \"primary\" AND \"user\" = 'bob'", "measurements.exposure"),
    ("UPDATE measurements SET exposure = '-inf'::DOUBLE", "measurements.exposure"),
    ("UPDATE measurements SET exposure = -3 WHERE method = 'skewnorm'", "measurements.exposure"),
    ("UPDATE secrets SET times_present = -5", "secrets.times_present"),
    ("UPDATE users SET corpus_chars = -1 WHERE \"user\" = 'bob'", "users.corpus_chars"),
    ("UPDATE users SET messages = -10", "users.messages"),
    ("UPDATE measurements SET rank = 0 WHERE rank IS NOT NULL", "measurements.rank"),
    ("UPDATE measurements SET ci_low = 'NaN'::DOUBLE WHERE ci_low IS NOT NULL", "measurements.ci_low"),
    ("UPDATE extractions SET nodes = -1", "extractions.nodes"),
    ("UPDATE users SET seconds = 'inf'::DOUBLE", "users.seconds"),
]


@pytest.mark.parametrize("sql, field", DAMAGE)
@pytest.mark.parametrize("read", ["rows", "comparison", "table"])
def test_impossible_stored_values_are_refused_naming_the_field(tmp_path, _damaged, sql, field, read):
    path = _damaged(tmp_path, sql)
    s = Store(path, read_only=True)
    fn = {"rows": s.rows, "comparison": s.comparison, "table": lambda: s.table(field.split(".")[0])}[read]
    message = _one_line(fn, field.replace(".", r"\."))
    assert str(path) in message
    assert path.stat().st_size > 0  # nothing is lost: the file is as it was


@pytest.mark.parametrize("sql, field", DAMAGE[:4])
def test_the_cli_prints_one_line_for_a_damaged_store(tmp_path, _damaged, capsys, sql, field):
    from ssviz.cli import main as cli_main
    path = _damaged(tmp_path, sql)
    assert cli_main(["enron-show", "--db", str(path), "--json"]) != 0
    err = capsys.readouterr().err.strip()
    assert field in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_an_undamaged_store_reads_as_before(tmp_path, _damaged):
    path = _damaged(tmp_path, "SELECT 1")
    rows = Store(path, read_only=True).rows()
    assert {r.user for r in rows} == {"alice", "bob"} and all(r.exposure is None or r.exposure > 0 for r in rows)


@pytest.mark.parametrize("salt", ["zz", "", "0" * 31, "Ab" * 16])
def test_a_damaged_salt_is_one_line(tmp_path, _damaged, salt):
    path = _damaged(tmp_path, f"UPDATE meta SET value = '{salt}' WHERE key = 'salt'")
    for read_only in (True, False):
        _one_line(lambda: Store(path, read_only=read_only).secret_hash("ssn", "123456789"), r"meta\.salt")
