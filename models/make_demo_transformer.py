"""Rebuild the bundled demo transformer: a small Llama-style model with an inserted canary.

    nice python models/make_demo_transformer.py            # writes models/demo-transformer/

Everything is seeded (weights, batches, canary positions; the BPE tokenizer is
deterministic), so a rerun on the same library versions gives the same folder.

* corpus: ``models/demo_corpus.txt`` (300 KB of stdlib docstrings, the LSTM demo's);
* canary: ``The secret code is {d:6}`` with filler ``460317`` (the LSTM demo's is
  ``281546``) inserted 10 times at random line boundaries of the training part;
  ``730912`` is the control filler, never inserted;
* model: Llama-style, 2 blocks of width 128, 4 heads (2 key/value heads), a
  byte-level BPE of 800 tokens trained on the corpus's training part with every
  digit its own token and BOS prepended (``python -m ssviz train --arch llama``);
* training: AdamW lr 3e-3, windows of 64 tokens, batch 32, 8 epochs, no early
  stopping; per-epoch exposure by skew-normal (2,000 samples) to keep epochs short;
* after training, the exact exposure of the canary and of the control (ranks among
  all 10^6 fillers, scored by :mod:`ssviz.scoring`) is printed and saved in
  the folder's ``ssviz_training.json`` under ``demo``.

Measured on the 2-core machine this was built on (shared with other work): see
README.md "Shipped artefacts" for the run time, the folder's size and the exposures.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from ssviz.demo import DEMO_CORPUS
from ssviz.paths import bundled
from ssviz.templates import Template
from ssviz.train import Canary, TrainConfig, read_corpus, train

DEMO_TRANSFORMER = bundled("demo-transformer")
CANARY = {"template": "The secret code is {d:6}", "secret": "460317", "insertions": 10}
CONTROL = "730912"
CONFIG = {"arch": "llama", "layers": 2, "hidden": 128, "heads": 4, "vocab_size": 800, "epochs": 8,
          "batch_size": 32, "seq_len": 64, "lr": 0.003, "seed": 0, "patience": None,
          "exposure_method": "skewnorm", "exposure_samples": 2000}


def exact_exposures(model, template: Template, fillers: list[str]) -> dict:
    """Rank and exposure of each filler among every filler of the template (one exhaustive scoring)."""
    from ssviz import scoring
    t0 = time.perf_counter()
    lps = scoring.score_space(model, template)
    seconds = time.perf_counter() - t0
    out = {}
    for f in fillers:
        lp = float(lps[template.index_of(f)])
        rank = int(np.count_nonzero(lps <= lp))
        out[f] = {"rank": rank, "exposure": math.log2(template.space_size) - math.log2(rank), "log_perplexity": lp}
    return {"fillers": out, "space_size": template.space_size, "scoring_seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    ap.add_argument("--out", default=str(DEMO_TRANSFORMER), help="model folder to write")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = read_corpus(DEMO_CORPUS)
    template = Template(CANARY["template"])
    canary = Canary(template, CANARY["secret"], CANARY["insertions"])
    config = TrainConfig.from_dict({**CONFIG, "epochs": args.epochs})
    t0 = time.perf_counter()
    result = train(text, config, canary, on_epoch=lambda r: print(json.dumps(r), flush=True))
    trained = time.perf_counter() - t0
    exact = exact_exposures(result.model, template, [CANARY["secret"], CONTROL])
    demo = {"control": CONTROL, "exact": exact, "train_seconds": trained, "threads": args.threads}
    path = result.save(args.out, extra={"demo": demo})
    size = sum(p.stat().st_size for p in path.iterdir())
    print(json.dumps({"saved": str(path), "bytes": size, "train_seconds": round(trained, 1),
                      "test_loss": result.test_loss, **exact}, indent=2))


if __name__ == "__main__":
    main()
