"""Sweeps: train over a grid of one or two settings x seeds and keep every result in DuckDB.

The paper's Tables 1, 2, 4 and 6 vary one or two knobs (architecture, batch
size x hidden units, insertions) and read off exposure. A sweep is identified
by a name (default: a hash of corpus, canary, base config and grid); each run
is a row keyed by (sweep, cell, seed), so running the same sweep again skips
finished runs: a stopped sweep resumes where it stopped.

Schema (file default ``data/sweeps.duckdb``, separate from the study store)::

    sweep_runs(sweep, cell, param1, value1, param2, value2, seed, exposure, exposure_method, rank,
               test_loss, train_loss, epochs_run, epsilon, seconds, history, config, created)

plus ``meta`` (the ``ssviz-sweeps`` marker). Every read and write goes through :mod:`ssviz.db` (a safe open
that refuses anything else), and each run is stored in its own short transaction, so the app can read
the file while a sweep runs.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from itertools import product

import pandas as pd

from ssviz import db as sqldb
from ssviz.errors import SettingsError, SsvizError
from ssviz.executor import InlineExecutor
from ssviz.paths import data_path
from ssviz.records import SweepRun, names as record_names
from ssviz.train import Canary, TrainConfig, option_specs, parse_option, train, whole_number

DEFAULT_SWEEP_DB = data_path("sweeps.duckdb")
CANARY_PARAMS = ("insertions",)
COLUMNS = [*record_names(SweepRun), "created"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep VARCHAR NOT NULL, cell VARCHAR NOT NULL,
    param1 VARCHAR NOT NULL, value1 VARCHAR NOT NULL, param2 VARCHAR, value2 VARCHAR,
    seed INTEGER NOT NULL,
    exposure DOUBLE, exposure_method VARCHAR, rank BIGINT,
    test_loss DOUBLE, train_loss DOUBLE, epochs_run INTEGER, epsilon DOUBLE, seconds DOUBLE,
    history VARCHAR, config VARCHAR, created TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (sweep, cell, seed))
"""
SWEEPS = sqldb.Schema("ssviz-sweeps", 1, (SCHEMA,), "sweeps database")


def _field_types() -> dict[str, type]:
    """Settings a sweep can vary and their types, from TrainConfig's declarations (plus the canary's insertions)."""
    types = {name: spec["kind"] for name, spec in option_specs().items() if spec["grid"]}
    types.update({name: int for name in CANARY_PARAMS})
    return types


def parse_grid(spec: str) -> tuple[str, list]:
    """``"batch_size=32,128"`` -> ("batch_size", [32, 128]); values typed and checked like the TrainConfig field
    (``none`` for an optional one)."""
    name, sep, values = spec.partition("=")
    name = name.strip().replace("-", "_")
    types = _field_types()
    if not sep or not values.strip():
        raise SsvizError(f"grid {spec!r}: write NAME=V1,V2 (e.g. batch_size=32,128)")
    if name not in types:
        raise SsvizError(f"grid {spec!r}: unknown setting {name!r}; choose from {', '.join(sorted(types))}")
    out = []
    for raw in values.split(","):
        try:
            out.append(_parse_canary_param(name, raw) if name in CANARY_PARAMS else parse_option(name, raw))
        except SettingsError as e:
            raise SettingsError(f"grid {spec!r}: {e}") from None
    if len(set(out)) != len(out):
        raise SsvizError(f"grid {spec!r}: repeated value")
    return name, out


