"""The membership driver: member and non-member texts in, every attack's score per text, its metrics with
intervals, the blind baseline beside them and the shift warning out (``scores.csv``, ``mia.json``).

One pass of the target model over each text (with the next-unit distribution's moments) serves every
attack; ``lowercase`` adds one pass over the lower-cased texts and ``ref`` the reference model's pass.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ssviz.audit.metrics import summary
from ssviz.errors import MissingFileError, SsvizError
from ssviz.jsonable import finite_json
from ssviz.membership.attacks import ATTACKS, DEFAULT_K, check_k, mean_ll, minkpp_z, parse_attacks, \
    scores_from_readings
from ssviz.membership.blind import SHIFT_RULE, best_attack, blind_baseline, shift_message, shift_warning
from ssviz.progress import check_stop
from ssviz.scoring import read_ids, read_texts
from ssviz.tempfiles import atomic_write

SCORES_CSV, MIA_JSON, TEXTS_CSV = "scores.csv", "mia.json", "texts.csv"
MAX_TEXTS = 200_000
BATCH_BYTES = 1 << 30


class MembershipError(SsvizError, ValueError):
    """Member/non-member inputs that cannot give a membership result."""


def read_lines(source, what: str = "texts") -> list[tuple[int, str]]:
    """``(0-based line number, line)`` of every non-blank line of a UTF-8 file (a path or bytes)."""
    from ssviz.corpus import read_text, source_name
    name = source_name(source, f"the {what}")
    text = read_text(source, f"{what} file", uploaded=name, expected="one text per line", error=MembershipError)
    lines = [(i, line.rstrip("\r")) for i, line in enumerate(text.split("\n")) if line.strip()]
    if not lines:
        raise MembershipError(f"{name} has no text (one text per line)")
    if len(lines) > MAX_TEXTS:
        raise MembershipError(f"{name} has {len(lines):,} texts; at most {MAX_TEXTS:,} are measured at once")
    return lines


def _numbered(texts) -> list[tuple[int, str]]:
    return [t if isinstance(t, tuple) else (i, t) for i, t in enumerate(texts)]


@dataclass
class MiaResult:
    """Scores per text (members first), each attack's metrics, the blind baseline and the shift verdict."""
    index: np.ndarray
    member: np.ndarray
    texts: list[str]
    scores: dict[str, np.ndarray]
    attacks: dict
    blind: dict
    shift_warning: bool
    blind_scores: np.ndarray
    settings: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        best, best_auc = best_attack(self.attacks)
        return {"attacks": self.attacks, "blind": self.blind, "shift_warning": self.shift_warning,
                "shift_message": shift_message(self.blind, self.attacks), "shift_rule": SHIFT_RULE,
                "best_attack": best, "members": int(self.member.sum()),
                "nonmembers": int(len(self.member) - self.member.sum()), "skipped": self.skipped,
                **self.settings, "seconds": self.seconds}

    def table(self):
        """``scores.csv``: ``index``, ``member``, one column per attack (empty where an attack has no score)."""
        import pandas as pd
        return pd.DataFrame({"index": self.index, "member": self.member, **self.scores})

    def rocs(self) -> tuple[dict, tuple | None]:
        """``({"<attack title> (<AUC>)": (fpr, tpr)}, (fpr, tpr) of the blind baseline or None)``: what the ROC
        figure draws, over the texts each attack scored."""
        from ssviz.audit.metrics import roc_curve
        curves = {}
        for name, scores in self.scores.items():
            auc = self.attacks[name].get("auc")
            ok = np.isfinite(scores)
            if auc is not None:
                curves[f"{ATTACKS[name].title} ({auc:.3f})"] = roc_curve(scores[ok], self.member[ok])[:2]
        blind = roc_curve(self.blind_scores, self.member)[:2] if np.isfinite(self.blind_scores).all() else None
        return curves, blind

    def ranks(self, row: int) -> dict[str, int | None]:
        """Rank of text ``row`` under each attack among all texts (1 = the most member-like)."""
        out = {}
        for name, s in self.scores.items():
            v = s[row]
            out[name] = None if not np.isfinite(v) else int(np.sum(s[np.isfinite(s)] > v)) + 1
        return out


def _encode(model, texts: list[str], rows: list, who: str) -> list:
    """Unit ids of every text; a text the model cannot read is named by its set and line number."""
    from ssviz.errors import VocabularyError
    try:
        return model.encode_batch(texts)
    except VocabularyError:
        for (line, _, is_member), text in zip(rows, texts):
            try:
                model.encode(text)
            except VocabularyError as e:
                raise MembershipError(f"{'member' if is_member else 'non-member'} text on line {line} cannot be "
                                      f"read by {who}: {e}") from None
        raise


