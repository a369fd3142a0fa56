"""Rebuild models/audit/: the bundled privacy audits of the demo (plain training, DP-SGD at epsilon 8 and 1).

Each folder is what :func:`ssviz.audit.run.run_audit` writes (``canaries.csv``,
``audit.json``) without the checkpoint (about 400 KB each; ``checkpoint`` is null
in the JSON). The Audit page loads them, and the Defenses page shows their
audited epsilon beside a claimed one.

Setting (the issue's calibration): the first 150 KB of models/demo_corpus.txt,
a 1x128 LSTM (embedding 32), RMSProp lr 0.003, batch 128, 6 epochs without
early stopping, seed 0; M = 500 canaries of "The code is {d:6}", each included
with probability 1/2 and inserted K = 8 times; bound at 95% confidence and
delta 1e-5. The DP runs are the same with DP-SGD (Opacus, RDP accountant,
clipping norm 1, delta 1e-5) at a target epsilon of 8 and 1 per training line (the
Defenses page's DP rows).
A canary inserted 8 times is a group of 8 lines: ``epsilon_claimed_per_canary``
in the results is the group-privacy conversion (8 x epsilon).

    nice python models/make_audit.py              # all three, about 3 minutes
    nice python models/make_audit.py --only plain # or dp-eps8, dp-eps1
    nice python models/make_audit.py --chars 100000 --only dp-eps1
    python models/make_audit.py --recompute       # only the numbers, from each canaries.csv (no training)
    nice python models/make_audit.py --only plain --canary-kind new-token   # another kind: prints, writes nothing

Run time (2 shared cores at load ~8, one torch thread): plain 38 s, DP epsilon 8
77 s, DP epsilon 1 66 s, training and scoring (with the vectorized DP-SGD of
commit daf0251; the hooks path before it took about 70 s per DP epoch here).
Measured (AUC, TPR at 1% FPR, audited epsilon >= at 95%, claimed per line / per canary):
plain 0.894, 0.255, 2.09, none; DP eps 8 0.661, 0.059, 0.53, 7.99 / 64.0;
DP eps 1 0.595, 0.035, 0.09, 1.00 / 7.97.
The f-DP bound on the same guesses (recomputed with --recompute): plain 3.07, DP eps 8 0.75,
DP eps 1 0.14.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from ssviz.audit.run import AUDIT_JSON, AuditSettings, load_audit, run_audit, save_audit
from ssviz.jsonable import finite_json
from ssviz.tempfiles import atomic_write
from ssviz.demo import DEMO_CORPUS
from ssviz.paths import bundled
from ssviz.train import TrainConfig, read_corpus

OUT = bundled("audit")
CORPUS_CHARS = 150_000
SETTINGS = AuditSettings(template="The code is {d:6}", canaries=500, insertions=8, inclusion=0.5, delta=1e-5,
                         confidence=0.95, seed=0)
CONFIG = TrainConfig(layers=1, hidden=128, embedding_dim=32, epochs=6, batch_size=128, lr=0.003, seed=0,
                     patience=None)
RUNS = {"plain": {}, "dp-eps8": {"dp_epsilon": 8.0}, "dp-eps1": {"dp_epsilon": 1.0}}


def recompute(folder) -> dict:
    """Rewrite ``folder``'s audit.json results from its canaries.csv (new metrics, no retraining)."""
    doc = json.loads((folder / AUDIT_JSON).read_text(encoding="utf-8"))
    res = load_audit(folder)
    doc["results"] = finite_json({k: v for k, v in res.items() if k not in ("scores", "included_mask", "name")})
    atomic_write(folder / AUDIT_JSON, json.dumps(doc, indent=1, allow_nan=False))
    return doc["results"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=list(RUNS), action="append", help="run only these (repeatable)")
    ap.add_argument("--chars", type=int, default=CORPUS_CHARS, help="corpus characters used (default 150,000)")
    ap.add_argument("--recompute", action="store_true", help="recompute the numbers from the stored canaries.csv")
    ap.add_argument("--canary-kind", choices=("random", "new-token", "bigram"), default="random",
                    help="measure another canary kind on the same setting: prints its numbers, writes nothing "
                         "(the bundled audits are the random kind)")
    args = ap.parse_args()
    if args.recompute:
        for name in RUNS:
            if not args.only or name in args.only:
                r = recompute(OUT / name)
                print(f"{name}: AUC {r['auc']:.3f} {r['auc_ci']}, TPR at 1% FPR {r['tpr_at_fpr']['0.01']:.3f} "
                      f"{r['tpr_ci']['0.01']}, epsilon >= {r['epsilon_lower']:.2f} (Steinke), "
                      f">= {r['epsilon_lower_fdp']:.2f} (f-DP)")
        return
    torch.set_num_threads(1)  # faster than 2 contending threads on a shared 2-core machine
    text = read_corpus(DEMO_CORPUS)[:args.chars]
    for name, dp in RUNS.items():
        if args.only and name not in args.only:
            continue
        config = replace(CONFIG, **dp)
        t = time.perf_counter()

        def epoch(r, t=t, name=name):
            eps = f" epsilon {r['epsilon']:.3g}" if r.get("epsilon") is not None else ""
            print(f"{name} epoch {r['epoch']}: train {r['train_loss']:.4f} val {r['val_loss']:.4f}{eps} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)

        audit = run_audit(text, replace(SETTINGS, canary_kind=args.canary_kind), config, on_epoch=epoch)
        audit.train["corpus_chars"] = len(text)
        if args.canary_kind == "random":
            save_audit(audit, OUT / name)  # no model: the checkpoint stays out of the repository
        r = audit.to_json()
        print(f"{name} ({args.canary_kind} canaries): AUC {r['auc']:.3f} {r['auc_ci']}, TPR at 1% FPR "
              f"{r['tpr_at_fpr']['0.01']:.3f} {r['tpr_ci']['0.01']}, epsilon >= {r['epsilon_lower']:.2f} (Steinke), "
              f">= {r['epsilon_lower_fdp']:.2f} (f-DP), claimed {r['epsilon_claimed']}, per canary "
              f"{r['epsilon_claimed_per_canary']}, loss-attack AUC {r['mia_auc']}, "
              f"{time.perf_counter() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
