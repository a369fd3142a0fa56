"""The one-run audit: draw canaries, flip a coin for each, train once, score every canary.

Steinke, Nasr and Jagielski's design (NeurIPS 2023): M distinct random fillers of a
template are drawn *before* any coin is flipped; each is included independently
with probability 1/2 and, if included, inserted K times into the training split
only; one model is trained (any option, DP included); every canary is scored
without looking at the coins. The metrics and the epsilon lower bound then come
from :func:`ssviz.audit.summarize` over ``(score, included)``.

Beside it, the classic loss-based membership attack on the same model: members
are training lines, non-members held-out test lines, score = minus the loss per
character.

A finished audit is a folder: ``canaries.csv`` (``filler``, ``included``,
``log_perplexity``, ``score``), ``audit.json`` (settings and results) and the
checkpoint. :func:`load_audit` recomputes the metrics from it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ssviz.audit import group_privacy, summarize
from ssviz.audit.canaries import (CANARY_KINDS, MIN_NEW_UNITS, BigramModel, bigram_canaries, new_unit_candidates,
                                  new_units, with_alphabet)
from ssviz.audit.metrics import AuditError, auc, from_groups, membership_scores
from ssviz.corpus import Split, insert_canary, split_text
from ssviz.errors import MissingFileError, SettingsError, SsvizError
from ssviz.tempfiles import atomic_write
from ssviz.jsonable import finite_json
from ssviz.messages import clip
from ssviz.scoring import score_fillers, score_texts
from ssviz.templates import Template, parse_template
from ssviz.train import TrainConfig, new_model, train

CANARIES_CSV = "canaries.csv"
AUDIT_JSON = "audit.json"
CHECKPOINT = "model.safetensors"
CSV_COLUMNS = ("filler", "included", "log_perplexity", "score")
MIA_LINES = 1_000     # lines per side of the loss-based attack
MIA_MIN_CHARS = 20    # shorter lines say little about membership
MIN_CONFIDENCE = 0.5  # a lower bound held with less than even odds is no bound
MAX_EPSILON = 1e6     # a claimed epsilon beyond this is not a privacy guarantee anyone computed
# the JSON's first keys, in this order (summarize's, then what needs the training run)
CORE_KEYS = ("canaries", "included", "auc", "tpr_at_fpr", "epsilon_lower", "confidence", "delta")


@dataclass(frozen=True)
class AuditSettings:
    template: str
    canaries: int = 500
    insertions: int = 8
    inclusion: float = 0.5
    delta: float = 1e-5
    confidence: float = 0.95
    seed: int = 0
    canary_kind: str = "random"  # see ssviz.audit.canaries

    def validate(self) -> "AuditSettings":
        t = parse_template(self.template)
        if self.canary_kind not in CANARY_KINDS:
            raise SettingsError(f"canary kind must be one of {', '.join(CANARY_KINDS)}, got "
                                f"{clip(repr(self.canary_kind), 40)}")
        if not isinstance(self.canaries, int) or self.canaries < 10:
            raise SettingsError(f"an audit needs at least 10 canaries, got {self.canaries!r}")
        if self.canary_kind == "random" and self.canaries > t.space_size:  # other kinds: checked on their template
            raise SettingsError(f"the template has only {t.space_size:,} fillers, fewer than {self.canaries:,} "
                                "distinct canaries")
        if self.canaries > 1_000_000:
            raise SettingsError("at most 1,000,000 canaries")
        if not isinstance(self.insertions, int) or self.insertions < 1:
            raise SettingsError(f"insertions must be a whole number >= 1, got {self.insertions!r}")
        if not (isinstance(self.inclusion, float | int) and 0 < self.inclusion < 1):
            raise SettingsError(f"inclusion must be a probability in (0, 1), got {self.inclusion!r}")
        if not _real(self.delta) or not 0 <= self.delta < 1:
            raise SettingsError(f"delta must be in [0, 1), got {self.delta!r}")
        if not _real(self.confidence) or not MIN_CONFIDENCE <= self.confidence < 1:
            raise SettingsError(f"confidence must be in [{MIN_CONFIDENCE}, 1), got {self.confidence!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise SettingsError(f"seed must be a whole number >= 0, got {self.seed!r}")
        return self


def _real(v) -> bool:
    """A finite number that is not a bool (JSON ``true`` is not 1 here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class AuditResult:
    settings: AuditSettings
    fillers: list[str]
    included: np.ndarray      # bool per canary
    log_perplexities: np.ndarray
    metrics: dict             # summarize(): canaries, included, auc, tpr_at_fpr, epsilon_lower, confidence, delta
    epsilon_claimed: float | None
    mia_auc: float | None
    config: dict
    train: dict               # test_loss, epochs, seconds, dp_noise
    checkpoint: str | None = None
    message: str = ""
    canary_template: str | None = None  # the template the canaries were drawn from (the kind's)

    @property
    def scores(self) -> np.ndarray:
        return membership_scores(self.log_perplexities,
                                 parse_template(self.canary_template or self.settings.template).space_size)

    def to_json(self) -> dict:
        """The CLI's JSON: the issue's keys first, then what a reader needs to interpret them."""
        claimed = self.epsilon_claimed
        group = (group_privacy(claimed, self.config.get("dp_delta", 0.0), self.settings.insertions)[0]
                 if claimed is not None else None)
        first = {k: v for k, v in self.metrics.items() if k in CORE_KEYS}
        return finite_json({**first, "epsilon_claimed": claimed, "mia_auc": self.mia_auc,
                            "checkpoint": self.checkpoint, **self.metrics, "epsilon_claimed_per_canary": group,
                            "insertions": self.settings.insertions, "inclusion": self.settings.inclusion,
                            "template": self.settings.template, "seed": self.settings.seed,
                            "canary_kind": self.settings.canary_kind,
                            "canary_template": self.canary_template or self.settings.template,
                            "message": self.message})


def draw_canaries(template: Template, m: int, seed: int) -> list[str]:
    """``m`` distinct uniformly random fillers (seeded), drawn before any coin is flipped."""
    rng = np.random.default_rng([seed, 0xA0D17])
    if template.space_size <= 4 * m:  # small space: a random subset without replacement
        idx = rng.choice(template.space_size, size=m, replace=False)
        return [template.filler_at(int(i)) for i in idx]
    out: dict[str, None] = {}
    while len(out) < m:
        for f in template.digits_to_fillers(template.random_digits(2 * (m - len(out)), rng)):
            out.setdefault(f, None)
            if len(out) == m:
                break
    return list(out)


def flip_coins(m: int, inclusion: float, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 0xC01]).random(m) < inclusion


