"""Rebuild models/membership/demo/: the bundled membership result of the demo transformer.

    nice python models/make_membership.py            # about 4 minutes on 2 shared cores

* target: ``models/demo-transformer`` (made by ``models/make_demo_transformer.py``);
* members: as many lines of its training part as there are held-out lines, drawn at
  random (seed 0) from the non-blank lines of the training part of
  ``models/demo_corpus.txt`` (the split :func:`ssviz.corpus.split_text` made for it);
* non-members: every non-blank line of the held-out part (validation and test), the
  same source but the corpus's last tenth, so the blind baseline has something to find;
* reference model: the target's recipe (``make_demo_transformer.CONFIG``, no canary)
  trained on the training part *without* the member lines, so it saw neither set;
  not shipped (only the result is);
* every attack (loss, zlib, lowercase, Min-K%, Min-K%++ at k = 0.2, ref), bootstrap
  and blind baseline seeded with 0. A text longer than the model's context is measured
  on its first 257 tokens.

The folder holds what ``python -m ssviz mia --out DIR`` writes: ``mia.json``,
``scores.csv``, ``texts.csv``. Numbers measured: see the folder's ``mia.json``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ssviz.corpus import Split, split_text
from ssviz.demo import DEMO_CORPUS, DEMO_TRANSFORMER
from ssviz.membership.run import run_mia, save_mia
from ssviz.models import load_model
from ssviz.paths import bundled
from ssviz.train import TrainConfig, read_corpus, train

OUT = bundled("membership") / "demo"
SEED = 0


def demo_sets(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]], Split]:
    """(members, non-members, the reference's split): ``(line number in its part, line)`` pairs."""
    from make_demo_transformer import CONFIG  # this folder is the script's import path
    split = split_text(text, CONFIG.get("val_fraction", 0.1))
    train_lines = [(i, ln) for i, ln in enumerate(split.train.split("\n")) if ln.strip()]
    held = [(i, ln) for i, ln in enumerate((split.val + split.test).split("\n")) if ln.strip()]
    pick = np.random.default_rng(SEED).choice(len(train_lines), len(held), replace=False)
    members = [train_lines[j] for j in sorted(pick)]
    chosen = {i for i, _ in members}
    rest = "\n".join(ln for i, ln in enumerate(split.train.split("\n")) if i not in chosen)
    return members, held, Split(rest + "\n", split.val, split.test)


def main() -> None:
    from make_demo_transformer import CONFIG  # this folder is the script's import path
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    members, nonmembers, ref_split = demo_sets(read_corpus(DEMO_CORPUS))
    t0 = time.perf_counter()
    reference = train(ref_split, TrainConfig.from_dict(CONFIG)).model
    trained = time.perf_counter() - t0
    model = load_model(DEMO_TRANSFORMER)
    result = run_mia(model, members, nonmembers, reference=reference, seed=SEED)
    extra = {"checkpoint": "models/demo-transformer", "reference": "the demo transformer's recipe trained without "
             "the member lines (not shipped)", "members_file": "training lines of models/demo_corpus.txt",
             "nonmembers_file": "held-out lines of models/demo_corpus.txt",
             "description": "demo transformer: training lines vs held-out lines of its corpus",
             "reference_train_seconds": round(trained, 1)}
    save_mia(result, args.out, extra)
    doc = result.to_json()
    print(json.dumps({n: {k: a[k] for k in ("auc", "auc_ci", "tpr_at_fpr", "tpr_ci")}
                      for n, a in {**doc["attacks"], "blind": doc["blind"]}.items()}, indent=1))
    print(doc["shift_message"])


if __name__ == "__main__":
    main()
