"""Rebuild the Long tail page's bundled demo pool (``models/longtail/counterfactual/``).

    python models/make_longtail_demo.py            # train the pool (about a minute on one core)

Writes the training and validation texts, ``roles.json`` (which lines are novel or duplicated) and the pool
the ``counterfactual`` command writes; prints the numbers the README quotes.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd

from ssviz.demo import demo_corpus
from ssviz.longtail import demo
from ssviz.longtail.counterfactual import MEMORIZATION, run_pool
from ssviz.tempfiles import atomic_write


def main() -> None:
    out = demo.DEMO_DIR
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    train_text, val_text, roles = demo.demo_texts(demo_corpus())
    atomic_write(out / "train.txt", train_text)
    atomic_write(out / "validation.txt", val_text)
    atomic_write(out / "roles.json", json.dumps({str(k): v for k, v in roles.items()}, indent=0))
    result = run_pool(train_text, demo.CONFIG, out, models=demo.MODELS, subset=demo.SUBSET, validation=val_text,
                      log=print)
    mem = pd.read_csv(out / MEMORIZATION)
    mem["role"] = mem["example"].map(roles)
    table = mem.groupby("role")[["mem_accuracy", "mem_log_likelihood"]].agg(["mean", "median", "count"])
    print(table.to_string())
    summary = result.to_json()
    print(f"{summary['models']} models, {summary['seconds']:.1f} s, {summary['seconds_per_model']:.2f} s per model")
    for p in summary["influence"][:5]:
        print(f"  {p['influence_accuracy']:+.3f}  {p['train_text'][:50]!r} -> {p['validation_text'][:50]!r}")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"demo folder: {size / 1e6:.2f} MB; novel mem mean {np.nanmean(mem[mem.role == 'novel'].mem_accuracy):.3f}")


if __name__ == "__main__":
    main()
