"""The attack battery: one membership score per text per attack, from readings shared by all attacks.

Every score is a formula over :class:`ssviz.scoring.Reading` (natural logs; the first unit is context,
so a text of ``L + 1`` units has ``L`` predicted units), written as the Min-K%++ reference code
(zjysteven/mink-plus-plus ``run.py``) computes it, so numbers compare with the literature:

* ``loss``      ll = mean log-probability of the predicted units (Yeom et al. 2018)
* ``zlib``      ll / len(zlib.compress(text.encode("utf-8"))) (Carlini et al. 2021)
* ``lowercase`` ll(text.lower()) / ll(text) (Carlini et al. 2021)
* ``mink``      mean of the floor(k L) smallest unit log-probabilities (Shi et al. 2024)
* ``minkpp``    mean of the floor(k L) smallest z_t = (log p(x_t) - mu_t) / sigma_t, mu_t and sigma_t the
                mean and standard deviation of log p(v) under the model's next-unit distribution
                (Zhang et al. 2025)
* ``ref``       ll(target) - ll(reference model) (Carlini et al. 2021)
* ``lira``      online LiRA over a counterfactual pool (Carlini et al. 2022; :mod:`ssviz.membership.lira`)

Higher score = more likely a member, for every attack (the reference code's convention).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ssviz.errors import SettingsError
from ssviz.scoring import Reading

DEFAULT_K = 0.2
TINY = 1e-12  # |ll| below this is read as this (a ratio's denominator), sigma below it gives z = 0


@dataclass(frozen=True)
class Attack:
    name: str
    title: str
    source: str
    needs: str = ""  # "" (the target's reading), "lower" (a second pass), "reference" (a model), "pool"


ATTACKS = {a.name: a for a in (
    Attack("loss", "Loss", "Yeom et al. 2018, Privacy risk in machine learning"),
    Attack("zlib", "zlib", "Carlini et al. 2021, Extracting training data from large language models"),
    Attack("lowercase", "Lowercase", "Carlini et al. 2021, Extracting training data from large language models",
           "lower"),
    Attack("mink", "Min-K%", "Shi et al. 2024, Detecting pretraining data from large language models"),
    Attack("minkpp", "Min-K%++", "Zhang et al. 2025, Min-K%++: improved baseline for detecting pre-training data"),
    Attack("ref", "Reference model", "Carlini et al. 2021, Extracting training data from large language models",
           "reference"),
    Attack("lira", "LiRA (online)", "Carlini et al. 2022, Membership inference attacks from first principles",
           "pool"),
)}


def parse_attacks(text: str | Sequence[str] | None, *, reference: bool = False, pool: bool = False) -> list[str]:
    """The attacks asked for (comma-separated or a list), checked; by default every attack whose input is
    there (``ref`` with a reference model, ``lira`` with a pool)."""
    if text is None:
        return [n for n, a in ATTACKS.items() if a.needs not in ("reference", "pool")
                or (a.needs == "reference" and reference) or (a.needs == "pool" and pool)]
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise SettingsError("--attacks names no attack")
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise SettingsError(f"unknown attack {unknown[0]!r}: choose from {', '.join(ATTACKS)}")
    if "ref" in names and not reference:
        raise SettingsError("the ref attack needs a reference model (--reference)")
    if "lira" in names and not pool:
        raise SettingsError("the lira attack needs a counterfactual pool (--pool)")
    return list(dict.fromkeys(names))


def check_k(k: float) -> float:
    if not (isinstance(k, (int, float)) and math.isfinite(k) and 0 < k <= 1):
        raise SettingsError(f"k must be a fraction in (0, 1], got {k!r}")
    return float(k)


def mean_ll(reading: Reading) -> float:
    """ll: the mean natural-log probability of the predicted units (minus the reference code's loss)."""
    return float(np.mean(reading.logp))


def lowest_mean(values: np.ndarray, k: float) -> float:
    """Mean of the floor(k L) smallest values. The reference code takes the mean of an empty set (NaN) when
    floor(k L) = 0; a text that short is scored by its single smallest value instead."""
    n = max(1, int(len(values) * k))
    return float(np.mean(np.sort(values)[:n]))


def minkpp_z(reading: Reading) -> np.ndarray:
    """z_t = (log p(x_t) - mu_t) / sigma_t per predicted unit (0 where the distribution is one-hot)."""
    if reading.mu is None or reading.sigma is None:
        raise ValueError("Min-K%++ needs readings taken with stats=True")
    sigma = np.asarray(reading.sigma, dtype=np.float64)
    diff = np.asarray(reading.logp, dtype=np.float64) - reading.mu
    return np.where(sigma > TINY, diff / np.maximum(sigma, TINY), 0.0)


def zlib_bytes(text: str) -> int:
    return len(zlib.compress(text.encode("utf-8")))


def _negative(ll: float) -> float:
    return min(ll, -TINY)  # a denominator: ll is <= 0, and exactly 0 only for a perfectly predicted text


def scores_from_readings(names: Sequence[str], texts: Sequence[str], readings: Sequence[Reading], *,
                         lower: Sequence[Reading] | None = None, reference: Sequence[Reading] | None = None,
                         k: float = DEFAULT_K) -> dict[str, np.ndarray]:
    """``{attack: scores}`` for the attacks ``names`` that read texts (all but ``lira``), one score per text.

    ``readings``: the target model's (``stats=True`` for ``minkpp``); ``lower``: its readings of the
    lower-cased texts; ``reference``: the reference model's readings of the texts."""
    k = check_k(k)
    ll = np.array([mean_ll(r) for r in readings])
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "loss":
            out[name] = ll
        elif name == "zlib":
            out[name] = ll / np.array([zlib_bytes(t) for t in texts], dtype=np.float64)
        elif name == "lowercase":
            out[name] = np.array([mean_ll(lo) / _negative(v) for lo, v in zip(lower, ll)])
        elif name == "mink":
            out[name] = np.array([lowest_mean(np.asarray(r.logp, dtype=np.float64), k) for r in readings])
        elif name == "minkpp":
            out[name] = np.array([lowest_mean(minkpp_z(r), k) for r in readings])
        elif name == "ref":
            out[name] = ll - np.array([mean_ll(r) for r in reference])
        elif name != "lira":
            raise SettingsError(f"unknown attack {name!r}")
    return out
