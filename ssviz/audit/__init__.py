"""Privacy audit: how much a trained model leaks about canaries, as a membership test and as an epsilon.

Pure functions over two columns - a membership score per canary (higher = more likely a member)
and whether it was really included - so the training driver, the CLI and the app compute the same
numbers from the same ``canaries.csv``:

* :mod:`ssviz.audit.metrics`: ROC, AUC, TPR at low FPR (also used for the loss-based attack).
* :mod:`ssviz.audit.bounds`: the one-run epsilon lower bound of Steinke, Nasr and Jagielski
  (NeurIPS 2023), sound when the guess counts are chosen among several (see ``docs/audit.md``),
  and beside it the f-DP one-run bound of Mahloujifar, Melis and Chaudhuri (2024) over the same guesses.
* :mod:`ssviz.audit.canaries`: the canary kinds (random template fillers, new-unit, bigram).

:func:`summarize` is the driver's single call: the metric part of the CLI's JSON, keys included.
"""

from __future__ import annotations

from ssviz.audit.bounds import (EpsilonBound, check_level, correct_counts, default_guesses, epsilon_for_counts,
                                epsilon_lower_bound, fdp_epsilon_for_counts, gaussian_mu, group_privacy, p_value)
from ssviz.audit.metrics import (DEFAULT_FPRS, AuditError, auc, auc_hull, from_groups, membership_arrays,
                                 membership_scores, roc_curve, roc_hull, summary, tpr_at_fpr)

__all__ = ["AuditError", "DEFAULT_FPRS", "EpsilonBound", "auc", "auc_hull", "check_level", "correct_counts",
           "default_guesses", "epsilon_for_counts", "epsilon_lower_bound", "fdp_epsilon_for_counts", "from_groups",
           "gaussian_mu", "group_privacy", "membership_arrays", "membership_scores", "p_value", "roc_curve",
           "roc_hull", "summarize", "summary", "tpr_at_fpr"]


def summarize(scores, included, *, delta: float, confidence: float = 0.95, fprs=DEFAULT_FPRS,
              guesses=None) -> dict:
    """The audit's numbers under the CLI's JSON keys: ``canaries``, ``included``, ``auc``, ``tpr_at_fpr``
    (keys ``"0.001"``, ``"0.01"``, ``"0.1"``), ``epsilon_lower``, ``confidence``, ``delta``; then
    ``epsilon_lower_fdp`` (the f-DP bound on the same guesses, same level), ``auc_ci`` and ``tpr_ci``
    (bootstrap and Clopper-Pearson intervals at ``confidence``, from :func:`summary`), ``auc_hull``
    (the randomized-threshold area) and ``bounds`` (each bound's guess counts and right guesses).

    The driver adds ``epsilon_claimed``, ``mia_auc`` and ``checkpoint``, which need the training run.
    """
    bound = epsilon_lower_bound(scores, included, delta=delta, confidence=confidence, guesses=guesses)
    fdp = epsilon_lower_bound(scores, included, delta=delta, confidence=confidence, guesses=guesses, method="fdp")
    s, inc = membership_arrays(scores, included)
    intervals = summary(s, inc, fprs=fprs, level=bound.confidence)
    return {"canaries": len(s), "included": int(inc.sum()), "auc": auc(s, inc),
            "tpr_at_fpr": {str(f): t for f, t in tpr_at_fpr(s, inc, fprs).items()},
            "epsilon_lower": bound.epsilon, "confidence": bound.confidence, "delta": bound.delta,
            "epsilon_lower_fdp": fdp.epsilon, "auc_ci": intervals["auc_ci"], "tpr_ci": intervals["tpr_ci"],
            "auc_hull": auc_hull(s, inc), "bounds": {b.method: b.to_dict() for b in (bound, fdp)}}
