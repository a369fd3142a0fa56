"""Verbatim and probabilistic extraction of training lines: does the model complete a line from its prefix?

For every distinct line of a corpus long enough (at least ``prefix + suffix`` units, counted as
``model.encode`` reads the line, a BOS included where the tokenizer adds one), the model is prompted
with the line's first ``prefix`` units and decodes ``suffix`` units greedily (the argmax at each step,
as ``transformers``' ``generate(do_sample=False)`` does), batched over the model's state:

* **k-extractable** (Carlini et al. 2022): the greedy continuation equals the true suffix exactly;
* **memorization score** (Biderman et al. 2023): the fraction of the ``suffix`` positions where the
  greedy continuation holds the true unit;
* **(n, p)-extraction** (Hayes et al. 2024): ``p_z``, the probability the model gives the true suffix
  (teacher-forced along it, read in the same pass as the greedy prompt), and the chance that ``n``
  samples from the model contain it, ``1 - (1 - p_z)^n``.

Rates grouped by how many identical copies of a line the corpus holds, and across prefix lengths,
give the log-linear laws of Carlini et al. (2022) for the user's own model (:func:`fit_log_linear`).
A line that occurs many times is tested once (its first line number): every copy gives the same answer.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ssviz.errors import SettingsError, SsvizError, VocabularyError
from ssviz.models.base import LanguageModel, check_finite
from ssviz.progress import Progress, StopFlag
from ssviz.scoring import batches_by_length

SAMPLES = (1, 10, 100, 1000)  # n of the (n, p)-extraction probabilities reported
NP_LEVELS = (0.1, 0.5, 0.9)  # p of the (n, p)-extractable rates reported
DEFAULT_PREFIX = 32  # Biderman et al.'s 32 + 32 tokens
DEFAULT_SUFFIX = 32
DEFAULT_BATCH = 128
COLUMNS = ("line", "duplicates", "extractable", "match_fraction", "log_p_suffix")


@dataclass
class Decoded:
    """Greedy continuations of prompts (``tokens [N, steps]``) and, when targets were given, the natural-log
    probability of each target unit given the prompt and the target units before it (``target_logp``)."""

    tokens: np.ndarray
    target_logp: np.ndarray | None = None


def greedy_decode(model: LanguageModel, prompts: Sequence[Sequence[int]], steps: int, *,
                  targets: Sequence[Sequence[int]] | None = None, batch_size: int = DEFAULT_BATCH,
                  progress: Progress | None = None, stop: StopFlag | None = None) -> Decoded:
    """Decode ``steps`` units greedily after each prompt, with the model's state (its KV cache) carried along.

    Prompts are grouped by length, so no row is padded and every row reads exactly its prompt (what
    ``generate`` reads for an unpadded prompt). Each prompt is read once: its final distribution gives
    the first greedy unit, and its state feeds both the greedy steps and, with ``targets`` (``steps``
    units per prompt), one fused teacher-forced read of the target, whose log-probabilities are taken in
    float32 as :func:`ssviz.scoring.read_ids` takes them. Ties go to the lowest id (``torch.argmax``).
    """
    n = len(prompts)
    if steps < 1:
        raise SettingsError(f"decode at least one unit (asked for {steps})")
    if any(len(p) < 1 for p in prompts):
        raise SettingsError("every prompt needs at least one unit (the first unit is context)")
    if targets is not None and (len(targets) != n or any(len(t) != steps for t in targets)):
        raise ValueError(f"targets must be {n} rows of {steps} units")  # a caller's bug
    tokens = np.zeros((n, steps), dtype=np.int64)
    target_logp = np.zeros((n, steps), dtype=np.float64) if targets is not None else None
    done = 0
    with torch.inference_mode():
        for length, part in batches_by_length(prompts, lambda _: batch_size, stop):
            prompt = torch.tensor([list(prompts[i]) for i in part], dtype=torch.long).reshape(len(part), length)
            lp, state = model.run(prompt, model.initial_state(len(part)))
            check_finite(lp, model)
            first = lp[:, -1].float()
            if targets is not None:
                target = torch.tensor([list(targets[i]) for i in part], dtype=torch.long)
                pred = first[:, None]
                if steps > 1:  # on its own copy of the rows: the greedy steps below go on from ``state``
                    tf, _ = model.run(target[:, :-1], model.select_state(state, torch.arange(len(part))))
                    check_finite(tf, model)
                    pred = torch.cat([pred, tf.float()], dim=1)
                target_logp[part] = pred.gather(2, target[:, :, None].to(pred.device))[..., 0].double().cpu().numpy()
            tok = first.argmax(-1)
            out, best = [tok], []
            for _ in range(steps - 1):
                lp, state = model.step(tok, state)
                lp = lp.float()
                tok = lp.argmax(-1)
                best.append(lp.gather(1, tok[:, None]))  # NaN wins argmax: a broken row shows here
                out.append(tok)
            if best:  # one check per batch, not a pass over the vocabulary per step
                check_finite(torch.cat(best, dim=1), model)
            tokens[part] = torch.stack(out, dim=1).cpu().numpy()
            done += len(part)
            if progress:
                progress(done, n)
    return Decoded(tokens, target_logp)


def extraction_probability(log_p, n) -> np.ndarray:
    """``1 - (1 - p)^n`` with ``p = exp(log_p)``: the chance that ``n`` independent samples contain the text.

    Computed as ``-expm1(n * log1p(-p))``, exact for tiny ``p`` (where ``(1 - p)^n`` rounds to 1) and at ``p = 1``."""
    p = np.exp(np.asarray(log_p, dtype=np.float64))
    with np.errstate(divide="ignore"):
        return -np.expm1(np.asarray(n, dtype=np.float64) * np.log1p(-np.minimum(p, 1.0)))


def fit_log_linear(x, rate, weights=None) -> dict | None:
    """Least-squares line ``rate = intercept + slope * log10(x)`` (weighted by ``weights``, e.g. texts per point).

    Carlini et al. (2022) find the extractable fraction log-linear in the number of duplicates and in
    the prefix length; ``slope`` is the gain per tenfold increase. None with fewer than two distinct x."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(rate, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = (x > 0) & np.isfinite(y) & (w > 0)
    x, y, w = np.log10(x[ok]), y[ok], w[ok]
    if len(np.unique(x)) < 2:
        return None
    mx, my = np.average(x, weights=w), np.average(y, weights=w)
    sxx = float(np.sum(w * (x - mx) ** 2))
    slope = float(np.sum(w * (x - mx) * (y - my)) / sxx)
    intercept = float(my - slope * mx)
    total = float(np.sum(w * (y - my) ** 2))
    resid = float(np.sum(w * (y - intercept - slope * x) ** 2))
    return {"slope": slope, "intercept": intercept, "r2": 1.0 - resid / total if total > 0 else 1.0,
            "points": int(len(x))}


