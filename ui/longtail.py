"""The Long tail page's glue: which pools it offers (bundled, run here, typed), where runs go, and the
small pool it trains on the spot as the app's background job. The pools themselves are
``ssviz.longtail``'s."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ssviz.errors import SsvizError
from ssviz.longtail import demo
from ssviz.longtail.counterfactual import INCLUSION, MEMORIZATION, METRICS, load_pool, memorization_table
from ssviz.paths import claim_unique, confined, data_path
from ui.jobs import Job

VERBATIM_CSV = "verbatim.csv"


def runs_dir() -> Path:
    """Where the app writes the pools it trains (``data/longtail``)."""
    return data_path("longtail")


def is_pool(folder: Path) -> bool:
    return all((Path(folder) / n).is_file() for n in (INCLUSION, METRICS, MEMORIZATION))


def saved_pools() -> list[Path]:
    folder = runs_dir()
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and is_pool(p)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def typed_pool(typed: str, roots) -> Path:
    folder = confined(typed, roots, "pool folders", hint="run the counterfactual command with --out there")
    if not is_pool(folder):
        raise SsvizError(f"{typed} is not a finished counterfactual pool (it needs {INCLUSION}, {METRICS} and "
                         f"{MEMORIZATION})")
    return folder


def pool_view(folder: Path, metric: str) -> dict:
    """Everything the page draws from one pool: the memorization table (recomputed from the matrices),
    roles where the folder names them, frequency and surprise under the OUT models, influence pairs."""
    pool = load_pool(folder)
    mem = memorization_table(pool)
    roles_file = folder / "roles.json"
    roles = None
    if roles_file.is_file():
        named = json.loads(roles_file.read_text(encoding="utf-8"))
        roles = [named.get(str(int(e)), "ordinary") for e in pool.examples]
    from ssviz.longtail.counterfactual import influence_pairs
    return {"pool": pool, "mem": mem, "roles": roles, "frequency": pool.frequency,
            "out_bits": -pool.out_log_likelihood(), "pairs": influence_pairs(pool), "metric": metric}


def verbatim_table(folders) -> tuple[pd.DataFrame | None, dict, Path | None]:
    """The first ``verbatim.csv`` among ``folders`` (the pool's, then the bundled one) and its summary (the
    ``verbatim.json`` beside it, else computed from the rows); ``(None, {}, None)`` when there is none."""
    from ssviz.longtail.verbatim import read_rows, summary_of
    for folder in folders:
        p = Path(folder) / VERBATIM_CSV
        if p.is_file():
            rows = read_rows(p)
            try:
                summary = json.loads((Path(folder) / "verbatim.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                summary = None
            if not isinstance(summary, dict) or "by_duplicates" not in summary:
                summary = summary_of(rows)
            return rows, summary, p
    return None, {}, None


def start_live_pool(text: str, name: str, models: int, epochs: int) -> Job:
    """Train a small pool on lines of ``text`` (with the demo's planted novel and duplicated lines) as the
    app's background job: progress counts models, Stop keeps the models trained (a re-run resumes)."""
    from dataclasses import replace

    from ssviz.longtail.counterfactual import run_pool
    from ssviz.tempfiles import atomic_write
    train_text, val_text, roles = demo.demo_texts(text, ordinary=demo.LIVE_ORDINARY,
                                                  validation=demo.LIVE_VALIDATION)
    config = replace(demo.LIVE_CONFIG, epochs=epochs).validate()
    out = claim_unique(runs_dir(), "pool", directory=True)

    def run(progress, stop) -> dict:
        atomic_write(out / "roles.json", json.dumps({str(k): v for k, v in roles.items()}))
        atomic_write(out / "train.txt", train_text)
        atomic_write(out / "validation.txt", val_text)
        result = run_pool(train_text, config, out, models=models, subset=demo.SUBSET, validation=val_text,
                          progress=lambda d, t: progress(d, t, f"{d} of {t} models trained"), stop=stop)
        return {"path": out, "seconds": result.seconds}

    return Job(("longtail", out.name), f"Training {models} models on the {name}", run, {"folder": out})


def mean_or_nan(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
