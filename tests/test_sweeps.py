"""Sweeps: grid parsing, resumable runs in DuckDB, per-cell spread."""

from __future__ import annotations

import json

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


SAME = ["cell", "seed", "exposure", "exposure_method", "rank", "test_loss", "train_loss", "epochs_run", "epsilon",
        "history", "config"]


@pytest.mark.slow
def test_a_sweep_on_an_executor_equals_the_sweep_here_value_for_value(small_corpus, tmp_path):
    from ssviz.executor import LocalExecutor
    text, canary = small_corpus[:3000], Canary(Template("PIN {d:2}"), "42", 2)
    grid = {"hidden": [8, 16], "insertions": [1, 4]}
    here = run_sweep(text, canary, BASE, grid, seeds=1, db=tmp_path / "here.duckdb")
    seen = []
    with LocalExecutor(2) as ex:
        first = run_sweep(text, canary, BASE, grid, seeds=1, db=tmp_path / "ex.duckdb", executor=ex,
                          progress=lambda d, n: seen.append((d, n)))
        again = run_sweep(text, canary, BASE, grid, seeds=1, db=tmp_path / "ex.duckdb", executor=ex)
    assert (first.computed, first.skipped, again.computed, again.skipped) == (4, 0, 0, 4)
    assert seen[0] == (0, 4) and seen[-1] == (4, 4) and first.sweep == here.sweep
    a, b = (_timeless(load_runs(tmp_path / name)) for name in ("here.duckdb", "ex.duckdb"))
    assert len(a) == 4 and a.equals(b)


def _timeless(runs):
    """A sweep's runs without wall-clock times (the only thing two runs of the same seeds may differ in)."""
    runs = runs[SAME].sort_values(["cell", "seed"]).reset_index(drop=True)
    runs["history"] = [json.dumps([{k: v for k, v in e.items() if k != "seconds"} for e in json.loads(h)])
                       for h in runs["history"]]
    return runs


@pytest.mark.slow
def test_a_failed_run_on_an_executor_stops_the_sweep_with_its_message_and_keeps_the_rest(small_corpus, tmp_path):
    from ssviz.executor import LocalExecutor
    text, canary = small_corpus[:3000], Canary(Template("PIN {d:2}"), "42", 2)
    db = tmp_path / "s.duckdb"
    with LocalExecutor(1) as ex:  # one slot: the good run is stored before the bad one starts
        with pytest.raises(SsvizError, match="too short for the sequence length"):
            run_sweep(text, canary, BASE, {"seq_len": [20, 9_000]}, seeds=1, db=db, executor=ex)
    assert len(load_runs(db)) == 1


def test_missing_database_gives_empty_frames(tmp_path):
    assert load_runs(tmp_path / "none.duckdb").empty
    assert list_sweeps(tmp_path / "none.duckdb").empty
    assert summarize(load_runs(tmp_path / "none.duckdb")).empty


def test_every_cell_is_validated_before_the_first_training(small_corpus, tmp_path, monkeypatch):
    import ssviz.sweeps as sweeps
    monkeypatch.setattr(sweeps, "train", lambda *a, **k: pytest.fail("trained before every cell was checked"))
    text, canary = small_corpus[:3000], Canary(Template("PIN {d:2}"), "42", 2)
    for grid in ({"hidden": [8, 16, 0]}, {"dropout": [0.1, 0.2, float("nan")]}, {"insertions": [1, 2, -3]},
                 {"hidden": [8, 16], "lr": [0.01, -1.0]}, {"patience": [1, -1]}):
        with pytest.raises(SsvizError):
            run_sweep(text, canary, BASE, grid, seeds=2, db=tmp_path / "s.duckdb")


def test_grid_values_are_checked_like_the_options():
    assert parse_grid("quantize=none,8") == ("quantize", [None, 8])
    assert parse_grid("patience=0,3") == ("patience", [0, 3])
    for bad in ("lr=nan", "lr=inf", "lr=-1", "patience=-1", "insertions=-2", "seed=1,2", "val_fraction=0.2",
                "dropout=1", "layers=9", "arch=rnn", "hidden=2.5"):
        with pytest.raises(SsvizError) as e:
            parse_grid(bad)
        assert isinstance(e.value, ValueError) or "unknown setting" in str(e.value)