def _rate_record(extractable: np.ndarray, match: np.ndarray, log_p: np.ndarray) -> dict:
    """Rates of one group of tested texts, with a 95% Clopper-Pearson interval on the extractable rate."""
    from ssviz.audit.metrics import clopper_pearson
    k, n = int(extractable.sum()), int(len(extractable))
    lo, hi = clopper_pearson(k, n) if n else (math.nan, math.nan)
    probs = {str(s): extraction_probability(log_p, s) for s in SAMPLES}
    return {"texts": n, "extractable": k, "rate": k / n if n else math.nan, "rate_low": lo, "rate_high": hi,
            "mean_match_fraction": float(match.mean()) if n else math.nan,
            "median_log_p_suffix": float(np.median(log_p)) if n else math.nan,
            "extraction_probability": {s: float(v.mean()) if n else math.nan for s, v in probs.items()},
            "np_extractable": {f"{p:g}": {s: float((v >= p).mean()) if n else math.nan for s, v in probs.items()}
                               for p in NP_LEVELS}}


@dataclass
class Texts:
    """The distinct lines of a corpus as the model reads them: what every verbatim test draws from."""

    lines: int  # lines in the corpus
    line: np.ndarray  # first line number of each distinct text
    duplicates: np.ndarray  # lines of the corpus identical to it
    ids: list  # its units (None: the model cannot encode it)

    @property
    def unencodable(self) -> int:
        return sum(i is None for i in self.ids)


