"""The blind baseline: a classifier that never sees the model, trained on the member and non-member
texts alone. If it separates them as well as the attacks do, the two sets differ in distribution (time,
topic, format) and the attacks' numbers measure that shift, not memorization (Das, Zhang and Tramèr 2024;
Duan et al. 2024).

Features: character 1-4-grams within words and word 1-2-grams (tf-idf), plus the text's length in
characters and words (log, standardized); classifier: L2 logistic regression. Every text gets an
out-of-fold score from stratified k-fold cross-validation (seeded), and those scores go through the same
metrics as the attacks (:func:`ssviz.audit.metrics.summary`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ssviz.audit.metrics import summary
from ssviz.errors import SettingsError

FOLDS = 5
SHIFT_RULE = ("the blind baseline's AUC interval reaches the best attack's AUC (its upper end is at least that "
              "AUC)")


def _lengths(texts) -> np.ndarray:
    return np.array([[np.log1p(len(t)), np.log1p(len(t.split()))] for t in texts], dtype=np.float64)


def make_classifier(seed: int = 0):
    """The scikit-learn pipeline: n-gram bags and length features into a logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    features = FeatureUnion([
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, lowercase=False)),
        ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True,
                                  token_pattern=r"(?u)\b\w+\b")),
        ("length", make_pipeline(FunctionTransformer(_lengths), StandardScaler())),
    ])
    return make_pipeline(features, LogisticRegression(C=1.0, solver="liblinear", max_iter=1000, random_state=seed))


def blind_scores(texts: Sequence[str], member, *, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Out-of-fold decision scores (higher = more member-like) of the blind classifier for every text."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(member, dtype=bool)
    smaller = int(min(y.sum(), (~y).sum()))
    if smaller < 2:
        raise SettingsError("the blind baseline needs at least 2 members and 2 non-members")
    cv = StratifiedKFold(n_splits=min(folds, smaller), shuffle=True, random_state=seed)
    return cross_val_predict(make_classifier(seed), np.asarray(list(texts), dtype=object), y.astype(int), cv=cv,
                             method="decision_function")


def blind_baseline(texts: Sequence[str], member, *, folds: int = FOLDS, seed: int = 0) -> dict:
    """The baseline's ``summary`` (``auc``, ``auc_ci``, ``tpr_at_fpr``, ``tpr_ci``, ...) and its out-of-fold
    ``scores``."""
    scores = blind_scores(texts, member, folds=folds, seed=seed)
    res = summary(scores, np.asarray(member, dtype=bool), seed=seed)
    res.update(folds=min(folds, int(min(np.sum(member), len(member) - np.sum(member)))), scores=scores)
    return res


def best_attack(attacks: dict) -> tuple[str | None, float | None]:
    """The attack with the highest AUC (among those with one)."""
    rated = [(name, r["auc"]) for name, r in attacks.items() if r.get("auc") is not None]
    return max(rated, key=lambda x: x[1]) if rated else (None, None)


def shift_warning(blind: dict, attacks: dict) -> bool:
    """True when the blind baseline comes within its confidence interval of the best attack: its AUC
    interval's upper end is at least the best attack's AUC."""
    _, best = best_attack(attacks)
    return best is not None and blind["auc_ci"][1] >= best


def shift_message(blind: dict, attacks: dict) -> str:
    """What the warning says, in plain words (the same sentence on the page, the CLI and the report)."""
    name, best = best_attack(attacks)
    lo, hi = blind["auc_ci"]
    if shift_warning(blind, attacks):
        return (f"Warning: a classifier that never saw the model tells members from non-members by their text alone "
                f"(AUC {blind['auc']:.3f}, 95% interval {lo:.3f}-{hi:.3f}) about as well as the best attack "
                f"({name}, AUC {best:.3f}). The member and non-member sets differ in distribution, so the attack "
                "numbers do not measure memorization.")
    text = (f"The blind baseline (AUC {blind['auc']:.3f}, 95% interval {lo:.3f}-{hi:.3f}) stays below the best "
            f"attack ({name}, AUC {best:.3f}): the attacks see more than the texts alone show.")
    if lo > 0.5:
        text += (" Still, the text alone tells the two sets apart better than chance: they differ in distribution, "
                 "and part of every attack's success may come from that difference rather than memorization.")
    return text
