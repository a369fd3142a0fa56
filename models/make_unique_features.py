"""Rebuild models/unique_features/: the Unique features page's bundled demo, and the text experiment.

Images (``--images``): the ``unique-features image`` experiment on scikit-learn's bundled
digits, MLP, for each regularizer setting (none, early stopping, weight decay 1e-3, dropout
0.5, batch norm) and the contrast without the feature (``insertions 0``); 10 seeds, 50
controls, 200 OOD photo patches each. Only ``unique_features.json`` is kept per setting
(the per-input CSV and classifiers would be megabytes): the page draws from its per-seed
``m2`` and ``controls``.

Text (``--text``): tiny character LSTMs (1x128, RMSProp 3e-3, batch 32, 6 epochs) trained by ssviz on the first 60 KB of the demo corpus
with the line ``Please send the report to Quorvan before noon.`` inserted 0, 1, 2, 4 and 8
times; for each, the text M2 of ``Quorvan`` (30 controls, 50 contexts of the held-out demo
prose, 4 next units) beside the name's exposure as a canary of ``Please send the report to
{[A-Z]:1}{a:6} before noon.`` (skew-normal, 5,000 samples). Writes ``text.json``.

    nice python models/make_unique_features.py --images --text
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

OUT = Path(__file__).resolve().parent / "unique_features"
NAME = "Quorvan"
TEMPLATE = "Please send the report to {[A-Z]:1}{a:6} before noon."
INSERTIONS = (0, 1, 2, 4, 8)
SETTINGS = {"none": {"early_stopping": False}, "early-stopping": {}, "weight-decay": {"weight_decay": 1e-3},
            "dropout": {"dropout": 0.5}, "batch-norm": {"batch_norm": True}, "no-feature": {"insertions": 0}}


def images(seeds: int) -> None:
    from ssviz.unique_features.images import ImageSettings
    from ssviz.unique_features.run import RESULTS_JSON, run_images
    for name, kw in SETTINGS.items():
        t0 = time.perf_counter()
        doc = run_images(replace(ImageSettings(controls=50), **kw), list(range(seeds)))
        (OUT / name).mkdir(parents=True, exist_ok=True)
        (OUT / name / RESULTS_JSON).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        s = doc["summary"]
        print(f"{name}: M2 mean {s['m2_mean']:.4f} (min {s['m2_min']:.4f}, max {s['m2_max']:.4f}), rank median "
              f"{s['rank_median']}, first in {s['uf_top']}/{s['seeds']}, above controls' median in "
              f"{s['uf_above_control_median']}, p<0.05 in {s.get('p_below_0.05')} ({time.perf_counter() - t0:.0f} s)",
              flush=True)


def text(chars: int, controls: int, n_contexts: int) -> None:
    import torch

    from ssviz.exposure import measure
    from ssviz.templates import parse_template
    from ssviz.train import Canary, TrainConfig, train
    from ssviz.unique_features.run import run_text
    from ssviz.unique_features.text import shipped_contexts

    torch.set_num_threads(1)
    contexts, corpus = shipped_contexts(n_contexts)
    template = parse_template(TEMPLATE)
    config = TrainConfig(layers=1, hidden=128, embedding_dim=32, epochs=6, lr=0.003, batch_size=32, seed=0,
                         patience=None, exposure_method="skewnorm", exposure_samples=200)
    rows = []
    for k in INSERTIONS:
        t0 = time.perf_counter()
        result = train(corpus[:chars], config, Canary(template, NAME, k))
        trained = time.perf_counter() - t0
        doc = run_text(result.model, NAME, contexts, controls=controls, seed=0, corpus=corpus)
        scored = time.perf_counter() - t0 - trained
        exp = measure(result.model, template, NAME, "skewnorm", samples=5_000, seed=0)
        r = doc["results"][0]
        rows.append({"insertions": k, "m2": r["m2"], "m2_ci": r["m2_ci"], "rank": r["rank"],
                     "controls": r["controls"], "control_p_value": r["control_p_value"],
                     "exposure": exp.exposure, "exposure_ci": list(exp.ci) if exp.ci else None,
                     "log_perplexity": exp.log_perplexity, "train_seconds": trained, "score_seconds": scored,
                     "exposure_seconds": time.perf_counter() - t0 - trained - scored})
        print(f"insertions {k}: M2 {r['m2']:.4f} [{r['m2_ci'][0]:.4f}, {r['m2_ci'][1]:.4f}] rank {r['rank']}/"
              f"{controls + 1} (p {r['control_p_value']:.3f}); exposure {exp.exposure:.2f} bits; train {trained:.0f} s, "
              f"M2 {scored:.0f} s", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "text.json").write_text(json.dumps({"name": NAME, "template": TEMPLATE, "chars": chars,
                                               "controls": controls, "contexts": len(contexts), "rows": rows},
                                              indent=1), encoding="utf-8")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", action="store_true")
    ap.add_argument("--text", action="store_true")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--chars", type=int, default=60_000)
    ap.add_argument("--controls", type=int, default=30, help="text controls")
    ap.add_argument("--contexts", type=int, default=50, help="text contexts")
    a = ap.parse_args()
    if a.text:
        text(a.chars, a.controls, a.contexts)
    if a.images:
        images(a.seeds)
