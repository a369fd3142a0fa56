"""A shards file edited or damaged by hand: refused in one line naming the field, never a silent wrong rank."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from ssviz.errors import InvalidValueError
from ssviz.exposure.sharded import sharded_exact
from ssviz.templates import Template

T = Template("My PIN is {d:3}")


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tiny_model):
    store = tmp_path_factory.mktemp("shards") / "s.duckdb"
    result = sharded_exact(tiny_model, T, "417", shard_size=250, store=store)
    return store.read_bytes(), result


def _nan_sample() -> bytes:
    return np.full(250, np.nan).astype("<f8").tobytes()


@pytest.mark.parametrize("sql, field", [
    ("UPDATE shards SET at_or_below = -1 WHERE lo = 0", "at_or_below"),
    ("UPDATE shards SET at_or_below = 10000 WHERE lo = 250", "at_or_below"),
    ("UPDATE shards SET counts = '\\x01\\x02\\x03'::BLOB WHERE lo = 0", "counts"),
    ("UPDATE shards SET counts = '\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'::BLOB WHERE lo = 500", "counts"),
    ("UPDATE shards SET sample = ?::BLOB WHERE lo = 0", "sample"),
    ("UPDATE shards SET sample = '\\x00'::BLOB WHERE lo = 750", "sample"),
    ("UPDATE shards SET lo = 7 WHERE lo = 250", "lo/hi"),
    ("UPDATE shards SET hi = 100000 WHERE lo = 0", "lo/hi"),
    ("UPDATE shards SET seconds = 'nan'::DOUBLE WHERE lo = 0", "seconds"),
])
def test_a_damaged_shard_is_refused_naming_the_field(tmp_path, tiny_model, clean, sql, field):
    store = tmp_path / "s.duckdb"
    store.write_bytes(clean[0])
    con = duckdb.connect(str(store))
    con.execute(sql, [_nan_sample()] if "?" in sql else [])
    con.close()
    before = store.read_bytes()
    with pytest.raises(InvalidValueError, match=field.replace("/", ".")) as info:
        sharded_exact(tiny_model, T, "417", shard_size=250, store=store)
    message = str(info.value)
    assert str(store) in message and "\n" not in message
    assert store.read_bytes() == before  # nothing stored is lost


def test_an_undamaged_file_resumes_with_the_same_result(tmp_path, tiny_model, clean):
    store = tmp_path / "s.duckdb"
    store.write_bytes(clean[0])
    again = sharded_exact(tiny_model, T, "417", shard_size=250, store=store)
    assert again.shards["resumed"] == 4 and again.rank == clean[1].rank


@pytest.mark.parametrize("make", ["folder", "fifo", "corrupt"])
def test_an_odd_shards_path_is_refused_before_any_scoring(tmp_path, tiny_model, clean, make, monkeypatch):
    import os
    import time

    from ssviz.errors import SsvizError
    from ssviz.exposure import sharded
    store = tmp_path / "s.duckdb"
    if make == "folder":
        store.mkdir()
    elif make == "fifo":
        os.mkfifo(store)
    else:
        data = bytearray(clean[0])
        data[4096:6096] = bytes(2000)
        store.write_bytes(bytes(data))
    scored = []
    monkeypatch.setattr(sharded, "secret_task", lambda task: scored.append(task) or 0.0)
    start = time.monotonic()
    with pytest.raises(SsvizError, match="folder|not a regular file|corrupt") as info:
        sharded_exact(tiny_model, T, "417", shard_size=250, store=store)
    assert time.monotonic() - start < 5 and not scored and str(store) in str(info.value)
