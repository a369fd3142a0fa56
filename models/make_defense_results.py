"""Rebuild models/defenses/demo-results.json: every defense on the demo canary.

Setting (smaller than the demo checkpoint so the set regenerates in ~10-15
minutes on 2 idle CPU cores): the first 100 KB of models/demo_corpus.txt, a
1x128 LSTM (embedding 32), RMSProp lr 0.005, batch 128, 6 epochs without early
stopping, and the demo canary "The secret code is {d:6}" = 281546 inserted 8
times; exposure is exact over the 10^6 fillers after every epoch. The
undefended record is the quantization run's "before" model (same training).

    nice python models/make_defense_results.py [--only dp] [--out PATH]
    nice python models/make_defense_results.py --sweep     # models/defenses/demo-sweep.duckdb

The sweep is the paper's Table 2 in small: batch size x hidden units (3x3) x 2
seeds on the first 50 KB, 4 epochs, same canary; it prints its wall time.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from ssviz.defenses.compare import load_results, run_defense, save_results
from ssviz.demo import DEMO_CANARY, DEMO_CORPUS
from ssviz.paths import bundled
from ssviz.records import DefenseResult
from ssviz.templates import Template
from ssviz.train import Canary, TrainConfig

OUT = bundled("defenses/demo-results.json")
SWEEP_DB = bundled("defenses/demo-sweep.duckdb")
SWEEP_GRID = {"batch_size": [32, 64, 128], "hidden": [32, 64, 128]}
SWEEP_CHARS = 50_000
CORPUS_CHARS = 100_000
CONFIG = TrainConfig(layers=1, hidden=128, embedding_dim=32, epochs=6, batch_size=128, lr=0.005, seed=0,
                     patience=None, exposure_method="exact")
# LPD's half models must memorize once-seen lines: 12 epochs, and lines ranked per character (raw
# |L_F - L_G| in bits is dominated by the corpus' long lines: a once-only canary ranked 374/582 that way,
# 5/582 per character)
LPD_CONFIG = TrainConfig(layers=1, hidden=128, embedding_dim=32, epochs=12, batch_size=128, lr=0.005, seed=0,
                         patience=None)
LPD_SCORE = "per_char"
RUNS = [("quantize8", "8"), ("dp", "noise=0"), ("dp", "eps=8"), ("dp", "eps=3"), ("dp", "eps=1"),
        ("dropout", "0.1"), ("dropout", "0.3"), ("dropout", "0.5"), ("weight_decay", "1e-5"),
        ("weight_decay", "1e-4"), ("weight_decay", "1e-3"), ("regex", "ssn+ccn"), ("lpd", "0.1")]


def undefended_from_quantized(rec: DefenseResult) -> DefenseResult:
    """The quantization run's model before quantizing is exactly the undefended model."""
    before = rec.details["quantization"]["before"]
    return replace(rec, defense="none", strength="-", exposure=before["exposure"],
                   exposure_method=rec.epochs[-1].exposure_method, test_loss=before["test_loss"], details={})


def make_sweep() -> None:
    from ssviz.sweeps import load_runs, run_sweep, summarize
    text = DEMO_CORPUS.read_text(encoding="utf-8")[:SWEEP_CHARS]
    canary = Canary(Template(DEMO_CANARY["template"]), DEMO_CANARY["secret"], DEMO_CANARY["insertions"])
    config = TrainConfig(layers=1, hidden=64, embedding_dim=32, epochs=4, batch_size=128, lr=0.005, seed=0,
                         patience=None, exposure_method="exact")
    t = time.perf_counter()
    s = run_sweep(text, canary, config, SWEEP_GRID, seeds=2, db=SWEEP_DB, sweep="table2-batch-x-hidden",
                  progress=lambda d, n: print(f"run {d}/{n} {time.perf_counter() - t:.0f}s", flush=True))
    print(f"{s.computed} runs computed, {s.skipped} stored, {time.perf_counter() - t:.0f} s")
    print(summarize(load_runs(SWEEP_DB, s.sweep)).round(2).to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run only this defense and merge into the existing file")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--sweep", action="store_true", help="build the bundled sweep database instead")
    args = ap.parse_args()
    torch.set_num_threads(1)  # faster than 2 contending threads on a shared 2-core machine
    if args.sweep:
        make_sweep()
        return
    text = DEMO_CORPUS.read_text(encoding="utf-8")[:CORPUS_CHARS]
    out = Path(args.out)
    records = load_results(out) if args.only and out.exists() else []
    records = [r for r in records if r.defense != args.only]
    for defense, strength in RUNS:
        if args.only and defense != args.only:
            continue
        canary = Canary(Template(DEMO_CANARY["template"]), DEMO_CANARY["secret"], DEMO_CANARY["insertions"])
        t = time.perf_counter()
        rec = run_defense(text, canary, CONFIG, defense, strength, lpd_config=LPD_CONFIG, lpd_score=LPD_SCORE)
        rec = replace(rec, setting={"corpus_chars": CORPUS_CHARS, "model": "1x128 LSTM", "epochs": CONFIG.epochs,
                                    "insertions": DEMO_CANARY["insertions"]})
        if defense == "quantize8":
            records.append(undefended_from_quantized(rec))
        records.append(rec)
        print(f"{defense:13s} {strength:8s} exposure {rec.exposure:6.2f} test loss {rec.test_loss:.3f} "
              f"eps {rec.epsilon} {time.perf_counter() - t:6.1f}s", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_results(records, out)


if __name__ == "__main__":
    main()
