"""Membership inference on texts: the field's attack battery, LiRA over a counterfactual pool, and the
model-free blind baseline that tells whether a member/non-member split measures memorization at all.

``attacks`` (score formulas over :class:`ssviz.scoring.Reading`), ``lira`` (the pool), ``blind`` (the
baseline and the shift rule), ``run`` (the driver: files in, ``scores.csv`` and ``mia.json`` out).
Higher score = more likely a member, for every attack.
"""

from ssviz.membership.attacks import ATTACKS, DEFAULT_K, minkpp_z, scores_from_readings
from ssviz.membership.blind import blind_baseline, shift_warning

__all__ = ["ATTACKS", "DEFAULT_K", "blind_baseline", "minkpp_z", "scores_from_readings", "shift_warning"]
