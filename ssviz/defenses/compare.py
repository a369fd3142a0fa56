"""One defense, one strength, one canary: train and measure, as a results record.

:func:`run_defense` produces the records of the "Defense results" contract
(``models/defenses/demo-results.json``), :class:`ssviz.records.DefenseResult`, whose JSON is::

    {"defense": "none"|"dropout"|"weight_decay"|"quantize8"|"regex"|"lpd"|"dp", "strength": str,
     "epsilon": float|null, "exposure": float, "exposure_method": str, "test_loss": float, "seconds": float}

plus ``stopped``, ``epochs`` (the per-epoch history, :class:`ssviz.records.DefenseEpoch`), ``details`` and,
in the bundled file, ``setting``. :func:`load_results` and :func:`save_results` read and write such a file.
Strengths are strings:
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

from ssviz.errors import InvalidValueError, MissingFileError, SsvizError
from ssviz.messages import clip
from ssviz.records import DEFENSE_REQUIRED, DefenseEpoch, DefenseResult
from ssviz.train import Canary, TrainConfig, insert_canary, split_text, train

DEFENSES = ("none", "dropout", "weight_decay", "quantize8", "regex", "lpd", "dp")
DEFAULT_STRENGTHS = {"none": "-", "dropout": "0.3", "weight_decay": "1e-4", "quantize8": "8",
                     "regex": "ssn+ccn", "lpd": "0.1", "dp": "eps=8"}
RECORD_KEYS = DEFENSE_REQUIRED  # every record has these


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
                lpd_config: TrainConfig | None = None, lpd_score: str = "raw", on_epoch=None, on_batch=None,
                stop=None) -> DefenseResult:
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
    if eps is not None and not math.isfinite(eps):
        eps = None  # DP with noise 0 promises nothing (inf): the results contract writes null, JSON has no inf
    return DefenseResult(defense=defense, strength=strength, epsilon=eps, exposure=float(result.final["exposure"]),
                         exposure_method=result.final["exposure_method"], test_loss=float(result.test_loss),
                         seconds=time.perf_counter() - t0, stopped=result.stopped,
                         epochs=tuple(DefenseEpoch.from_json(e) for e in result.epochs), details=details)


def load_results(path) -> list[DefenseResult]:
    """The records of a results JSON file; a file that does not fit the contract is one clear error naming the
    record and key (an :class:`~ssviz.errors.SsvizError`), never a traceback further on."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"defense results not found: {path}")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise InvalidValueError(f"{path} is not valid JSON ({clip(str(e) or 'nested too deeply', 100)})") from None
    if not isinstance(records, list):
        raise InvalidValueError(f"{path} must hold a JSON list of records")
    out = []
    for i, r in enumerate(records):
        try:
            out.append(DefenseResult.from_json(r))
        except InvalidValueError as e:
            raise InvalidValueError(f"{path}: record {i}: {clip(str(e), 300)}") from None
    return out


def save_results(records, path) -> None:
    """Write ``records`` as a results file, in the bundled file's layout (what :func:`load_results` reads)."""
    Path(path).write_text(json.dumps([r.to_json() for r in records], indent=1), encoding="utf-8")
