"""A unique-features experiment as a folder: run it (images or text), save it, load it back.

``DIR/per_input.csv`` has one row per (seed, feature, input): ``seed``, ``feature`` (``uf`` or
``control-<i>``), ``input`` (OOD image or context index), ``kl_feature``, ``kl_random``; the M2 of a
(seed, feature) is the mean of ``kl_feature`` minus the mean of ``kl_random`` over its inputs.
``DIR/unique_features.json`` holds the settings and ``results`` (per seed: ``seed``, ``m2``,
``controls``, ``rank`` and, for images, ``p_value``). An image run also keeps each seed's classifier
as ``DIR/classifiers/seed-<s>.safetensors`` (the layout of :mod:`ssviz.unique_features.images`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ssviz.errors import MissingFileError, SsvizError
from ssviz.jsonable import finite_json
from ssviz.tempfiles import atomic_write
from ssviz.unique_features import score

PER_INPUT_CSV = "per_input.csv"
RESULTS_JSON = "unique_features.json"
CLASSIFIERS = "classifiers"
CSV_COLUMNS = ("seed", "feature", "input", "kl_feature", "kl_random")


def summary(results: list[dict]) -> dict:
    """The spread over seeds: M2 of the UF, its rank, and how many seeds put it above every control."""
    m2s = [r["m2"] for r in results]
    out = {"seeds": len(results), "uf_top": sum(r["rank"] == 1 for r in results),
           "uf_above_control_median": sum(r["m2"] > float(np.median(r["controls"])) for r in results)}
    if m2s:
        out.update({"m2_mean": statistics.fmean(m2s), "m2_std": statistics.stdev(m2s) if len(m2s) > 1 else None,
                    "m2_min": min(m2s), "m2_max": max(m2s),
                    "rank_median": statistics.median([r["rank"] for r in results]),
                    "controls_per_seed": len(results[0]["controls"])})
    ps = [r["p_value"] for r in results if r.get("p_value") is not None]
    if ps:
        out["p_below_0.05"] = sum(p < score.ALPHA for p in ps)
    return out


def save(out_dir, kind: str, settings: dict, records: list[dict], seconds: float) -> dict:
    """Write the folder; returns the JSON document (without the per-input rows)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    results = []
    for rec in records:
        for row in rec["rows"]:
            w.writerow([row["seed"], row["feature"], row["input"], repr(row["kl_feature"]), repr(row["kl_random"])])
        weights = rec.get("weights")
        if weights is not None:
            (out / CLASSIFIERS).mkdir(exist_ok=True)
            atomic_write(out / CLASSIFIERS / f"seed-{rec['seed']}.safetensors", weights)
        results.append({k: v for k, v in rec.items() if k not in ("rows", "weights")})
    doc = {"kind": kind, "settings": settings, "results": results, "summary": summary(results),
           "seconds": seconds}
    atomic_write(out / PER_INPUT_CSV, buf.getvalue())
    atomic_write(out / RESULTS_JSON, json.dumps(finite_json(doc), indent=1, allow_nan=False))
    return finite_json(doc)


def read_per_input(path) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """``{(seed, feature): (kl_feature, kl_random)}`` from a ``per_input.csv``, every row checked."""
    got: dict[tuple[int, str], tuple[list, list]] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
                raise SsvizError(f"{path}: the columns must be {', '.join(CSV_COLUMNS)}")
            for n, row in enumerate(reader, start=2):
                try:
                    seed, a, b = int(row["seed"]), float(row["kl_feature"]), float(row["kl_random"])
                except (TypeError, ValueError):
                    raise SsvizError(f"{path} line {n}: seed, kl_feature and kl_random must be numbers") from None
                if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b < 0:
                    raise SsvizError(f"{path} line {n}: a KL divergence is a finite number >= 0")
                fa, fb = got.setdefault((seed, row["feature"] or ""), ([], []))
                fa.append(a)
                fb.append(b)
    except UnicodeDecodeError:
        raise SsvizError(f"{path} is not UTF-8 text") from None
    except csv.Error as e:
        raise SsvizError(f"{path} is not a readable CSV file ({str(e)[:80]})") from None
    return {k: (np.array(a), np.array(b)) for k, (a, b) in got.items()}