def insert_canaries(split: Split, template: Template, fillers, included, insertions: int, seed: int) -> Split:
    """The split with each included canary inserted ``insertions`` times into its training part only."""
    train_text = split.train
    for i, (f, inc) in enumerate(zip(fillers, included)):
        if inc:
            train_text = insert_canary(train_text, template.format(f), insertions, seed=seed * 1_000_003 + i)
    return Split(train_text, split.val, split.test)


def loss_attack_auc(model, split: Split, seed: int) -> float | None:
    """AUC of the loss-based membership attack: training lines vs held-out test lines, score = -bits/char."""
    rng = np.random.default_rng([seed, 0x1A55])

    def lines(text: str) -> list[str]:
        kept = [ln for ln in text.split("\n") if len(ln) >= MIA_MIN_CHARS and all(c in model.vocab for c in ln)]
        if model.max_positions and kept:  # a line longer than the model's context cannot be read whole
            kept = [ln for ln, ids in zip(kept, model.encode_batch(kept)) if len(ids) <= model.max_positions]
        if len(kept) > MIA_LINES:
            kept = [kept[i] for i in sorted(rng.choice(len(kept), MIA_LINES, replace=False))]
        return kept

    members, others = lines(split.train), lines(split.test)
    if len(members) < 5 or len(others) < 5:
        return None
    per_char = [-score_texts(model, group) / np.array([len(t) - 1 for t in group]) for group in (members, others)]
    scores, labels = from_groups(*per_char)
    return auc(scores, labels)


