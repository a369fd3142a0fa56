"""Sweeps: grid parsing, resumable runs in DuckDB, per-cell spread."""

from __future__ import annotations

import duckdb
import pytest

from ssviz.errors import SsvizError
from ssviz.sweeps import cells, list_sweeps, load_runs, parse_grid, run_sweep, summarize
from ssviz.templates import Template
from ssviz.train import Canary, TrainConfig

BASE = TrainConfig(layers=1, hidden=8, embedding_dim=8, epochs=1, batch_size=32, patience=None)


def test_parse_grid_types_values_like_the_config():
    assert parse_grid("batch_size=32,128") == ("batch_size", [32, 128])
    assert parse_grid("dropout=0,0.5") == ("dropout", [0.0, 0.5])
    assert parse_grid("arch=lstm,gru") == ("arch", ["lstm", "gru"])
    assert parse_grid("insertions=1,4") == ("insertions", [1, 4])
    assert parse_grid("weight-decay=1e-4") == ("weight_decay", [1e-4])
    for bad, msg in (("hidden", "NAME=V1"), ("colour=1", "unknown setting"), ("hidden=a", "must be a whole number"),
                     ("hidden=8,8", "repeated")):
        with pytest.raises(SsvizError, match=msg):
            parse_grid(bad)
    assert len(cells({"a": [1, 2], "b": [3, 4, 5]})) == 6
    with pytest.raises(SsvizError, match="one or two"):
        cells({"a": [1], "b": [2], "c": [3]})


def test_sweep_resumes_and_summarizes(small_corpus, tmp_path):
    db = tmp_path / "s.duckdb"
    text, canary = small_corpus[:3000], Canary(Template("PIN {d:2}"), "42", 2)
    grid = {"hidden": [16, 8], "insertions": [1, 6]}
    seen = []
    first = run_sweep(text, canary, BASE, grid, seeds=1, db=db, progress=lambda d, n: seen.append((d, n)))
    assert (first.total, first.computed, first.skipped) == (4, 4, 0) and seen[-1] == (4, 4)
    again = run_sweep(text, canary, BASE, grid, seeds=1, db=db)
    assert (again.computed, again.skipped, again.sweep) == (0, 4, first.sweep)
    more_seeds = run_sweep(text, canary, BASE, grid, seeds=2, db=db, sweep=first.sweep)
    assert (more_seeds.computed, more_seeds.skipped) == (4, 4)
    runs = load_runs(db, first.sweep)
    assert len(runs) == 8 and set(runs["seed"]) == {0, 1}
    table = summarize(runs)
    assert list(table["value1"]) == ["8", "8", "16", "16"]  # numeric order, not "16" < "8"
    assert (table["seeds"] == 2).all() and (table["exposure_min"] <= table["exposure_max"]).all()
    cell = runs[(runs["value1"] == "16") & (runs["value2"] == "1")]
    assert table.iloc[2]["exposure_mean"] == pytest.approx(cell["exposure"].mean())
    assert list_sweeps(db)["runs"].tolist() == [8]


def test_a_stopped_sweep_keeps_finished_runs_and_resumes(small_corpus, tmp_path):
    db = tmp_path / "s.duckdb"
    text, canary = small_corpus[:3000], Canary(Template("PIN {d:2}"), "42", 2)
    grid = {"hidden": [8, 16, 24]}
    done = []
    part = run_sweep(text, canary, BASE, grid, seeds=1, db=db, on_result=done.append, stop=lambda: len(done) >= 1)
    assert part.stopped and part.computed == 1
    rest = run_sweep(text, canary, BASE, grid, seeds=1, db=db)
    assert (rest.computed, rest.skipped) == (2, 1)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM sweep_runs").fetchone()[0] == 3


def test_missing_database_gives_empty_frames(tmp_path):
    assert load_runs(tmp_path / "none.duckdb").empty
    assert list_sweeps(tmp_path / "none.duckdb").empty
    assert summarize(load_runs(tmp_path / "none.duckdb")).empty