def _batch_rows(model, rows: list) -> int:
    """Rows per batch so that a batch's next-unit distributions (and the moments' temporaries) stay near
    :data:`BATCH_BYTES`: a 50,000-token vocabulary and 256-token texts would otherwise take gigabytes."""
    longest = max((len(r) for r in rows), default=1)
    per_row = longest * len(model.unit_texts()) * 4 * 4  # float32 log-probs, probabilities and two products
    return int(max(1, min(256, BATCH_BYTES // max(per_row, 1))))


def _fit(model, rows: list) -> list:
    """Rows cut to what the model reads at once: a text longer than its context is measured on its first
    ``max_positions + 1`` units (the last one is only predicted)."""
    limit = model.max_positions
    return rows if not limit else [r[:limit + 1] for r in rows]


def _metrics(scores: np.ndarray, member: np.ndarray, seed: int) -> dict:
    ok = np.isfinite(scores)
    m = member[ok]
    if m.sum() == 0 or m.sum() == len(m):
        return {"auc": None, "auc_ci": None, "tpr_at_fpr": None, "tpr_ci": None, "scored": int(ok.sum()),
                "message": "scored texts lack members or non-members"}
    return {**summary(scores[ok], m, seed=seed), "scored": int(ok.sum())}


def run_mia(model, members: Sequence, nonmembers: Sequence, *, attacks=None, k: float = DEFAULT_K,
            reference=None, pool=None, seed: int = 0, progress=None, stop=None) -> MiaResult:
    """Every attack in ``attacks`` (names; default every one whose input is given) on the member and non-member
    texts (strings, or ``(line number, text)`` pairs); ``pool``: a :class:`~ssviz.membership.lira.Pool` or
    its folder. ``progress(done, total)`` counts texts read over all passes."""
    t0 = time.perf_counter()
    k = check_k(k)
    names = parse_attacks(attacks, reference=reference is not None, pool=pool is not None)
    mem, non = _numbered(members), _numbered(nonmembers)
    if not mem or not non:
        raise MembershipError("membership needs at least one member and one non-member text")
    rows = [(i, t, True) for i, t in mem] + [(i, t, False) for i, t in non]
    texts = [t for _, t, _ in rows]
    lower = "lowercase" in names
    raw = _encode(model, texts, rows, "the model")
    ids = _fit(model, raw)
    lower_ids = _fit(model, _encode(model, [t.lower() for t in texts], rows, "the model (lower-cased)")) \
        if lower else None
    ref_ids = _fit(reference, _encode(reference, texts, rows, "the reference model")) if "ref" in names else None
    truncated = sum(len(a) < len(b) for a, b in zip(ids, raw))
    keep = [j for j in range(len(rows)) if len(ids[j]) >= 2 and (lower_ids is None or len(lower_ids[j]) >= 2)
            and (ref_ids is None or len(ref_ids[j]) >= 2)]
    skipped = [{"member": rows[j][2], "index": rows[j][0]} for j in range(len(rows)) if j not in set(keep)]
    rows, texts = [rows[j] for j in keep], [texts[j] for j in keep]
    member = np.array([m for _, _, m in rows], dtype=bool)
    if member.sum() < 2 or (~member).sum() < 2:
        raise MembershipError("membership needs at least 2 member and 2 non-member texts of 2 or more units each")
    passes = [("target", model, [ids[j] for j in keep], True)]
    if lower:
        passes.append(("lower", model, [lower_ids[j] for j in keep], False))
    if ref_ids is not None:
        passes.append(("reference", reference, [ref_ids[j] for j in keep], False))
    total, readings = len(rows) * len(passes), {}
    for p, (name, m, pass_ids, stats) in enumerate(passes):
        check_stop(stop)
        report = None if progress is None else (lambda d, _t, o=p * len(rows): progress(o + d, total))
        readings[name] = read_ids(m, pass_ids, stats=stats, progress=report, stop=stop,
                                  batch_size=_batch_rows(m, pass_ids))
    scores = scores_from_readings([n for n in names if n != "lira"], texts, readings["target"],
                                  lower=readings.get("lower"), reference=readings.get("reference"), k=k)
    if "lira" in names:
        from ssviz.membership.lira import Pool, lira_scores, read_pool
        pool_data = pool if isinstance(pool, Pool) else read_pool(pool)
        scores["lira"] = lira_scores(pool_data, texts, [mean_ll(r) for r in readings["target"]])
    scores = {n: scores[n] for n in names}
    check_stop(stop)
    results = {}
    for n in names:
        results[n] = {"title": ATTACKS[n].title, **_metrics(scores[n], member, seed)}
    blind = blind_baseline(texts, member, seed=seed)
    blind_s = blind.pop("scores")
    settings = {"attack_names": names, "k": k, "seed": seed, "truncated": truncated,
                "pool": None if pool is None or not isinstance(pool, (str, Path)) else str(pool)}
    return MiaResult(np.array([i for i, _, _ in rows]), member, texts, scores, results, blind,
                     shift_warning(blind, results), blind_s, settings, skipped, time.perf_counter() - t0)


def save_mia(result: MiaResult, out, extra: dict | None = None) -> Path:
    """Write ``scores.csv``, ``texts.csv`` (index, member, text, the blind baseline's out-of-fold score) and
    ``mia.json`` into the folder ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    result.table().to_csv(buf, index=False, na_rep="", float_format="%.10g")
    atomic_write(out / SCORES_CSV, buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "member", "text", "blind"])
    for i, m, t, b in zip(result.index, result.member, result.texts, result.blind_scores):
        w.writerow([int(i), bool(m), t, f"{b:.10g}"])
    atomic_write(out / TEXTS_CSV, buf.getvalue())
    doc = {**result.to_json(), **(extra or {})}
    atomic_write(out / MIA_JSON, json.dumps(finite_json(doc), indent=1, allow_nan=False))
    return out


def is_result(folder) -> bool:
    folder = Path(folder)
    return (folder / MIA_JSON).is_file() and (folder / SCORES_CSV).is_file()


def load_mia(folder) -> MiaResult:
    """A saved result back (its texts and blind scores from ``texts.csv`` when present)."""
    import pandas as pd

    folder = Path(folder)
    if not is_result(folder):
        raise MissingFileError(f"{folder} holds no membership result ({MIA_JSON} and {SCORES_CSV})")
    try:
        doc = json.loads((folder / MIA_JSON).read_text(encoding="utf-8"))
        table = pd.read_csv(folder / SCORES_CSV)
        names = list(doc["attacks"])
        member = table["member"].astype(str).str.lower().eq("true").to_numpy()
        scores = {n: pd.to_numeric(table[n], errors="coerce").to_numpy(dtype=np.float64) for n in names}
        texts, blind = [""] * len(table), np.full(len(table), np.nan)
        if (folder / TEXTS_CSV).is_file():
            tx = pd.read_csv(folder / TEXTS_CSV, keep_default_na=False, dtype={"text": str})
            if len(tx) == len(table):
                texts = tx["text"].tolist()
                blind = pd.to_numeric(tx["blind"], errors="coerce").to_numpy(dtype=np.float64)
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise MembershipError(f"{folder} is not a readable membership result: {type(e).__name__}: {e}") from None
    settings = {k: doc.get(k) for k in ("attack_names", "k", "seed", "pool", "checkpoint", "reference",
                                        "members_file", "nonmembers_file", "description") if k in doc}
    return MiaResult(table["index"].to_numpy(), member, texts, scores, doc["attacks"], doc["blind"],
                     bool(doc["shift_warning"]), blind, settings, doc.get("skipped", []), doc.get("seconds", 0.0))


def text_view(model, text: str) -> dict:
    """One text unit by unit: ``units`` (their texts), ``logp`` and Min-K%++ ``z`` of each predicted unit
    (the first unit is context: None)."""
    reading = read_texts(model, [text], stats=True)[0]
    units = [model.unit_text(int(i)) for i in reading.ids]
    z = minkpp_z(reading) if len(reading.logp) else np.zeros(0)
    return {"units": units, "logp": [None, *map(float, reading.logp)], "z": [None, *map(float, z)]}



FPR_LABELS = {"0.001": "0.1%", "0.01": "1%", "0.1": "10%"}


def metrics_rows(doc: dict) -> list[dict]:
    """One row per attack and one for the blind baseline, with intervals as text: the table the page, the
    CLI's readers and the report show."""
    def interval(ci) -> str:
        return "–" if not ci else f"{ci[0]:.3f}–{ci[1]:.3f}"

    rows = []
    entries = [(ATTACKS[n].title if n in ATTACKS else n, a) for n, a in doc["attacks"].items()]
    for title, a in [*entries, ("Blind baseline (no model)", doc["blind"])]:
        row = {"attack": title, "AUC": a.get("auc"), "AUC 95% interval": interval(a.get("auc_ci"))}
        for f, label in FPR_LABELS.items():
            row[f"TPR at {label} FPR"] = (a.get("tpr_at_fpr") or {}).get(f)
            row[f"TPR at {label} 95% interval"] = interval((a.get("tpr_ci") or {}).get(f))
        row["texts scored"] = a.get("scored", a.get("members", 0) + a.get("nonmembers", 0))
        rows.append(row)
    return rows