def canary_design(settings: AuditSettings, config: TrainConfig, split: Split) -> tuple[Template, list[str], object]:
    """``(canary template, canaries, untrained model)`` for the settings' canary kind, from the clean split.

    The model is built before any canary is inserted (a tokenizer never learns from the canaries);
    for new-token canaries it is built with the candidate characters and then asked which of them
    are units it never produces on the training text.
    """
    template = parse_template(settings.template)
    if settings.canary_kind == "new-token":
        candidates = new_unit_candidates(split.text)
        model = new_model(config, split, with_alphabet(template, candidates)) if candidates else None
        units = new_units(model, split.train, candidates) if candidates else ""
        if len(units) < MIN_NEW_UNITS:
            raise SettingsError(f"new-token canaries need at least {MIN_NEW_UNITS} characters whose units the training "
                                f"text never uses; this model and corpus leave {len(units)}")
        template = with_alphabet(template, units)
    elif settings.canary_kind == "bigram":
        bigram = BigramModel(split.train)
        template = with_alphabet(template, bigram.alphabet)
        model = new_model(config, split, template)
        return template, bigram_canaries(template, bigram, settings.canaries, settings.seed), model
    else:
        model = new_model(config, split, template)
    if settings.canaries > template.space_size:
        raise SettingsError(f"the {settings.canary_kind} canary template has only {template.space_size:,} fillers, "
                            f"fewer than {settings.canaries:,} distinct canaries")
    return template, draw_canaries(template, settings.canaries, settings.seed), model


def run_audit(text: str, settings: AuditSettings, config: TrainConfig, *, out_dir=None, on_epoch=None,
              on_batch=None, progress=None, stop=None) -> AuditResult:
    """Train once with the audit canaries and measure; writes the audit folder when ``out_dir`` is given."""
    settings = settings.validate()
    config = config.validate()
    clean = split_text(text, config.val_fraction)
    template, fillers, model = canary_design(settings, config, clean)
    included = flip_coins(len(fillers), settings.inclusion, settings.seed)
    split = insert_canaries(clean, template, fillers, included, settings.insertions, settings.seed)
    t0 = time.perf_counter()
    result = train(split, config, model=model, on_epoch=on_epoch, on_batch=on_batch, stop=stop)
    if result.stopped:
        from ssviz.errors import StoppedError
        raise StoppedError("the audit's training was stopped: nothing to measure")
    model = result.model
    lps = score_fillers(model, template, fillers, progress=progress, stop=stop)
    scores = membership_scores(lps, template.space_size)
    message = ""
    if settings.inclusion == 0.5:
        metrics = summarize(scores, included, delta=settings.delta, confidence=settings.confidence)
    else:  # the one-run theorem is stated for fair coins: report the ROC, not a bound
        metrics = summarize_without_bound(scores, included, settings)
        message = "epsilon_lower needs --inclusion 0.5 (the one-run theorem assumes fair coins)"
    claimed = result.epsilon if result.epsilon is not None and math.isfinite(result.epsilon) else None
    audit = AuditResult(settings, fillers, included, lps, metrics, claimed,
                        loss_attack_auc(model, split, settings.seed), asdict(config),
                        {"test_loss": result.test_loss, "epochs": len(result.epochs), "dp_noise": result.dp_noise,
                         "seconds": time.perf_counter() - t0}, message=message, canary_template=template.text)
    if result.warning:
        audit.message = "; ".join(m for m in (audit.message, result.warning) if m)
    if out_dir is not None:
        save_audit(audit, out_dir, model=result)
    return audit


def summarize_without_bound(scores, included, settings: AuditSettings) -> dict:
    """:func:`summarize`'s keys with both bounds null (the one-run theorems assume fair coins)."""
    from ssviz.audit import auc_hull, membership_arrays, summary, tpr_at_fpr
    s, inc = membership_arrays(scores, included)
    intervals = summary(s, inc, level=settings.confidence)
    return {"canaries": len(s), "included": int(inc.sum()), "auc": auc(s, inc),
            "tpr_at_fpr": {str(f): t for f, t in tpr_at_fpr(s, inc).items()}, "epsilon_lower": None,
            "confidence": settings.confidence, "delta": settings.delta, "epsilon_lower_fdp": None,
            "auc_ci": intervals["auc_ci"], "tpr_ci": intervals["tpr_ci"], "auc_hull": auc_hull(s, inc),
            "bounds": None}