def corpus_texts(model: LanguageModel, text: str) -> Texts:
    """Distinct lines of ``text`` (split at ``\\n``), their duplicate counts and their units under ``model``.

    A line with a character the model cannot represent is kept with ids None (counted, never tested)
    rather than failing the whole corpus."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it starts none
    counts = Counter(lines)
    first: dict[str, int] = {}
    for i, line in enumerate(lines):
        first.setdefault(line, i)
    distinct = list(first)
    try:
        ids = [list(r) for r in model.encode_batch(distinct)]
    except VocabularyError:
        ids = []
        for line in distinct:
            try:
                ids.append(list(model.encode(line)))
            except VocabularyError:
                ids.append(None)
    return Texts(len(lines), np.array([first[t] for t in distinct], dtype=np.int64),
                 np.array([counts[t] for t in distinct], dtype=np.int64), ids)


def _check_lengths(model: LanguageModel, prefix: int, suffix: int) -> None:
    if prefix < 1 or suffix < 1:
        raise SettingsError(f"prefix and suffix must be at least 1 unit (got {prefix} and {suffix})")
    limit = getattr(model, "max_positions", None)
    if limit and prefix + suffix > limit:
        raise SettingsError(f"prefix + suffix = {prefix + suffix} units is longer than the model's context "
                            f"({limit} positions)")


def _select(texts: Texts, need: int, max_per_count: int | None, seed: int) -> tuple[np.ndarray, int, int]:
    """Indices of the distinct texts to test (long enough; at most ``max_per_count`` per duplicate count, a
    seeded random choice), how many were too short, and how many the cap left out."""
    long_enough = np.array([r is not None and len(r) >= need for r in texts.ids], dtype=bool)
    short = int(sum(r is not None and len(r) < need for r in texts.ids))
    chosen = np.flatnonzero(long_enough)
    left_out = 0
    if max_per_count is not None:
        rng = np.random.default_rng(seed)
        keep = []
        for d in np.unique(texts.duplicates[chosen]):
            group = chosen[texts.duplicates[chosen] == d]
            if len(group) > max_per_count:
                left_out += len(group) - max_per_count
                group = np.sort(rng.choice(group, size=max_per_count, replace=False))
            keep.append(group)
        chosen = np.sort(np.concatenate(keep)) if keep else chosen
    return chosen, short, left_out


@dataclass
class VerbatimResult:
    """One row per tested line (the columns of ``verbatim.csv``) and how the lines were chosen."""

    prefix: int
    suffix: int
    line: np.ndarray
    duplicates: np.ndarray
    extractable: np.ndarray
    match_fraction: np.ndarray
    log_p_suffix: np.ndarray
    lines: int = 0  # lines in the corpus
    distinct: int = 0  # distinct lines
    short: int = 0  # distinct lines shorter than prefix + suffix units: not tested
    unencodable: int = 0  # distinct lines the model cannot read: not tested
    left_out: int = 0  # long enough, left out by max_per_count
    seconds: float = 0.0
    by_prefix: list = field(default_factory=list)  # rates at other prefix lengths (prefix_sweep)

    @property
    def tested(self) -> int:
        return int(len(self.line))

    def frame(self):
        """The rows as a DataFrame with exactly the columns of ``verbatim.csv``."""
        import pandas as pd
        return pd.DataFrame({"line": self.line, "duplicates": self.duplicates, "extractable": self.extractable,
                             "match_fraction": self.match_fraction, "log_p_suffix": self.log_p_suffix},
                            columns=list(COLUMNS))

    def by_duplicates(self) -> list[dict]:
        """Rates per duplicate count, ascending."""
        return [{"duplicates": int(d), **_rate_record(self.extractable[m], self.match_fraction[m],
                                                       self.log_p_suffix[m])}
                for d in np.unique(self.duplicates) for m in [self.duplicates == d]]

    def to_json(self) -> dict:
        groups = self.by_duplicates()
        overall = _rate_record(self.extractable, self.match_fraction, self.log_p_suffix)
        out = {"prefix": self.prefix, "suffix": self.suffix, "lines": self.lines, "distinct": self.distinct,
               "tested": self.tested, "short": self.short, "unencodable": self.unencodable,
               "left_out": self.left_out, "seconds": self.seconds,
               "extractable_rate": overall["rate"], "overall": overall,
               "rates_by_duplicates": {str(g["duplicates"]): g["rate"] for g in groups},
               "by_duplicates": groups,
               "duplicates_law": fit_log_linear([g["duplicates"] for g in groups], [g["rate"] for g in groups],
                                                [g["texts"] for g in groups])}
        if self.by_prefix:
            out["by_prefix"] = self.by_prefix
            out["prefix_law"] = fit_log_linear([r["prefix"] for r in self.by_prefix],
                                               [r["rate"] for r in self.by_prefix],
                                               [r["texts"] for r in self.by_prefix])
        return out


def _test(model, texts: Texts, chosen: np.ndarray, prefix: int, suffix: int, batch_size: int,
          progress, stop) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``extractable``, ``match_fraction`` and ``log_p_suffix`` of the chosen texts at one prefix length."""
    rows = [texts.ids[i] for i in chosen]
    dec = greedy_decode(model, [r[:prefix] for r in rows], suffix, targets=[r[prefix:prefix + suffix] for r in rows],
                        batch_size=batch_size, progress=progress, stop=stop)
    truth = np.array([r[prefix:prefix + suffix] for r in rows], dtype=np.int64).reshape(len(rows), suffix)
    match = dec.tokens == truth
    return match.all(axis=1), match.mean(axis=1), dec.target_logp.sum(axis=1)


