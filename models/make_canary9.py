"""Rebuild ``models/canary9-lstm.safetensors``: a small LSTM that memorized a 9-digit canary.

    python models/make_canary9.py

The paper's section 7.1 setting, scaled to a CPU: "The random number is {d:9}"
with the filler below inserted 10 times into ``models/demo_corpus.txt``, a
1x128 LSTM (embedding 32) trained 12 epochs at lr 0.003. It is the target of
``bench/bench_extraction.py`` (shortest-path search must find the canary in a
space of 10^9 fillers that brute force cannot enumerate quickly).
"""

from __future__ import annotations

import json


from ssviz.demo import CANARY9_CHECKPOINT, DEMO_CORPUS
from ssviz.templates import Template
from ssviz.train import Canary, TrainConfig, read_corpus, train


CANARY9 = {"template": "The random number is {d:9}", "secret": "374912058", "insertions": 10}
CANARY9_CONFIG = {"arch": "lstm", "layers": 1, "hidden": 128, "embedding_dim": 32, "epochs": 12,
                  "batch_size": 128, "seq_len": 20, "lr": 0.003, "seed": 0, "patience": None,
                  "exposure_samples": 2000}


def main() -> None:
    text = read_corpus(DEMO_CORPUS)
    canary = Canary(Template(CANARY9["template"]), CANARY9["secret"], CANARY9["insertions"])
    result = train(text, TrainConfig.from_dict(CANARY9_CONFIG), canary,
                   on_epoch=lambda r: print(json.dumps(r), flush=True))
    result.save(CANARY9_CHECKPOINT)
    print(f"saved {CANARY9_CHECKPOINT} ({CANARY9_CHECKPOINT.stat().st_size:,} bytes) in {result.seconds:.0f} s")


if __name__ == "__main__":
    main()
