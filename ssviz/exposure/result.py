"""The record every exposure method returns, in a module of its own so that ``ssviz.extraction`` (whose
search is one of the methods) can build it without importing the methods."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class ExposureResult:
    exposure: float
    method: str
    space_size: int
    log_perplexity: float
    rank: int | None = None
    samples: int | None = None
    ks_pvalue: float | None = None
    ci: list[float] | None = None
    skewnorm: dict | None = None
    reference_lps: np.ndarray | None = field(default=None, repr=False)
    histogram: dict | None = field(default=None, repr=False)  # exact: fixed-bin counts (Histogram.to_json)
    shards: dict | None = None  # sharded exact: how the run went (executor, shards, fillers per second)
    fit_ok: bool | None = None  # sampled methods: the fit passed its test and the secret lies among the samples
    warning: str | None = None  # what a reader must know before trusting the number, in plain words
    rank_lower_bound: int | None = None  # a search that stopped early: at least this many are as likely
    estimate: dict | None = None  # the sampled estimate shown beside a certified headline (its to_json)
    plan: dict | None = None  # auto: the method chosen, the estimated cost of exact enumeration, and why

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("reference_lps")
        d["log2_space_size"] = math.log2(self.space_size)
        return d

    def quality(self) -> str:
        """How far the number can be trusted, in one line for people (the CLI, the page and the report)."""
        parts = []
        if self.rank is not None and self.method in ("exact", "search"):
            parts.append(f"certified: rank {self.rank:,} of {self.space_size:,} ({self.method})")
        elif self.rank_lower_bound is not None:
            parts.append(f"certified bound: rank >= {self.rank_lower_bound:,}")
        else:
            parts.append(f"estimated from {self.samples or 0:,} random fillers ({self.method})")
        if self.ci is not None:
            parts.append(f"95% CI {self.ci[0]:.2f}-{self.ci[1]:.2f} bits")
        if self.ks_pvalue is not None and self.method in ("skewnorm", "sampled"):
            parts.append(f"skew-normal KS p = {self.ks_pvalue:.3g}")
        if self.estimate is not None:
            parts.append(f"rejected estimate: {self.estimate['exposure']:.2f} bits ({self.estimate['method']})")
        return "; ".join(parts)

