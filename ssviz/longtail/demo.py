"""The long-tail demo: a small pool on lines of the demo corpus with planted novel and duplicated lines.

Rebuilt by ``python models/make_longtail_demo.py`` into ``models/longtail/counterfactual/`` (the
matrices, the tables and the tiny models' weights, well under 2 MB). The novel lines are unlike
anything else in the corpus (random codes): a model can only predict them by memorizing them, so
Feldman's theory says they should score highest. Each duplicated line appears ``DUPLICATES``
times: a model trained without one copy has seen the others, so its memorization is near 0. The
validation file holds a near copy of each novel line, whose best helper should be that novel line.
"""

from __future__ import annotations

import numpy as np

from ssviz.errors import SsvizError
from ssviz.paths import bundled
from ssviz.train import TrainConfig

DEMO_DIR = bundled("longtail/counterfactual")
VERBATIM_DIR = bundled("longtail/verbatim")  # the verbatim-extraction demo's verbatim.csv (and its JSON)
ORDINARY, VALIDATION_LINES, DUPLICATED, DUPLICATES = 110, 24, 3, 6
MODELS, SUBSET, SEED = 12, 0.5, 0
CONFIG = TrainConfig(layers=1, hidden=40, embedding_dim=16, epochs=12, batch_size=32, seq_len=20, lr=0.01, seed=0,
                     patience=0)
# what the Long tail page trains on the spot: about a minute on two shared cores
LIVE_MODELS, LIVE_ORDINARY, LIVE_VALIDATION = 6, 40, 10
LIVE_CONFIG = TrainConfig(layers=1, hidden=32, embedding_dim=16, epochs=6, batch_size=32, seq_len=20, lr=0.01, seed=0,
                          patience=0)
NOVEL = ["Vault key for crate 7 is QX-4417-ZEBRA-MOTH.", "Door code of the north lab: 9 1 8 2 7 7 3.",
         "Kestrel ate plum jam at 4:17 in Oslo, said Ivo.", "Ship the 36 blue forks to Zuri Quell by June."]
NEAR = ["Vault key for crate 8 is QX-4417-ZEBRA-MOTH.", "Door code of the south lab: 9 1 8 2 7 7 3.",
        "Kestrel ate fig jam at 4:17 in Oslo, said Ivo.", "Ship the 36 red forks to Zuri Quell by June."]


def demo_texts(corpus: str, seed: int = SEED, ordinary: int = ORDINARY, validation: int = VALIDATION_LINES
               ) -> tuple[str, str, dict]:
    """``(training text, validation text, roles)`` of the demo pool from the demo corpus: short ordinary
    lines, the novel lines once each and a few lines ``DUPLICATES`` times, shuffled (seeded). ``roles``
    maps each training line number to ``ordinary``, ``novel`` or ``duplicated``."""
    lines = list(dict.fromkeys(l for l in corpus.split("\n") if 40 <= len(l) <= 90 and l.isascii()))
    need = ordinary + validation + DUPLICATED
    if len(lines) < need:
        raise SsvizError(f"the corpus has {len(lines)} distinct ASCII lines of 40 to 90 characters; the long-tail pool "
                         f"needs {need}: choose a longer corpus")
    rng = np.random.default_rng(seed)
    picked = [lines[i] for i in rng.choice(len(lines), need, replace=False)]
    ordinary, val, dup = picked[:ordinary], picked[ordinary:ordinary + validation], picked[ordinary + validation:]
    items = ([(t, "ordinary") for t in ordinary] + [(t, "novel") for t in NOVEL]
             + [(t, "duplicated") for t in dup for _ in range(DUPLICATES)])
    order = rng.permutation(len(items))
    items = [items[i] for i in order]
    roles = {i: role for i, (_, role) in enumerate(items)}
    return "".join(t + "\n" for t, _ in items), "".join(t + "\n" for t in val + NEAR), roles
