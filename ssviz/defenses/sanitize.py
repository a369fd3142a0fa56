"""Sanitizing a corpus before training (the paper's section 8.2 and Appendix F).

Two methods:

* :func:`sanitize_regex` - remove every substring matching a known secret
  format (US social security numbers, 16-digit card numbers). It is only as
  good as its list: :data:`MISSED_EXAMPLES` documents formats it lets through,
  among them the demo canary "The secret code is 281546".
* :func:`sanitize_lpd` - the log-perplexity-difference heuristic: split the
  lines in two random halves, train a model on each, score every line with
  both, rank lines by ``|L_F - L_G|`` (a line seen by only one model, such as
  a once-only secret, is far likelier under that model) and drop the top
  fraction. No formal guarantee, and it assumes the secret occurs once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from ssviz.errors import SsvizError

# name -> pattern; digits separated by dashes or spaces as written in mail and forms
PATTERNS: dict[str, str] = {
    "ssn": r"(?<!\d)\d{3}[- ]\d{2}[- ]\d{4}(?!\d)",
    "ccn": r"(?<!\d)(?:\d{4}[- ]?){3}\d{4}(?!\d)",
}
# secrets the default patterns do not catch (tests check they survive sanitization)
MISSED_EXAMPLES = {
    "six-digit code (the demo canary)": "The secret code is 281546",
    "SSN with dots": "my ssn is 078.05.1120",
    "card number in groups of 3": "card 411 111 111 111 1111",
}
LPD_SCORES = ("raw", "per_char")


@dataclass
class SanitizeResult:
    """A cleaned corpus and what was removed from it (JSON-ready via :meth:`to_json`)."""

    method: str
    text: str
    removed: list[dict] = field(default_factory=list)
    lines_total: int = 0
    lines_removed: int = 0
    chars_removed: int = 0
    canary_rank: int | None = None        # LPD: 1-based rank of the canary line (1 = most suspicious)
    canary_removed: bool | None = None
    details: dict = field(default_factory=dict)

    def to_json(self, max_removed: int = 50) -> dict:
        return {"method": self.method, "lines_total": self.lines_total, "lines_removed": self.lines_removed,
                "chars_removed": self.chars_removed, "canary_rank": self.canary_rank,
                "canary_removed": self.canary_removed, "removed": self.removed[:max_removed],
                "removed_shown": min(len(self.removed), max_removed), **self.details}


def sanitize_regex(text: str, patterns: dict[str, str] | None = None, canary_line: str | None = None
                   ) -> SanitizeResult:
    """Delete every match of ``patterns`` (default :data:`PATTERNS`); lines themselves are kept."""
    patterns = PATTERNS if patterns is None else patterns
    try:
        compiled = {name: re.compile(p) for name, p in patterns.items()}
    except re.error as e:
        raise SsvizError(f"bad sanitization pattern: {e}") from None
    lines = text.split("\n")
    removed, touched, chars = [], set(), 0
    for i, line in enumerate(lines):
        for name, rx in compiled.items():
            for m in rx.finditer(line):
                removed.append({"line": i + 1, "kind": name, "match": m.group(0)})
                chars += len(m.group(0))
                touched.add(i)
            line = rx.sub("", line)
        lines[i] = line
    clean = "\n".join(lines)
    result = SanitizeResult("regex", clean, removed, len(lines), 0, chars,
                            details={"lines_changed": len(touched), "patterns": dict(patterns)})
    if canary_line is not None:
        result.canary_removed = canary_line not in clean
    return result


def split_halves(lines: list[str], seed: int) -> np.ndarray:
    """A seeded random assignment of each line to half 0 or half 1 (sizes differ by at most one)."""
    side = np.arange(len(lines)) % 2
    np.random.default_rng(seed).shuffle(side)
    return side


def lpd_scores(text: str, config=None, *, seed: int = 0, score: str = "raw", on_batch=None, stop=None
               ) -> tuple[list[str], np.ndarray, dict]:
    """Lines of ``text`` and their log-perplexity differences ``|L_F - L_G|`` (bits; per char if asked).

    F and G are trained with ``config`` (a :class:`ssviz.train.TrainConfig`) on
    the two halves; both share the full corpus' vocabulary (a transformer: one
    tokenizer trained on the whole text), so every line scores and both models
    read it as the same tokens.
    """
    from ssviz.train import Split, TrainConfig, new_model, train

    if score not in LPD_SCORES:
        raise SsvizError(f"unknown LPD score {score!r}: expected one of {LPD_SCORES}")
    config = replace(config or TrainConfig(), quantize=None)
    lines = text.split("\n")
    idx = [i for i, line in enumerate(lines) if len(line) >= 2]
    if len(idx) < 20:
        raise SsvizError(f"LPD sanitization needs at least 20 non-empty lines, got {len(idx)}")
    side = split_halves([lines[i] for i in idx], seed)
    shared = new_model(config, Split(text, "", ""))  # the vocabulary or tokenizer of the whole text
    models, info = [], {}
    for half in (0, 1):
        part = "\n".join(lines[i] for i, s in zip(idx, side) if s == half)
        half_config = replace(config, seed=config.seed + half)  # seeded: the ranking is reproducible
        res = train(part, half_config, model=new_model(half_config, part, like=shared), on_batch=on_batch,
                    stop=stop)
        if res.stopped:
            from ssviz.errors import StoppedError
            raise StoppedError("LPD sanitization stopped while training its half models")
        models.append(res.model)
        info[f"test_loss_{'FG'[half]}"] = res.test_loss
    candidates = [lines[i] for i in idx]
    if shared.max_positions:  # bounded positions: a long line is read in training windows
        lf, lg = (windowed_token_bits(m, candidates, config.seq_len) for m in models)
    else:
        from ssviz.scoring import score_texts
        lf, lg = (score_texts(m, candidates, batch_size=256) for m in models)
    diff = np.abs(lf - lg)
    if score == "per_char":
        diff = diff / np.array([len(c) - 1 for c in candidates], dtype=np.float64)
    full = np.full(len(lines), -np.inf)  # unscored (empty) lines never get dropped
    full[idx] = diff
    return lines, full, info


def windowed_token_bits(model, texts: list[str], window: int, batch_size: int = 256) -> np.ndarray:
    """Log-perplexity (bits) of each text under a transformer, read in windows as it was trained.

    A line can be longer than a transformer's context (or than the windows its positions were
    trained on), so each text's tokens (the scoring semantics': ``tokenizer(text)["input_ids"]``)
    are read in pieces of ``window`` predicted tokens, each piece starting from the token before
    it as context. A text of at most ``window + 1`` tokens is scored exactly as
    :func:`ssviz.scoring.score_texts` scores it.
    """
    import torch

    from ssviz.models.base import check_finite
    pieces: dict[int, list[tuple[int, list[int]]]] = {}
    for i, row in enumerate(model.encode_batch(texts)):
        for lo in range(0, len(row) - 1, window):
            piece = row[lo:lo + window + 1]
            pieces.setdefault(len(piece), []).append((i, piece))
    out = np.zeros(len(texts))
    with torch.inference_mode():
        for group in pieces.values():
            for lo in range(0, len(group), batch_size):
                part = group[lo:lo + batch_size]
                ids = torch.tensor([p for _, p in part], device=model.device)
                lp = check_finite(torch.log_softmax(model.logits(ids).float(), dim=-1), model)
                bits = -lp[:, :-1].gather(2, ids[:, 1:, None])[..., 0].double().sum(1).cpu().numpy() / np.log(2)
                np.add.at(out, [i for i, _ in part], bits)
    return out


def sanitize_lpd(text: str, top_fraction: float = 0.1, config=None, *, seed: int = 0, score: str = "raw",
                 canary_line: str | None = None, on_batch=None, stop=None) -> SanitizeResult:
    """Drop the ``top_fraction`` of lines with the largest log-perplexity difference (Appendix F)."""
    if not 0 < top_fraction < 1:
        raise SsvizError("top fraction must be in (0, 1)")
    lines, diff, info = lpd_scores(text, config, seed=seed, score=score, on_batch=on_batch, stop=stop)
    scored = np.flatnonzero(np.isfinite(diff))
    order = scored[np.argsort(-diff[scored], kind="stable")]
    n_drop = max(1, int(round(top_fraction * len(order))))
    drop = set(order[:n_drop].tolist())
    removed = [{"line": int(i) + 1, "rank": r + 1, "lpd": float(diff[i]), "text": lines[i][:120]}
               for r, i in enumerate(order[:n_drop])]
    clean = "\n".join(line for i, line in enumerate(lines) if i not in drop)
    result = SanitizeResult("lpd", clean, removed, len(lines), n_drop, sum(len(lines[i]) for i in drop),
                            details={"top_fraction": top_fraction, "score": score, "lines_scored": len(order),
                                     **info})
    if canary_line is not None:
        ranks = [r + 1 for r, i in enumerate(order) if lines[i] == canary_line]
        if ranks:
            result.canary_rank = ranks[0]
            result.details["canary_percentile"] = 100.0 * ranks[0] / len(order)
        result.details["canary_copies"] = len(ranks)
        result.details["canary_copies_removed"] = sum(r <= n_drop for r in ranks)
        result.canary_removed = canary_line not in clean.split("\n")
    return result


def sanitize(text: str, method: str, **options) -> SanitizeResult:
    """Dispatch on ``method`` ("regex" or "lpd")."""
    if method == "regex":
        return sanitize_regex(text, options.get("patterns"), options.get("canary_line"))
    if method == "lpd":
        return sanitize_lpd(text, **options)
    raise SsvizError(f"unknown sanitization method {method!r}: expected 'regex' or 'lpd'")
