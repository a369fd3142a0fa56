"""Privacy audit: how much a trained model leaks about canaries, as a membership test and as an epsilon.

Pure functions over two columns - a membership score per canary (higher = more likely a member)
and whether it was really included - so the training driver, the CLI and the app compute the same
numbers from the same ``canaries.csv``:

* :mod:`ssviz.audit.metrics`: ROC, AUC, TPR at low FPR (also used for the loss-based attack).
* :mod:`ssviz.audit.bounds`: the one-run epsilon lower bound of Steinke, Nasr and Jagielski
  (NeurIPS 2023), sound when the guess counts are chosen among several (see ``docs/audit.md``).

:func:`summarize` is the driver's single call: the metric part of the CLI's JSON, keys included.
"""

from __future__ import annotations

from ssviz.audit.bounds import (EpsilonBound, check_level, correct_counts, default_guesses, epsilon_for_counts,
                                epsilon_lower_bound, group_privacy, p_value)
from ssviz.audit.metrics import (DEFAULT_FPRS, AuditError, auc, from_groups, membership_arrays, membership_scores,
                                 roc_curve, tpr_at_fpr)

__all__ = ["AuditError", "DEFAULT_FPRS", "EpsilonBound", "auc", "check_level", "correct_counts", "default_guesses",
           "epsilon_for_counts", "epsilon_lower_bound", "from_groups", "group_privacy", "membership_arrays",
           "membership_scores", "p_value", "roc_curve", "summarize", "tpr_at_fpr"]


def summarize(scores, included, *, delta: float, confidence: float = 0.95, fprs=DEFAULT_FPRS,
              guesses=None) -> dict:
    """The audit's numbers under the CLI's JSON keys: ``canaries``, ``included``, ``auc``, ``tpr_at_fpr``
    (keys ``"0.001"``, ``"0.01"``, ``"0.1"``), ``epsilon_lower``, ``confidence``, ``delta``.

    The driver adds ``epsilon_claimed``, ``mia_auc`` and ``checkpoint``, which need the training run.
    """
    bound = epsilon_lower_bound(scores, included, delta=delta, confidence=confidence, guesses=guesses)
    s, inc = membership_arrays(scores, included)
    return {"canaries": len(s), "included": int(inc.sum()), "auc": auc(s, inc),
            "tpr_at_fpr": {str(f): t for f, t in tpr_at_fpr(s, inc, fprs).items()},
            "epsilon_lower": bound.epsilon, "confidence": bound.confidence, "delta": bound.delta}
