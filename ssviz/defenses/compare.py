"""One defense, one strength, one canary: train and measure, as a results record.

:func:`run_defense` produces the records of the "Defense results" contract
(``models/defenses/demo-results.json``)::

    {"defense": "none"|"dropout"|"weight_decay"|"quantize8"|"regex"|"lpd"|"dp", "strength": str,
     "epsilon": float|null, "exposure": float, "exposure_method": str, "test_loss": float, "seconds": float}

plus ``epochs`` (the per-epoch history) and ``details``. Strengths are strings:
a probability for dropout, a coefficient for weight decay, a bit count for
quantization, the pattern names for regex, the dropped fraction for LPD, and
``eps=E`` or ``noise=S`` for DP.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

from ssviz.errors import SsvizError
from ssviz.train import Canary, TrainConfig, insert_canary, split_text, train

DEFENSES = ("none", "dropout", "weight_decay", "quantize8", "regex", "lpd", "dp")
DEFENSE_LABELS = {"none": "No defense", "dropout": "Dropout", "weight_decay": "Weight decay",
                  "quantize8": "8-bit quantization", "regex": "Regex sanitization",
                  "lpd": "LPD sanitization", "dp": "DP-SGD (Opacus)"}
DEFAULT_STRENGTHS = {"none": "-", "dropout": "0.3", "weight_decay": "1e-4", "quantize8": "8",
                     "regex": "ssn+ccn", "lpd": "0.1", "dp": "eps=8"}
RECORD_KEYS = ("defense", "strength", "epsilon", "exposure", "exposure_method", "test_loss", "seconds")


def _number(defense: str, strength: str) -> float:
    try:
        return float(strength)
    except (TypeError, ValueError):
        raise SsvizError(f"{defense} strength must be a number, got {strength!r}") from None


def defense_config(defense: str, strength: str, base: TrainConfig) -> TrainConfig:
    """The training config a defense needs (sanitization defenses train with ``base`` unchanged)."""
    if defense not in DEFENSES:
        raise SsvizError(f"unknown defense {defense!r}: expected one of {', '.join(DEFENSES)}")
    if defense == "dropout":
        return replace(base, dropout=_number(defense, strength)).validate()
    if defense == "weight_decay":
        return replace(base, weight_decay=_number(defense, strength)).validate()
    if defense == "quantize8":
        return replace(base, quantize=int(_number(defense, strength or "8"))).validate()
    if defense == "dp":
        key, _, value = str(strength).partition("=")
        if key == "eps":
            return replace(base, dp_epsilon=_number(defense, value), dp_noise=None).validate()
        if key == "noise":
            return replace(base, dp_noise=_number(defense, value), dp_epsilon=None).validate()
        raise SsvizError(f"dp strength must be 'eps=E' or 'noise=SIGMA', got {strength!r}")
    return base.validate()


def run_defense(text: str, canary: Canary, base: TrainConfig, defense: str, strength: str | None = None, *,
                lpd_config: TrainConfig | None = None, lpd_score: str = "raw", on_epoch=None, on_batch=None, stop=None) -> dict:
    """Train with one defense and return its results record (exposure of ``canary`` on the final model).

    Sanitization runs on the corpus after the canary was inserted into its
    training part (a defender cleans the data it has); the model then trains on
    the cleaned text and the canary's exposure is measured without re-inserting it.
    """
    strength = DEFAULT_STRENGTHS.get(defense, "-") if strength is None else str(strength)
    config = defense_config(defense, strength, base)
    t0 = time.perf_counter()
    details: dict = {}
    if defense in ("regex", "lpd"):
        from ssviz.defenses.sanitize import sanitize_lpd, sanitize_regex
        canary = canary.normalized()
        split = split_text(text, config.val_fraction)  # the one split train() makes: same validation and test
        poisoned = insert_canary(split.train, canary.text, canary.insertions, config.seed)
        if defense == "regex":
            clean = sanitize_regex(poisoned, canary_line=canary.text)
        else:
            clean = sanitize_lpd(poisoned, _number(defense, strength), lpd_config or config, seed=config.seed,
                                 score=lpd_score, canary_line=canary.text, on_batch=on_batch, stop=stop)
        details = {k: v for k, v in clean.to_json(max_removed=5).items() if k != "patterns"}
        # the defender trains on the cleaned training split; the canary is measured, not inserted again
        text, canary = replace(split, train=clean.text), replace(canary, insertions=0)
    result = train(text, config, canary, on_epoch=on_epoch, on_batch=on_batch, stop=stop)
    if result.final is None:
        raise SsvizError("training stopped before the first epoch finished: nothing to measure")
    if result.quantization:
        details["quantization"] = result.quantization
    if config.uses_dp:
        details["dp"] = {"noise_multiplier": result.dp_noise, "clip": config.dp_clip, "delta": config.dp_delta}
    eps = result.epsilon
    return {"defense": defense, "strength": strength,
            "epsilon": eps if eps is not None and math.isfinite(eps) else None,
            "exposure": float(result.final["exposure"]), "exposure_method": result.final["exposure_method"],
            "test_loss": float(result.test_loss), "seconds": time.perf_counter() - t0,
            "stopped": result.stopped, "epochs": result.epochs, "details": details}


def load_results(path) -> list[dict]:
    """Records from a results JSON file, checked against the contract's keys."""
    path = Path(path)
    if not path.is_file():
        raise SsvizError(f"defense results not found: {path}")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SsvizError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise SsvizError(f"{path} must hold a JSON list of records")
    for i, r in enumerate(records):
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise SsvizError(f"{path}: record {i} lacks {', '.join(missing)}")
    return records
