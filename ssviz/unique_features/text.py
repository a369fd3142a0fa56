"""Unique features in language models: does the model react to a string (a name, an ID) it saw once?

The images' M2 carried over to any model ssviz loads, written once over the
``LanguageModel`` interface (:func:`ssviz.scoring.read_texts` with ``last=True``):

* An out-of-distribution context c_i (a text from outside the training data) is cut at a word
  boundary near its middle into ``head`` and ``tail``; the feature is inserted there as a word:
  ``head + feature + " " + tail``.
* The compared distributions are the next-unit distributions at the start of each of the next
  ``next_units`` words of ``tail`` (teacher-forced along the context's own continuation): after
  ``head + w_1 .. w_j`` and after ``head + feature + " " + w_1 .. w_j`` for j = 0 .. k-1. The
  per-input KL is the mean over those k positions.
* M2 = mean_i KL(with nothing || with the feature) - mean_i KL(with nothing || with r_i), r_i a
  fresh random string of the feature's shape (same length; upper case, lower case and digits
  replaced within their class, every other character kept) for each input. Controls are such
  strings too, never in the training corpus when one is given, and give the reference histogram.
"""

from __future__ import annotations

import string
import time

import numpy as np

from ssviz.errors import SettingsError, SsvizError
from ssviz.progress import check_stop
from ssviz.unique_features import score

CLASSES = (string.ascii_uppercase, string.ascii_lowercase, string.digits)
MIN_WORDS = 6          # a context needs words on both sides of the cut
MAX_FEATURE_CHARS = 200
MAX_CONTEXT_CHARS = 2_000


def split_context(text: str) -> tuple[str, list[str]] | None:
    """``(head, tail words)``: ``head`` ends with the space at the word boundary nearest the middle."""
    words = text.split()
    if len(words) < MIN_WORDS:
        return None
    cut = len(words) // 2
    return " ".join(words[:cut]) + " ", words[cut:]


def read_contexts(text: str, limit: int = 200) -> list[str]:
    """Contexts from a text: its lines with at least :data:`MIN_WORDS` words (clipped), at most ``limit``."""
    out = []
    for line in text.split("\n"):
        line = " ".join(line.split())[:MAX_CONTEXT_CHARS]
        if len(line.split()) >= MIN_WORDS:
            out.append(line)
        if len(out) >= limit:
            break
    return out


def shipped_contexts(limit: int = 200) -> tuple[list[str], str]:
    """Contexts from ssviz's shipped prose: the held-out test part of the demo corpus (never trained on by a
    model ssviz trains on it), and the corpus itself (controls must not occur in it)."""
    from ssviz.corpus import split_text
    from ssviz.demo import demo_corpus
    text = demo_corpus()
    return read_contexts(split_text(text, 0.1).test, limit), text


def feature_classes(feature: str, usable) -> list[str | None]:
    """Per character of ``feature``: the characters a random string may put there (None: kept as it is)."""
    out = []
    for ch in feature:
        cls = next((c for c in CLASSES if ch in c), None)
        out.append(None if cls is None else "".join(c for c in cls if usable(c)) or None)
    return out


def random_like(classes: list[str | None], feature: str, rng: np.random.Generator) -> str:
    return "".join(ch if cls is None else cls[int(rng.integers(len(cls)))] for ch, cls in zip(feature, classes))


def _usable(model):
    """Whether the model can read a character (a character model reads only its vocabulary)."""
    cache: dict[str, bool] = {}

    def ok(ch: str) -> bool:
        if ch not in cache:
            try:
                cache[ch] = len(model.encode("a" + ch + "a")) > 0
            except SsvizError:
                cache[ch] = False
        return cache[ch]
    return ok


def _readable(model, text: str) -> bool:
    try:
        model.encode(text)
        return True
    except SsvizError:
        return False


def draw_controls(feature: str, n: int, classes, rng: np.random.Generator, corpus: str | None = None) -> list[str]:
    """``n`` distinct random strings of the feature's shape, none the feature and none in ``corpus``."""
    seen, out, tries = {feature}, [], 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n + 1000:
            raise SettingsError(f"cannot draw {n} distinct controls of the shape of {feature[:40]!r}: give a longer "
                                "feature or fewer controls")
        c = random_like(classes, feature, rng)
        if c in seen or (corpus is not None and c in corpus):
            continue
        seen.add(c)
        out.append(c)
    return out