def test_patience_zero_in_a_sweep_disables_early_stopping(small_corpus, tmp_path):
    text, canary = small_corpus[:3000], Canary(Template("PIN {d:2}"), "42", 2)
    base = TrainConfig(layers=1, hidden=8, embedding_dim=8, epochs=3, batch_size=32, patience=3)
    run_sweep(text, canary, base, {"patience": [0]}, seeds=1, db=tmp_path / "s.duckdb")
    assert load_runs(tmp_path / "s.duckdb")["epochs_run"].tolist() == [3]


def _read_between_results(small_corpus, tmp_path, other_process: bool) -> list:
    import subprocess
    import sys
    from ssviz.records import SweepRun

    db = tmp_path / "s.duckdb"
    text, canary = small_corpus[:3000], Canary(Template("PIN {d:2}"), "42", 2)
    seen = []

    def read_while_running(run):
        assert isinstance(run, SweepRun) and run.config and run.epsilon is None
        if other_process:
            other = subprocess.run([sys.executable, "-c", "import sys; from ssviz.sweeps import load_runs; "
                                    "print(len(load_runs(sys.argv[1], sys.argv[2])))", str(db), run.sweep],
                                   capture_output=True, text=True, timeout=120)
            assert other.returncode == 0, other.stderr
            seen.append(int(other.stdout))
        else:
            stored = load_runs(db, run.sweep)
            assert run.cell in set(stored["cell"])
            seen.append((len(stored), int(list_sweeps(db)["runs"].iloc[0])))

    summary = run_sweep(text, canary, BASE, {"hidden": [8, 12, 16]}, seeds=1, db=db, on_result=read_while_running)
    assert summary.computed == 3
    return seen


def test_the_database_can_be_read_between_a_running_sweeps_results(small_corpus, tmp_path):
    """Each run is its own short transaction: a reader (the app) gets in between (before, the sweep held
    the file open for writing from start to end and every read failed)."""
    assert _read_between_results(small_corpus, tmp_path, other_process=False) == [(1, 1), (2, 2), (3, 3)]


@pytest.mark.slow
def test_another_process_can_read_between_a_running_sweeps_results(small_corpus, tmp_path):
    assert _read_between_results(small_corpus, tmp_path, other_process=True) == [1, 2, 3]


def test_missing_numbers_are_stored_as_null_and_infinite_epsilon_as_infinity(tmp_path):
    import math
    from ssviz.records import SweepRun
    from ssviz.sweeps import save_run

    db = tmp_path / "s.duckdb"
    base = dict(sweep="s", param1="hidden", value1="8", param2=None, value2=None, exposure_method=None, rank=None,
                test_loss=1.5, train_loss=1.4, epochs_run=1, seconds=1.0, history="[]", config="{}")
    save_run(db, SweepRun(cell="hidden=8", seed=0, exposure=None, epsilon=None, **base))
    save_run(db, SweepRun(cell="hidden=8", seed=1, exposure=3.0, epsilon=math.inf, **base))
    runs = load_runs(db, "s").set_index("seed")
    assert runs.loc[0, ["exposure", "epsilon", "rank"]].isna().all()  # NULL, not a patched value
    assert runs.loc[1, "epsilon"] == math.inf and runs.loc[1, "exposure"] == 3.0
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT exposure, epsilon FROM sweep_runs WHERE seed = 0").fetchone() == (None, None)
    assert summarize(load_runs(db, "s"))["exposure_mean"].iloc[0] == 3.0


def test_a_foreign_file_is_refused_before_any_training(small_corpus, tmp_path, monkeypatch):
    import ssviz.sweeps as sweeps

    db = tmp_path / "theirs.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE sweep_runs (sweep VARCHAR)")
    before = db.read_bytes()
    monkeypatch.setattr(sweeps, "train", lambda *a, **k: pytest.fail("trained before checking the database"))
    with pytest.raises(SsvizError, match="is not a sweeps database"):
        run_sweep(small_corpus[:3000], Canary(Template("PIN {d:2}"), "42", 2), BASE, {"hidden": [8]}, seeds=1, db=db)
    for read in (load_runs, list_sweeps):
        with pytest.raises(SsvizError, match="does not have ssviz's columns"):
            read(db)
    assert db.read_bytes() == before
