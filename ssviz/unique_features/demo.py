"""The bundled demo of the Unique features page (``models/unique_features/``, rebuilt by
``models/make_unique_features.py``): the image experiment per regularizer setting and the text experiment."""

from __future__ import annotations

import json
from pathlib import Path

from ssviz.paths import bundled

BUNDLED_DIR = bundled("unique_features")
# setting folder -> label, in the order the page sets them side by side
SETTINGS = {"none": "no regularizer", "early-stopping": "early stopping", "weight-decay": "weight decay 1e-3",
            "dropout": "dropout 0.5", "batch-norm": "batch norm", "no-feature": "no UF in training (contrast)"}
TEXT_JSON = "text.json"


def bundled_runs() -> dict[str, dict]:
    """``{label: document}`` of the bundled image runs present (a missing one is simply not offered)."""
    from ssviz.unique_features.run import RESULTS_JSON, load
    return {label: load(BUNDLED_DIR / name) for name, label in SETTINGS.items()
            if (BUNDLED_DIR / name / RESULTS_JSON).is_file()}


def text_experiment() -> dict | None:
    path = Path(BUNDLED_DIR / TEXT_JSON)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
