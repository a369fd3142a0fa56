"""Membership metrics over arrays: ROC, AUC and TPR at low FPR.

A *membership score* is higher for canaries more likely to be members. Every
function here takes ``(scores, included)`` - one score per canary and whether
the canary was really inserted - and is pure, so the audit's driver, the CLI
and the app's page all compute the same numbers from the same two columns.

Ties are handled as a threshold sees them: canaries with equal scores cross any
threshold together, so the ROC has one point per *distinct* score and the AUC
counts a tied (member, non-member) pair as half right (the Mann-Whitney
convention).
"""

from __future__ import annotations

import math

import numpy as np

from ssviz.checks import finite_array
from ssviz.errors import SsvizError

DEFAULT_FPRS = (0.001, 0.01, 0.1)


class AuditError(SsvizError, ValueError):
    """Audit inputs that cannot give a meaningful number (NaN scores, no members, ...)."""


def membership_scores(log_perplexities, space_size: int | None = None) -> np.ndarray:
    """Score = how many bits more likely the model finds a canary than a uniformly random filler.

    ``log2(space_size) - log_perplexity`` (log-perplexity in bits, lower = more likely); without a
    space size just ``-log_perplexity``. Only the order matters to the metrics; the offset makes
    0 mean "as likely as chance".
    """
    lps = _finite("log-perplexities", log_perplexities)
    offset = math.log2(space_size) if space_size else 0.0
    return offset - lps


def _finite(name: str, values) -> np.ndarray:
    return finite_array(name, values, "the model's scores must be finite", error=AuditError, flat=True)