# --- the audit folder ---------------------------------------------------------------------------------
def save_audit(audit: AuditResult, out_dir, model=None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model is not None:
        audit.checkpoint = str(model.save(out / CHECKPOINT))
    rows = io.StringIO(newline="")
    w = csv.writer(rows)
    w.writerow(CSV_COLUMNS)
    for filler, inc, lp, score in zip(audit.fillers, audit.included, audit.log_perplexities, audit.scores):
        w.writerow([filler, "true" if inc else "false", repr(float(lp)), repr(float(score))])
    doc = {"settings": asdict(audit.settings), "config": audit.config, "train": audit.train,
           "results": audit.to_json()}
    # each file through an exclusive temp file renamed into place: no planted link is written through
    atomic_write(out / CANARIES_CSV, rows.getvalue())
    atomic_write(out / AUDIT_JSON, json.dumps(finite_json(doc), indent=1, allow_nan=False))
    return out


def read_canaries(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(fillers, included, log_perplexities)`` from a ``canaries.csv``, each row checked."""
    fillers, included, lps = [], [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark
            reader = csv.DictReader(f)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise AuditError(f"{path}: missing column(s) {', '.join(missing)}")
            for n, row in enumerate(reader, start=2):
                if any(row.get(c) is None for c in CSV_COLUMNS):
                    raise AuditError(f"{path} line {n}: missing field(s) "
                                     f"{', '.join(c for c in CSV_COLUMNS if row.get(c) is None)}")
                if None in row:
                    raise AuditError(f"{path} line {n}: more fields than the {len(reader.fieldnames)} columns")
                inc = row["included"].strip().lower()
                if inc not in ("true", "false"):
                    raise AuditError(f"{path} line {n}: included must be true or false, got "
                                     f"{clip(repr(row['included']), 20)}")
                try:
                    lp = float(row["log_perplexity"])
                except ValueError:
                    raise AuditError(f"{path} line {n}: log_perplexity is not a number") from None
                if not math.isfinite(lp) or lp < 0:
                    raise AuditError(f"{path} line {n}: log_perplexity is {row['log_perplexity'].strip()[:20]}: it "
                                     "must be a finite number of bits >= 0")
                fillers.append(row["filler"])
                included.append(inc == "true")
                lps.append(lp)
    except UnicodeDecodeError:
        raise AuditError(f"{path} is not UTF-8 text") from None
    except csv.Error as e:
        raise AuditError(f"{path} is not a readable CSV file ({clip(str(e), 80)})") from None
    return fillers, np.array(included, dtype=bool), np.array(lps, dtype=np.float64)


def load_audit(out_dir, *, delta: float | None = None, confidence: float | None = None) -> dict:
    """Recompute a finished audit's metrics from its folder (no training): the CLI's JSON keys, plus
    ``scores``/``included`` arrays for figures."""
    out = Path(out_dir)
    if not (out / CANARIES_CSV).is_file():
        raise MissingFileError(f"{out} is not a finished audit (no {CANARIES_CSV})")
    try:
        doc = json.loads((out / AUDIT_JSON).read_text(encoding="utf-8")) if (out / AUDIT_JSON).is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise AuditError(f"{out / AUDIT_JSON} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise AuditError(f"{out / AUDIT_JSON} must be a JSON object")
    settings, previous = check_audit_doc(doc, out / AUDIT_JSON)
    fillers, included, lps = read_canaries(out / CANARIES_CSV)
    template = previous.get("canary_template") or settings.get("template")
    try:
        space = parse_template(template).space_size if template else None
    except SsvizError as e:
        raise AuditError(f"{out / AUDIT_JSON}: settings.template is not a valid template ({e})") from None
    scores = membership_scores(lps, space)
    delta = settings.get("delta", 1e-5) if delta is None else _level(delta, "delta", "--delta")
    confidence = settings.get("confidence", 0.95) if confidence is None else \
        _level(confidence, "confidence", "--confidence")
    if settings.get("inclusion", 0.5) == 0.5:
        metrics = summarize(scores, included, delta=delta, confidence=confidence)
    else:
        metrics = summarize_without_bound(scores, included, AuditSettings(template or "x{d:1}", delta=delta,
                                                                          confidence=confidence))
    keep = ("epsilon_claimed", "mia_auc", "checkpoint", "epsilon_claimed_per_canary", "insertions", "inclusion",
            "template", "seed", "canary_kind", "canary_template", "message")
    first = {k: v for k, v in metrics.items() if k in CORE_KEYS}
    kept = {k: previous.get(k) for k in keep}
    kept["canary_kind"] = kept["canary_kind"] or settings.get("canary_kind") or "random"
    return {**first, **kept, **metrics, "scores": scores, "included_mask": included,
            "name": out.name}


def _level(v, field: str, where: str):
    low, high = (MIN_CONFIDENCE, 1.0) if field == "confidence" else (0.0, 1.0)
    if not _real(v) or not low <= v < high:
        raise AuditError(f"{where}: {field} must be a number in [{low:g}, 1), got {clip(repr(v), 40)}")
    return v


# every field audit.json may hold: settings (the run's options) and results (shown beside the recomputed ones)
_SETTING_CHECKS = {
    "template": (lambda v: isinstance(v, str) and v != "", "a template"),
    "canaries": (lambda v: type(v) is int and v >= 1, "a whole number >= 1"),
    "insertions": (lambda v: type(v) is int and v >= 1, "a whole number >= 1"),
    "inclusion": (lambda v: _real(v) and 0 < v < 1, "a probability in (0, 1)"),
    "delta": (lambda v: _real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "confidence": (lambda v: _real(v) and MIN_CONFIDENCE <= v < 1, f"a number in [{MIN_CONFIDENCE}, 1)"),
    "seed": (lambda v: type(v) is int and v >= 0, "a whole number >= 0"),
    "canary_kind": (lambda v: v in CANARY_KINDS, f"one of {', '.join(CANARY_KINDS)}"),
}
_RESULT_CHECKS = {
    "epsilon_claimed": (lambda v: v is None or (_real(v) and 0 <= v <= MAX_EPSILON),
                        f"null or a number in [0, {MAX_EPSILON:g}]"),
    "epsilon_claimed_per_canary": (lambda v: v is None or (_real(v) and 0 <= v), "null or a number >= 0"),
    "mia_auc": (lambda v: v is None or (_real(v) and 0 <= v <= 1), "null or a number in [0, 1]"),
    "checkpoint": (lambda v: v is None or isinstance(v, str), "null or a path"),
    "insertions": _SETTING_CHECKS["insertions"],
    "inclusion": _SETTING_CHECKS["inclusion"],
    "template": (lambda v: v is None or isinstance(v, str), "a template"),
    "seed": (lambda v: v is None or (type(v) is int and v >= 0), "a whole number >= 0"),
    "message": (lambda v: v is None or isinstance(v, str), "text"),
    "canary_kind": (lambda v: v is None or v in CANARY_KINDS, f"null or one of {', '.join(CANARY_KINDS)}"),
    "canary_template": (lambda v: v is None or (isinstance(v, str) and v != ""), "null or a template"),
}


def check_audit_doc(doc: dict, path) -> tuple[dict, dict]:
    """``(settings, results)`` of an ``audit.json``, every field that is read back checked for type and range.

    A string where a number belongs (``"inclusion": "0.5"``), a confidence that makes the bound
    meaningless, a negative or absurd claimed epsilon: one line naming the file and field.
    """
    parts = []
    for section, checks in (("settings", _SETTING_CHECKS), ("results", _RESULT_CHECKS)):
        part = doc.get(section)
        if part is None:
            part = {}
        if not isinstance(part, dict):
            raise AuditError(f"{path}: {section} must be a JSON object")
        for key, (ok, what) in checks.items():
            if key in part and not ok(part[key]):
                raise AuditError(f"{path}: {section}.{key} is {clip(json.dumps(part[key]), 40)}: it must be {what}")
        parts.append(part)
    return parts[0], parts[1]


def is_audit(folder) -> bool:
    """Whether ``folder`` holds a finished audit (its ``canaries.csv``: all the numbers are recomputed from it)."""
    return (Path(folder) / CANARIES_CSV).is_file()


def training_config(folder) -> dict:
    """The training options recorded in an audit's ``audit.json`` ({} if absent or unreadable)."""
    try:
        doc = json.loads((Path(folder) / AUDIT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    config = doc.get("config") if isinstance(doc, dict) else None
    return config if isinstance(config, dict) else {}
