"""Online LiRA over a counterfactual pool (Carlini et al. 2022, "Membership inference attacks from first
principles"): many models trained on random halves of a set of examples tell, for each example, how its
log-likelihood is distributed when the example was IN the training set and when it was OUT. The target's
score for a text is the log likelihood ratio of its own log-likelihood under the two Gaussians.

The pool (written by the counterfactual study) is a folder with ``inclusion.parquet`` (``model``,
``example``, ``included``), ``metrics.parquet`` (``model``, ``example``, ``split`` train|validation,
``accuracy``, ``log_likelihood`` = mean natural-log probability of the example's predicted units, the
attacks' ll) and ``memorization.csv`` (``example``, ``text``, ...). Texts are matched to the pool's train
examples by exact text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ssviz.errors import MissingFileError, SsvizError

MIN_STD = 1e-4  # nats: a Gaussian no narrower than this (all pool models agreeing exactly)


class PoolError(SsvizError, ValueError):
    """A counterfactual pool folder that cannot be read."""


@dataclass
class Pool:
    """Per pool text: the log-likelihoods the pool's models gave it when it was IN and OUT of training."""
    ins: dict[str, np.ndarray]
    outs: dict[str, np.ndarray]
    models: int

    def __contains__(self, text: str) -> bool:
        return text in self.ins and text in self.outs


def read_pool(folder) -> Pool:
    """Read a pool folder (see the module's docstring); every file and column is checked."""
    import pandas as pd

    folder = Path(folder)
    need = {"inclusion.parquet": ("model", "example", "included"),
            "metrics.parquet": ("model", "example", "split", "log_likelihood"),
            "memorization.csv": ("example", "text")}
    frames = {}
    for name, cols in need.items():
        path = folder / name
        if not path.is_file():
            raise MissingFileError(f"the pool {folder} has no {name}")
        try:
            df = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path, keep_default_na=False)
        except Exception as e:
            raise PoolError(f"cannot read {path}: {type(e).__name__}: {e}") from None
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise PoolError(f"{path} lacks the column(s) {', '.join(missing)}")
        frames[name] = df
    metrics = frames["metrics.parquet"]
    metrics = metrics[metrics["split"].astype(str) == "train"][["model", "example", "log_likelihood"]]
    joined = metrics.merge(frames["inclusion.parquet"][["model", "example", "included"]], on=["model", "example"])
    texts = frames["memorization.csv"][["example", "text"]].drop_duplicates("example")
    joined = joined.merge(texts, on="example")
    ll = pd.to_numeric(joined["log_likelihood"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(ll).all():
        raise PoolError(f"{folder / 'metrics.parquet'} has log_likelihood values that are not finite numbers")
    joined = joined.assign(log_likelihood=ll, included=joined["included"].astype(bool), text=joined["text"].astype(str))
    ins, outs = {}, {}
    for (text, inc), part in joined.groupby(["text", "included"]):
        (ins if inc else outs)[text] = part["log_likelihood"].to_numpy()
    return Pool(ins, outs, int(joined["model"].nunique()))


def _gauss_logpdf(x: float, mean: float, std: float) -> float:
    return float(-0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi))


def lira_scores(pool: Pool, texts: Sequence[str], target_ll: Sequence[float]) -> np.ndarray:
    """Online LiRA score per text, NaN for a text the pool does not hold IN and OUT at least once.

    Per text: Gaussians fitted to its IN and OUT log-likelihoods over the pool's models; score =
    log N(ll; IN) - log N(ll; OUT) (higher = more likely a member). Where one side has a single model,
    its spread is the pooled spread of that side over all texts (Carlini et al.'s fixed variance)."""
    def pooled(side: dict) -> float:
        dev = [v - v.mean() for v in side.values() if len(v) > 1]
        return float(np.sqrt(np.mean(np.concatenate(dev) ** 2))) if dev else 1.0

    spread_in, spread_out = max(pooled(pool.ins), MIN_STD), max(pooled(pool.outs), MIN_STD)
    out = np.full(len(texts), np.nan)
    for i, (text, ll) in enumerate(zip(texts, target_ll)):
        if text not in pool:
            continue
        a, b = pool.ins[text], pool.outs[text]
        sa = max(float(a.std(ddof=1)), MIN_STD) if len(a) > 1 else spread_in
        sb = max(float(b.std(ddof=1)), MIN_STD) if len(b) > 1 else spread_out
        out[i] = _gauss_logpdf(ll, float(a.mean()), sa) - _gauss_logpdf(ll, float(b.mean()), sb)
    return out