def _labels(included, n: int) -> np.ndarray:
    arr = np.asarray(included)
    if arr.ndim != 1 or len(arr) != n:
        raise AuditError(f"'included' must have one entry per score ({n}), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iuf" and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise AuditError("'included' must be true/false (or 1/0) for every canary")


def membership_arrays(scores, included, *, need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(scores as float64, included as bool)``: the one check every metric and bound runs.

    Refuses NaN or infinite scores, mismatched lengths, labels other than true/false, and (with
    ``need_both``) a set with no member or no non-member, where no rate can be computed.
    """
    s = _finite("membership scores", scores)
    if len(s) == 0:
        raise AuditError("there are no canaries: the scores are empty")
    inc = _labels(included, len(s))
    if need_both:
        n_in = int(inc.sum())
        if n_in == 0 or n_in == len(inc):
            which = "included" if n_in else "excluded"
            raise AuditError(f"all {len(inc)} canaries are {which}: membership metrics need both members and "
                             "non-members")
    return s, inc


def roc_curve(scores, included) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of the rule "member if score >= threshold", one point per distinct score.

    Starts at (0, 0) with threshold +inf and ends at (1, 1); tied scores move together, so a
    tie between a member and a non-member is a diagonal step, never a favourable corner.
    """
    s, inc = membership_arrays(scores, included)
    order = np.argsort(-s, kind="stable")
    s, inc = s[order], inc[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # end of each run of equal scores
    tp = np.cumsum(inc)[last_of_value]
    fp = (last_of_value + 1) - tp
    n_in, n_out = int(inc.sum()), int(len(inc) - inc.sum())
    fpr = np.r_[0.0, fp / n_out]
    tpr = np.r_[0.0, tp / n_in]
    thresholds = np.r_[np.inf, s[last_of_value]]
    return fpr, tpr, thresholds


def auc(scores, included) -> float:
    """Area under the ROC: the probability a random member outscores a random non-member (ties half)."""
    fpr, tpr, _ = roc_curve(scores, included)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def roc_hull(scores, included) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of the ROC's upper convex hull: the rates of an attacker who may randomize
    between two thresholds (a point under a chord between two thresholds is never the best choice)."""
    fpr, tpr, _ = roc_curve(scores, included)
    keep: list[int] = []
    for i in range(len(fpr)):  # monotone chain: the points sorted by fpr, keep right turns only
        while len(keep) >= 2:
            a, b = keep[-2], keep[-1]
            if (fpr[b] - fpr[a]) * (tpr[i] - tpr[a]) - (tpr[b] - tpr[a]) * (fpr[i] - fpr[a]) >= 0:
                keep.pop()  # b lies on or under the chord from a to i
            else:
                break
        keep.append(i)
    return fpr[keep], tpr[keep]


def auc_hull(scores, included) -> float:
    """Area under the ROC's convex hull: the AUC of an attacker allowed to randomize between thresholds.

    At least :func:`auc` (the Mann-Whitney area, what one fixed score ranking achieves); the two
    differ where the ROC has concave stretches. This is the convention of Google's one-run auditing
    library (its reference example: in-scores ``arange(100) + 9.5``, out-scores ``arange(100)``,
    0.595 here against a Mann-Whitney 0.5905).
    """
    f, t = roc_hull(scores, included)
    return float(np.sum(np.diff(f) * (t[1:] + t[:-1]) / 2))


def tpr_at_fpr(scores, included, fprs=DEFAULT_FPRS) -> dict[float, float]:
    """TPR at each FPR budget, conservatively: the best TPR of a threshold whose FPR does not exceed it.

    No interpolation between ROC points (that would credit a randomized threshold the attack did
    not use). With ``n`` non-members an FPR below ``1/n`` is only met with zero false positives,
    so "TPR at 0.1%" over 250 non-members is the TPR at no false positive at all.
    """
    fpr, tpr, _ = roc_curve(scores, included)
    out = {}
    for f in fprs:
        f = float(f)
        if not 0.0 <= f <= 1.0:
            raise AuditError(f"FPR budget {f} is not between 0 and 1")
        # tpr is non-decreasing along the curve, so the last point within budget is the best one
        k = int(np.searchsorted(fpr, f * (1 + 1e-12), side="right")) - 1
        out[f] = float(tpr[k])
    return out


def from_groups(member_scores, nonmember_scores) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, included)`` from two groups, e.g. the loss attack's training lines and held-out lines."""
    a = _finite("member scores", member_scores)
    b = _finite("non-member scores", nonmember_scores)
    return np.r_[a, b], np.r_[np.ones(len(a), bool), np.zeros(len(b), bool)]


def _auc_of_groups(a: np.ndarray, b: np.ndarray) -> float:
    """Mann-Whitney AUC of member scores ``a`` against non-member scores ``b`` (ties half)."""
    from scipy.stats import rankdata
    ranks = rankdata(np.r_[a, b])
    return float((ranks[:len(a)].sum() - len(a) * (len(a) + 1) / 2) / (len(a) * len(b)))


def auc_interval(scores, included, *, level: float = 0.95, boots: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, members and non-members resampled separately (so every
    resample keeps both groups' sizes)."""
    s, inc = membership_arrays(scores, included)
    a, b = s[inc], s[~inc]
    rng = np.random.default_rng(seed)
    values = np.array([_auc_of_groups(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
                       for _ in range(boots)])
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial interval: a TPR measured on few members is a wide range, and says so."""
    from scipy.stats import beta
    if trials <= 0:
        return 0.0, 1.0
    tail = (1 - level) / 2
    lo = 0.0 if successes <= 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    hi = 1.0 if successes >= trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    return lo, hi


def summary(scores, included, *, fprs=DEFAULT_FPRS, level: float = 0.95, boots: int = 1000,
            seed: int = 0) -> dict:
    """The numbers every membership result reports, with their uncertainty: ``auc``, ``auc_ci``,
    ``tpr_at_fpr`` and ``tpr_ci`` (both keyed by the FPR budget as written, e.g. "0.01")."""
    s, inc = membership_arrays(scores, included)
    n_in = int(inc.sum())
    tprs = tpr_at_fpr(s, inc, fprs)
    return {"auc": auc(s, inc), "auc_ci": list(auc_interval(s, inc, level=level, boots=boots, seed=seed)),
            "tpr_at_fpr": {f"{f:g}": t for f, t in tprs.items()},
            "tpr_ci": {f"{f:g}": list(clopper_pearson(round(t * n_in), n_in, level)) for f, t in tprs.items()},
            "members": n_in, "nonmembers": int(len(inc) - n_in)}
