"""The demo's audits: the bundled results, and which audit stands for a defense.

The bundled audits (``models/audit/``, rebuilt by ``models/make_audit.py``) are one
audit each of plain training and of DP-SGD at two epsilons on the demo corpus. An
audit measures a training procedure, not one model, so it stands for any defense
trained with the same defense options (:func:`matching_audit`). What the app does
with them (listing, uploads, its own small run) lives in ``ui/audits.py``.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from ssviz.audit.run import is_audit, training_config
from ssviz.paths import bundled
from ssviz.train import TrainConfig

BUNDLED_DIR = bundled("audit")
BUNDLED = {"plain": "plain training", "dp-eps8": "DP-SGD, epsilon 8", "dp-eps1": "DP-SGD, epsilon 1"}

# Training options that make a defense (their values must match for an audit to stand for a defense).
DEFENSE_OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.metadata.get("group") == "defenses")


def bundled_audits() -> dict[Path, str]:
    """``{folder: label}`` of the bundled audits present (a missing one is simply not offered)."""
    return {BUNDLED_DIR / name: label for name, label in BUNDLED.items() if is_audit(BUNDLED_DIR / name)}


def matching_audit(config: TrainConfig, audits: dict[Path, str] | None = None) -> Path | None:
    """The bundled audit trained with the same defense options as ``config`` (DP target, noise, clipping,
    dropout, ...), or None. The audit measures the training procedure, not one particular model."""
    audits = bundled_audits() if audits is None else audits
    for folder in audits:
        recorded = training_config(folder)
        if recorded and all(recorded.get(k, getattr(TrainConfig(), k)) == getattr(config, k)
                            for k in DEFENSE_OPTIONS):
            return folder
    return None