def _parse_canary_param(name: str, raw: str) -> int:
    try:
        value = whole_number(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a whole number >= 0, got {raw.strip()!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be a whole number >= 0, got {value}")
    return value


def cells(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values (one or two settings)."""
    if not 1 <= len(grid) <= 2:
        raise SsvizError("a sweep varies one or two settings")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in product(*(grid[n] for n in names))]


def cell_key(cell: dict) -> str:
    return ";".join(f"{k}={v}" for k, v in cell.items())


def sweep_name(text: str, canary: Canary, base: TrainConfig, grid: dict[str, list]) -> str:
    """A stable name for the same corpus, canary, base config and grid (so reruns resume)."""
    blob = json.dumps([hashlib.sha256(text.encode()).hexdigest(), canary.to_json(),
                       {k: v for k, v in asdict(base).items() if k != "seed"}, grid], sort_keys=True, default=str)
    return "sweep-" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def _stored_runs(db, sweep: str) -> set[tuple[str, int]]:
    """(cell, seed) of the runs already stored under ``sweep``; creates the file (checked, or refused) first, so
    a foreign file fails before any training."""
    with sqldb.writing(db, SWEEPS) as con:
        return {(c, int(seed)) for c, seed in con.execute("SELECT cell, seed FROM sweep_runs WHERE sweep = ?",
                                                          [sweep]).fetchall()}


def save_run(db, run: SweepRun) -> None:
    """One run in its own short transaction: between two runs the file is free for readers (the app)."""
    cols = record_names(SweepRun)
    with sqldb.writing(db, SWEEPS) as con:
        con.execute(f"INSERT INTO sweep_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    run.values())


def _run_record(sweep: str, cell: dict, seed: int, config: TrainConfig, res) -> SweepRun:
    names = list(cell)
    return SweepRun(sweep=sweep, cell=cell_key(cell), param1=names[0], value1=str(cell[names[0]]),
                    param2=names[1] if len(names) > 1 else None,
                    value2=str(cell[names[1]]) if len(names) > 1 else None, seed=seed,
                    exposure=res.final["exposure"], exposure_method=res.final["exposure_method"],
                    rank=res.final["rank"], test_loss=res.test_loss, train_loss=res.epochs[-1]["train_loss"],
                    epochs_run=len(res.epochs), epsilon=res.epsilon, seconds=res.seconds,
                    history=json.dumps(res.epochs, default=float), config=json.dumps(asdict(config)))


@dataclass
class SweepSummary:
    sweep: str
    total: int
    computed: int
    skipped: int
    stopped: bool
    seconds: float

    def to_json(self) -> dict:
        return asdict(self)


def run_sweep(text: str, canary: Canary, base: TrainConfig, grid: dict[str, list], seeds: int = 2, *,
              db=DEFAULT_SWEEP_DB, sweep: str | None = None, progress=None, on_result=None, stop=None,
              executor=None) -> SweepSummary:
    """Train every (cell, seed) not yet stored under ``sweep`` and store its final exposure and losses.

    ``progress(done, total)`` counts runs; ``on_result(run)`` sees each stored :class:`SweepRun`;
    ``stop`` ends the sweep between (or inside) runs: finished runs stay stored. The runs are tasks,
    one CPU each, on ``executor`` (:mod:`ssviz.executor`: local processes or Ray; this process, one
    after another, when None); this process stores each as it arrives, and the first failed run
    stops the sweep and is raised.
    """
    if seeds < 1:
        raise SsvizError("seeds must be >= 1")
    todo = [(c, base.seed + s) for c in cells(grid) for s in range(seeds)]
    for c, seed in todo:  # every run's settings are checked before the first training starts
        replace(_cell_config(base, c), seed=seed).validate()
        _cell_canary(canary, c)
    sweep = sweep or sweep_name(text, canary, base, grid)
    t0 = time.perf_counter()
    done = _stored_runs(db, sweep)
    runs = [(c, seed) for c, seed in todo if (cell_key(c), seed) not in done]
    tally = {"computed": 0, "skipped": len(todo) - len(runs)}

    def store(run: SweepRun) -> None:  # one short transaction per run (see save_run): no connection held while training
        save_run(db, run)
        tally["computed"] += 1
        if on_result:
            on_result(run)
        if progress:
            progress(tally["computed"] + tally["skipped"], len(todo))

    if progress:
        progress(tally["skipped"], len(todo))
    if executor is None:
        executor = InlineExecutor()
    blob = executor.share(text.encode("utf-8"))
    tasks = [{"text": blob, "canary": _cell_canary(canary, c).to_json(), "sweep": sweep, "cell": c,
              "config": asdict(replace(_cell_config(base, c), seed=seed))} for c, seed in runs]
    report = executor.map(sweep_task, tasks, on_result=lambda i, run: store(run), stop=stop, fail_fast=True)
    if report.failed:
        raise report.failed[0].exception()
    return SweepSummary(sweep, len(todo), tally["computed"], tally["skipped"], report.stopped,
                        time.perf_counter() - t0)


def sweep_task(task: dict) -> SweepRun:
    """One (cell, seed) on an executor's worker: the corpus comes by content hash, settings as plain data."""
    from ssviz.errors import StoppedError
    from ssviz.executor import fetch, stop_flag
    from ssviz.templates import Template
    config = TrainConfig.from_dict(task["config"]).validate()
    c = task["canary"]
    canary = Canary(Template(c["template"]), c["secret"], c["insertions"])
    res = train(fetch(task["text"]).decode("utf-8"), config, canary, stop=stop_flag())
    if res.stopped or res.final is None:
        raise StoppedError("the sweep was stopped")
    return _run_record(task["sweep"], task["cell"], config.seed, config, res)


def _cell_config(base: TrainConfig, cell: dict) -> TrainConfig:
    return replace(base, **{k: v for k, v in cell.items() if k not in CANARY_PARAMS})


def _cell_canary(canary: Canary, cell: dict) -> Canary:
    """The cell's canary (checked on construction): the sweep's, with the cell's insertions if it varies them."""
    return replace(canary, insertions=cell.get("insertions", canary.insertions))


def list_sweeps(db=DEFAULT_SWEEP_DB) -> pd.DataFrame:
    """One row per sweep: its name, settings, runs and last update (empty when the file is missing)."""
    with sqldb.reading(db, SWEEPS) as con:
        if con is None:
            return pd.DataFrame(columns=["sweep", "param1", "param2", "runs", "updated"])
        return con.execute("SELECT sweep, any_value(param1) AS param1, any_value(param2) AS param2, "
                           "count(*) AS runs, max(created) AS updated FROM sweep_runs GROUP BY sweep "
                           "ORDER BY updated DESC").df()


def load_runs(db=DEFAULT_SWEEP_DB, sweep: str | None = None) -> pd.DataFrame:
    """All runs of one sweep (the most recent one when ``sweep`` is None); empty if there are none.

    Reads between a running sweep's writes (each run is its own transaction)."""
    with sqldb.reading(db, SWEEPS) as con:
        if con is None:
            return pd.DataFrame(columns=COLUMNS)
        if sweep is None:
            latest = con.execute("SELECT sweep FROM sweep_runs ORDER BY created DESC LIMIT 1").fetchone()
            if latest is None:
                return pd.DataFrame(columns=COLUMNS)
            sweep = latest[0]
        return con.execute("SELECT * FROM sweep_runs WHERE sweep = ? ORDER BY cell, seed", [sweep]).df()


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell: mean, standard deviation, min and max of exposure and test loss over seeds."""
    cols = ["param1", "value1", "param2", "value2", "seeds", "exposure_mean", "exposure_std", "exposure_min",
            "exposure_max", "test_loss_mean", "test_loss_std", "seconds_mean"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    r = runs.assign(param2=runs["param2"].fillna(""), value2=runs["value2"].fillna(""))
    g = r.groupby(["param1", "value1", "param2", "value2"], sort=False)
    out = g.agg(seeds=("seed", "count"), exposure_mean=("exposure", "mean"), exposure_std=("exposure", "std"),
                exposure_min=("exposure", "min"), exposure_max=("exposure", "max"),
                test_loss_mean=("test_loss", "mean"), test_loss_std=("test_loss", "std"),
                seconds_mean=("seconds", "mean")).reset_index()
    return _natural_order(out)[cols]


def _natural_order(df: pd.DataFrame) -> pd.DataFrame:
    """Sort cells numerically when values are numbers (so 32 comes before 128)."""
    def key(s: pd.Series) -> pd.Series:
        num = pd.to_numeric(s, errors="coerce")
        return num if num.notna().all() else s
    return df.sort_values(["value1", "value2"], key=key).reset_index(drop=True)


__all__ = ["DEFAULT_SWEEP_DB", "parse_grid", "cells", "run_sweep", "list_sweeps", "load_runs", "summarize",
           "SweepSummary"]
