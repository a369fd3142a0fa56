"""Rebuild the bundled verbatim-extraction result: a small transformer trained with duplicated lines.

    nice python models/make_longtail_verbatim.py        # writes models/longtail/verbatim/

* corpus: the training part of ``models/demo_corpus.txt`` (its first 90%, cut as training cuts it; the
  demo's lines are distinct), with ``PER_COUNT`` long lines planted at each count of ``COUNTS``: each such
  line occurs that many times in all, its extra copies inserted at seeded random line positions; every
  other line occurs once. The held-out 10% is never trained on and is tested too, as a control;
* model: the demo transformer's recipe (Llama-style, 2 blocks of width 128, a BPE of 800 tokens, AdamW
  lr 3e-3, windows of 64 tokens), ``EPOCHS`` epochs, no canary; it is not shipped (the result is);
* test: ``verbatim`` with a 32-token prefix and a 32-token suffix (Biderman et al.), the rate against K
  for K = 2, 4, 8, 16, 32 on the same lines.

Written into the folder: ``verbatim.csv`` (the contract's rows, ``line`` numbering the lines of
``corpus.txt.gz``), ``verbatim.json`` (the summary the command prints, with the training details and the
held-out control) and ``corpus.txt.gz`` (the exact text trained on and tested). Everything is seeded.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import time

import numpy as np
import torch

from ssviz.corpus import Split, split_text
from ssviz.demo import DEMO_CORPUS
from ssviz.longtail.verbatim import save, verbatim
from ssviz.paths import bundled
from ssviz.train import TrainConfig, read_corpus, train

OUT = bundled("longtail/verbatim")
COUNTS = (2, 4, 8, 16, 32)
PER_COUNT = 12
MIN_CHARS = 250  # planted lines long enough for 32 + 32 tokens of an 800-token BPE
SEED = 0
EPOCHS = 6
PREFIX, SUFFIX, PREFIXES = 32, 32, (2, 4, 8, 16, 32)
CONFIG = {"arch": "llama", "layers": 2, "hidden": 128, "heads": 4, "vocab_size": 800, "epochs": EPOCHS,
          "batch_size": 32, "seq_len": 64, "lr": 0.003, "seed": SEED, "patience": None,
          "exposure_method": "skewnorm", "exposure_samples": 200}


def planted_corpus(train_text: str, seed: int = SEED) -> tuple[str, dict[int, list[str]]]:
    """The training text with ``PER_COUNT`` long lines at each count, copies at seeded random positions."""
    rng = np.random.default_rng(seed)
    lines = train_text.rstrip("\n").split("\n")
    long = [i for i, line in enumerate(lines) if len(line) >= MIN_CHARS]
    picked = rng.choice(long, size=PER_COUNT * len(COUNTS), replace=False)
    planted = {c: [lines[i] for i in picked[j * PER_COUNT:(j + 1) * PER_COUNT]] for j, c in enumerate(COUNTS)}
    extra = [line for c, group in planted.items() for line in group for _ in range(c - 1)]
    rng.shuffle(extra)
    spots = np.sort(rng.integers(0, len(lines) + 1, size=len(extra)))
    out, k = [], 0
    for i in range(len(lines) + 1):
        while k < len(extra) and spots[k] == i:
            out.append(extra[k])
            k += 1
        if i < len(lines):
            out.append(lines[i])
    return "\n".join(out) + "\n", planted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    split = split_text(read_corpus(DEMO_CORPUS), 0.1)
    text, planted = planted_corpus(split.train)
    config = TrainConfig.from_dict({**CONFIG, "epochs": args.epochs})
    t0 = time.perf_counter()
    result = train(Split(text, split.val, split.test), config, on_epoch=lambda r: print(json.dumps(r), flush=True))
    trained = time.perf_counter() - t0
    res = verbatim(result.model, text, prefix=PREFIX, suffix=SUFFIX, prefixes=PREFIXES)
    control = verbatim(result.model, split.val + split.test, prefix=PREFIX, suffix=SUFFIX)
    from pathlib import Path
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out / "corpus.txt.gz", "wb", mtime=0) as f:
        f.write(text.encode("utf-8"))
    held = control.to_json()
    summary = save(res, out, {
        "corpus": "corpus.txt.gz", "checkpoint": None,
        "model": {"config": dataclasses.asdict(config),
                  "parameters": result.model.parameter_count, "train_seconds": round(trained, 1),
                  "test_loss": result.test_loss, "threads": args.threads},
        "planted": {str(c): len(g) for c, g in planted.items()}, "seed": SEED,
        "held_out": {"lines": held["lines"], "tested": held["tested"], "short": held["short"], **held["overall"]},
        "made_by": "models/make_longtail_verbatim.py"})
    size = sum(p.stat().st_size for p in out.iterdir())
    print(json.dumps({"out": str(out), "bytes": size, "train_seconds": round(trained, 1),
                      "verbatim_seconds": round(res.seconds, 1), "tested": summary["tested"],
                      "rates_by_duplicates": summary["rates_by_duplicates"],
                      "match_by_duplicates": {str(g["duplicates"]): round(g["mean_match_fraction"], 3)
                                              for g in summary["by_duplicates"]},
                      "held_out_rate": summary["held_out"]["rate"],
                      "by_prefix": {str(r["prefix"]): r["rate"] for r in summary.get("by_prefix", [])},
                      "duplicates_law": summary["duplicates_law"], "prefix_law": summary.get("prefix_law")},
                     indent=1))


if __name__ == "__main__":
    main()