def load(out_dir) -> dict:
    """A finished experiment: its JSON document, with every seed's M2 and rank recomputed from the CSV."""
    out = Path(out_dir)
    if not (out / RESULTS_JSON).is_file():
        raise MissingFileError(f"{out} is not a finished unique-features run (no {RESULTS_JSON})")
    try:
        doc = json.loads((out / RESULTS_JSON).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise SsvizError(f"{out / RESULTS_JSON} is not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise SsvizError(f"{out / RESULTS_JSON} has no results list")
    if not (out / PER_INPUT_CSV).is_file():  # a summary-only folder (the bundled demo): its numbers, checked
        for r in doc["results"]:
            if not (isinstance(r, dict) and _number(r.get("m2")) and isinstance(r.get("controls"), list)
                    and all(_number(c) for c in r["controls"]) and r["controls"]):
                raise SsvizError(f"{out / RESULTS_JSON}: every result needs a numeric m2 and a list of controls")
            r["rank"] = score.rank(r["m2"], r["controls"])
        doc["summary"], doc["folder"] = summary(doc["results"]), str(out)
        return doc
    kl = read_per_input(out / PER_INPUT_CSV)
    for r in doc["results"]:
        seed = r.get("seed")
        if (seed, "uf") not in kl:
            raise SsvizError(f"{out / PER_INPUT_CSV} has no rows of seed {seed}'s unique feature")
        r["m2"] = score.m2(*kl[(seed, "uf")])
        names = sorted((f for s, f in kl if s == seed and f.startswith("control-")), key=lambda f: int(f[8:] or 0))
        r["controls"] = [score.m2(*kl[(seed, f)]) for f in names]
        r["rank"] = score.rank(r["m2"], r["controls"])
    doc["summary"] = summary(doc["results"])
    doc["folder"] = str(out)
    return doc


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# --- the two experiments -----------------------------------------------------------------------------------
def run_images(settings, seeds: list[int], out_dir=None, *, data_bytes: bytes | None = None, executor=None,
               progress=None, stop=None) -> dict:
    """Train and measure one classifier per seed (tasks on ``executor``); the folder's JSON document."""
    from ssviz.unique_features.images import run_seeds
    t0 = time.perf_counter()
    records = run_seeds(settings, seeds, data_bytes=data_bytes, executor=executor, progress=progress, stop=stop)
    return _finish("image", {**asdict(settings), "seeds": seeds}, records, t0, out_dir)


def run_classifier(model, settings, seed: int, out_dir=None, *, data_bytes: bytes | None = None) -> dict:
    """Measure an uploaded classifier (no training): the UF's class is unknown, so ``p_value`` is the
    black-box test's (the largest class-probability rise, Bonferroni-corrected over the classes)."""
    from ssviz.unique_features.images import feature_place, load_data, measure
    t0 = time.perf_counter()
    data = load_data(data_bytes if data_bytes is not None else settings.data, ood=settings.ood)
    meta = model.meta
    if (meta["height"], meta["width"]) != data.shape:
        raise SsvizError(f"the classifier reads {meta['height']}x{meta['width']} images, the data are "
                         f"{data.shape[0]}x{data.shape[1]}")
    rec = measure(model, data.ood, feature_place(data.shape, data.x_train), settings, seed)
    return _finish("image", {**asdict(settings), "seeds": [seed], "classifier": True}, [rec], t0, out_dir)


def run_text(model, feature: str, contexts: list[str], *, controls: int = 50, seed: int = 0, next_units: int = 4,
             corpus: str | None = None, out_dir=None, progress=None, stop=None, extra: dict | None = None) -> dict:
    from ssviz.unique_features.text import text_scores
    t0 = time.perf_counter()
    rec = text_scores(model, feature, contexts, controls=controls, seed=seed, next_units=next_units, corpus=corpus,
                      progress=progress, stop=stop)
    settings = {"feature": feature, "controls": controls, "seed": seed, "next_units": next_units,
                "contexts": len(contexts), **(extra or {})}
    return _finish("text", settings, [rec], t0, out_dir)


def _finish(kind: str, settings: dict, records: list[dict], t0: float, out_dir) -> dict:
    seconds = time.perf_counter() - t0
    if out_dir is not None:
        return save(out_dir, kind, settings, records, seconds)
    results = [{k: v for k, v in r.items() if k not in ("rows", "weights")} for r in records]
    return finite_json({"kind": kind, "settings": settings, "results": results, "summary": summary(results),
                        "seconds": seconds})