def _positions(head: str, tail: list[str], k: int, inserted: str = "") -> list[str]:
    """The k texts after which the next-unit distribution is read: ``head [inserted ]w_1 .. w_j`` (j < k)."""
    pre = head + (inserted + " " if inserted else "")
    return [pre + "".join(w + " " for w in tail[:j]) for j in range(min(k, len(tail)))]


def text_scores(model, feature: str, contexts: list[str], *, controls: int = 50, seed: int = 0, next_units: int = 4,
                corpus: str | None = None, batch_size: int = 256, progress=None, stop=None) -> dict:
    """The text M2 of ``feature`` and of ``controls`` control strings over ``contexts`` (see the module doc).

    Returns ``seed``, ``m2``, ``m2_ci``, ``controls`` (their M2), ``rank``, ``control_p_value``, ``rows``
    (``seed``, ``feature``, ``input``, ``kl_feature``, ``kl_random``), ``control_strings`` and settings."""
    from ssviz.scoring import read_texts

    if not feature or len(feature) > MAX_FEATURE_CHARS or feature != feature.strip() or "\n" in feature:
        raise SettingsError(f"the feature must be 1 to {MAX_FEATURE_CHARS} characters on one line without "
                            "surrounding spaces")
    if not isinstance(controls, int) or not 2 <= controls <= 10_000:
        raise SettingsError(f"controls must be a whole number from 2 to 10,000, got {controls!r}")
    if not isinstance(next_units, int) or not 1 <= next_units <= 32:
        raise SettingsError(f"next units must be a whole number from 1 to 32, got {next_units!r}")
    usable = _usable(model)
    missing = [ch for ch in feature if not usable(ch)]
    if missing:
        raise SettingsError(f"the model cannot read the feature's character(s) {''.join(dict.fromkeys(missing))!r}")
    readable = [c for c in contexts if _readable(model, c)]  # a character model reads only its vocabulary
    splits = [s for s in (split_context(c) for c in readable) if s is not None]
    if len(splits) < 2:
        raise SettingsError(f"at least 2 contexts of {MIN_WORDS} or more words that the model can read are needed, "
                            f"got {len(splits)} of {len(contexts)}")
    classes = feature_classes(feature, usable)
    if all(c is None for c in classes):
        raise SettingsError("the feature has no letters or digits: no random string of its shape differs from it")
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 0x7E47])
    ctl = draw_controls(feature, controls, classes, rng, corpus)
    # every text whose next-unit distribution is needed, read once: index by text
    texts: dict[str, int] = {}

    def want(t: str) -> int:
        return texts.setdefault(t, len(texts))

    base = [[want(t) for t in _positions(h, w, next_units)] for h, w in splits]
    plan = []  # (name, [per input: (feature text ids, random text ids)])
    for name, f in [("uf", feature)] + [(f"control-{i}", c) for i, c in enumerate(ctl)]:
        per = []
        for h, w in splits:
            r = random_like(classes, feature, rng)
            per.append(([want(t) for t in _positions(h, w, next_units, f)],
                        [want(t) for t in _positions(h, w, next_units, r)]))
        plan.append((name, per))
    check_stop(stop)
    order = list(texts)
    readings = read_texts(model, order, last=True, batch_size=batch_size, progress=progress, stop=stop)
    dist = np.stack([r.last for r in readings])  # [texts, units]
    rows, m2s = [], {}
    uf_kl = None
    for name, per in plan:
        kf = np.array([score.kl_rows(dist[b], dist[f]).mean() for b, (f, _) in zip(base, per)])
        kr = np.array([score.kl_rows(dist[b], dist[r]).mean() for b, (_, r) in zip(base, per)])
        m2s[name] = score.m2(kf, kr)
        rows += [{"seed": seed, "feature": name, "input": i, "kl_feature": float(a), "kl_random": float(b)}
                 for i, (a, b) in enumerate(zip(kf, kr))]
        if name == "uf":
            uf_kl = (kf, kr)
    others = [m2s[f"control-{i}"] for i in range(len(ctl))]
    lo, hi = score.bootstrap_m2(*uf_kl, seed=seed)
    return {"seed": seed, "m2": m2s["uf"], "controls": others, "rank": score.rank(m2s["uf"], others),
            "m2_ci": [lo, hi], "control_p_value": score.control_p_value(m2s["uf"], others),
            "control_strings": ctl, "contexts": len(splits), "contexts_unreadable": len(contexts) - len(readable), "next_units": next_units, "texts_read": len(order),
            "seconds": time.perf_counter() - t0, "rows": rows}