def verbatim(model: LanguageModel, text: str, *, prefix: int = DEFAULT_PREFIX, suffix: int = DEFAULT_SUFFIX,
             prefixes: Sequence[int] = (), max_per_count: int | None = None, seed: int = 0,
             batch_size: int = DEFAULT_BATCH, progress: Progress | None = None,
             stop: StopFlag | None = None) -> VerbatimResult:
    """Test every distinct line of ``text`` long enough for ``prefix + suffix`` units (see the module doc).

    ``prefixes`` adds the rate at each of these prefix lengths (:func:`prefix_sweep`, on the lines long
    enough for the longest, so every length is measured on the same lines); ``max_per_count`` tests at
    most that many lines per duplicate count (a seeded random choice), as Carlini et al. sample equally
    from each count."""
    _check_lengths(model, prefix, suffix)
    if max_per_count is not None and max_per_count < 1:
        raise SettingsError(f"max_per_count must be at least 1 (got {max_per_count})")
    t0 = time.perf_counter()
    texts = corpus_texts(model, text)
    chosen, short, left_out = _select(texts, prefix + suffix, max_per_count, seed)
    sweep = sorted(set(int(k) for k in prefixes))
    sweep_texts = 0
    if sweep:
        _check_lengths(model, max(sweep), suffix)
        sweep_texts = len(_select(texts, max(sweep) + suffix, max_per_count, seed)[0])
    total = len(chosen) + sweep_texts * len(sweep)

    def shifted(offset):
        return (lambda done, _n: progress(offset + done, total)) if progress else None

    extractable, match, log_p = _test(model, texts, chosen, prefix, suffix, batch_size, shifted(0), stop)
    result = VerbatimResult(prefix, suffix, texts.line[chosen], texts.duplicates[chosen], extractable, match, log_p,
                            lines=texts.lines, distinct=len(texts.ids), short=short, unencodable=texts.unencodable,
                            left_out=left_out)
    if sweep:
        result.by_prefix = prefix_sweep(model, texts, sweep, suffix, max_per_count=max_per_count, seed=seed,
                                        batch_size=batch_size, progress=shifted(len(chosen)), stop=stop)
    result.seconds = time.perf_counter() - t0
    return result


def prefix_sweep(model: LanguageModel, texts: Texts | str, prefixes: Sequence[int], suffix: int = DEFAULT_SUFFIX, *,
                 max_per_count: int | None = None, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                 progress: Progress | None = None, stop: StopFlag | None = None) -> list[dict]:
    """The extractable rate at each prefix length, on the same lines (those long enough for the longest).

    Carlini et al. (2022): more context, more extraction, log-linearly in the prefix length."""
    if isinstance(texts, str):
        texts = corpus_texts(model, texts)
    prefixes = sorted(set(int(k) for k in prefixes))
    if not prefixes:
        raise SettingsError("give at least one prefix length")
    for k in prefixes:
        _check_lengths(model, k, suffix)
    chosen, _short, _left = _select(texts, max(prefixes) + suffix, max_per_count, seed)
    out = []
    for j, k in enumerate(prefixes):
        step = (lambda done, _n, j=j: progress(j * len(chosen) + done, len(prefixes) * len(chosen))) \
            if progress else None
        extractable, match, log_p = _test(model, texts, chosen, k, suffix, batch_size, step, stop)
        out.append({"prefix": k, **_rate_record(extractable, match, log_p)})
    return out


def save(result: VerbatimResult, folder, extra: dict | None = None) -> dict:
    """Write ``verbatim.csv`` (the rows) and ``verbatim.json`` (the summary, with ``extra`` such as the corpus
    and checkpoint names) into ``folder``, each atomically; returns the summary."""
    import json
    from pathlib import Path

    from ssviz.jsonable import finite_json
    from ssviz.tempfiles import atomic_write
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SsvizError(f"cannot create {folder}: {e.strerror or e}") from None
    frame = result.frame()
    frame["extractable"] = np.where(frame["extractable"], "true", "false")
    atomic_write(folder / "verbatim.csv", frame.to_csv(index=False, float_format="%.17g"))
    summary = {**(extra or {}), **result.to_json()}
    atomic_write(folder / "verbatim.json", json.dumps(finite_json(summary), indent=1, allow_nan=False))
    return summary


def summary_of(rows, prefix: int = 0, suffix: int = 0) -> dict:
    """The summary (as ``verbatim.json`` holds it) of ``verbatim.csv`` rows: for a file whose JSON is missing."""
    result = VerbatimResult(prefix, suffix, rows["line"].to_numpy(), rows["duplicates"].to_numpy(),
                            rows["extractable"].to_numpy(bool), rows["match_fraction"].to_numpy(np.float64),
                            rows["log_p_suffix"].to_numpy(np.float64))
    return result.to_json()


def read_rows(path):
    """``verbatim.csv`` back as a DataFrame (``extractable`` as booleans)."""
    import pandas as pd
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SsvizError(f"{path} is not a verbatim.csv: missing column(s) {', '.join(missing)}")
    frame["extractable"] = frame["extractable"].astype(str).str.lower().eq("true")
    return frame
