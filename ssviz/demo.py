"""The bundled demo: a corpus, a checkpoint with an inserted canary, and how it was made.

Rebuilt by ``python models/make_demo.py``. The canary below was inserted
``insertions`` times into the training part of the corpus; ``control`` is a
filler of the same template that was never inserted, for comparison.
"""

from __future__ import annotations

from functools import lru_cache
from ssviz.paths import bundled

DEMO_CORPUS = bundled("demo_corpus.txt")
DEMO_CHECKPOINT = bundled("demo-lstm.safetensors")
CANARY9_CHECKPOINT = bundled("canary9-lstm.safetensors")
DEMO_TRANSFORMER = bundled("demo-transformer")  # Llama-style, made by models/make_demo_transformer.py
DEMO_TRANSFORMER_CANARY = {"template": "The secret code is {d:6}", "secret": "460317", "insertions": 10}
DEMO_CANARY = {"template": "The secret code is {d:6}", "secret": "281546", "insertions": 8}
DEMO_CONTROL = "730912"
DEMO_CONFIG = {"arch": "lstm", "layers": 2, "hidden": 200, "embedding_dim": 64, "epochs": 20,
               "batch_size": 128, "seq_len": 20, "lr": 0.002, "seed": 0, "patience": 3}


@lru_cache(maxsize=1)
def load_demo_model():
    """The demo checkpoint (cached: it is read-only)."""
    from ssviz.models import load_checkpoint
    return load_checkpoint(DEMO_CHECKPOINT)


def demo_corpus() -> str:
    from ssviz.train import read_corpus
    return read_corpus(DEMO_CORPUS)
