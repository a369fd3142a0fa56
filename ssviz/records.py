"""The records passed between the study pipeline, the sweeps and their DuckDB files.

Named fields instead of dicts, so a misspelt key is an error where it is made,
not a NULL in a results file. A missing number is ``None`` and is stored as
NULL; reads give ``None`` back (never NaN), so nothing downstream patches NaN.
A secret's value is only in :class:`SecretResult`, which the store hashes; it is
left out of every ``repr`` so a record in a log line cannot leak it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Measurement:
    """One exposure method's figure for one secret (``exposure`` None: the method failed, see ``message``)."""

    method: str                            # "exact", "search" or "skewnorm"
    exposure: float | None = None
    ci: tuple[float, float] | None = None  # skew-normal's confidence interval
    rank: int | None = None
    log_perplexity: float | None = None
    log2_space_size: float | None = None
    samples: int | None = None
    seconds: float | None = None
    message: str = ""
    primary: bool = False                  # the figure reported for the secret


@dataclass(frozen=True)
class Extraction:
    """One extraction attack on one secret."""

    algorithm: str
    found: bool
    secret_rank: int | None = None
    nodes: int | None = None
    model_steps: int | None = None
    seconds: float | None = None
    complete: bool | None = None
    max_nodes: int | None = None


@dataclass(frozen=True)
class SecretResult:
    """A secret found in a user's mail and what was measured on it (``value`` is hashed by the store)."""

    type: str
    value: str = field(repr=False)
    template: str
    times_present: int
    times_trained: int | None = None
    measurements: tuple[Measurement, ...] = ()
    extractions: tuple[Extraction, ...] = ()


@dataclass(frozen=True)
class UserResult:
    """One user's model and secrets, as :meth:`ssviz.store.Store.save_user` stores them."""

    user: str
    corpus_chars: int
    messages: int
    secrets: tuple[SecretResult, ...] = ()
    corpus_hash: str | None = None
    test_loss: float | None = None
    train_seconds: float | None = None
    seconds: float | None = None
    cached_model: bool = False             # not stored: only for the log line
    notes: tuple[str, ...] = ()            # not stored: redacted lines for the log (e.g. a secret left out)


@dataclass(frozen=True)
class ComparisonRow:
    """One row of the Table 5 view (:meth:`ssviz.store.Store.rows`)."""

    user: str
    type: str
    last4: str
    times_present: int
    exposure: float | None
    exposure_method: str | None
    extracted: bool
    corpus_chars: int
    messages: int
    run_id: int

    def to_json(self) -> dict:
        """The CLI's JSON row (``enron``, ``enron-show``): these keys, in this order."""
        return {"user": self.user, "type": self.type, "last4": self.last4, "times_present": self.times_present,
                "exposure": self.exposure, "exposure_method": self.exposure_method, "extracted": self.extracted}


@dataclass(frozen=True)
class SweepRun:
    """One trained (cell, seed) of a sweep, a row of ``sweep_runs`` (``created`` is set by the database)."""

    sweep: str
    cell: str
    param1: str
    value1: str
    param2: str | None
    value2: str | None
    seed: int
    exposure: float | None
    exposure_method: str | None
    rank: int | None
    test_loss: float | None
    train_loss: float | None
    epochs_run: int
    epsilon: float | None                  # None without DP; inf when DP promised nothing
    seconds: float
    history: str                           # JSON: per-epoch records
    config: str                            # JSON: the TrainConfig of this run

    def values(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]


def names(record_type) -> list[str]:
    """A record's field names, in order (the columns it is stored in)."""
    return [f.name for f in fields(record_type)]


_NUMBER = (int, float)
# the results file's keys: (JSON types, nullable); required: the "Defense results" contract's keys
EPOCH_JSON = {"epoch": (int, False), "train_loss": (_NUMBER, True), "val_loss": (_NUMBER, True),
              "exposure": (_NUMBER, True), "seconds": (_NUMBER, True), "epsilon": (_NUMBER, True),
              "exposure_method": (str, True), "rank": (int, True), "log_perplexity": (_NUMBER, True)}
DEFENSE_JSON = {"defense": (str, False), "strength": (str, False), "epsilon": (_NUMBER, True),
                "exposure": (_NUMBER, False), "exposure_method": (str, False), "test_loss": (_NUMBER, False),
                "seconds": (_NUMBER, False), "stopped": (bool, False), "epochs": (list, False),
                "details": (dict, False), "setting": (dict, True)}
DEFENSE_REQUIRED = ("defense", "strength", "epsilon", "exposure", "exposure_method", "test_loss", "seconds")
# the least value of each number read back, and whether infinity is meaningful (an epoch's epsilon when DP
# promised nothing); NaN never is. A file edited by hand must not show impossible numbers as results.
_TINY = -1e-6
EPOCH_RANGES = {"epoch": (0, False), "train_loss": (0, False), "val_loss": (0, False), "exposure": (_TINY, False),
                "seconds": (0, False), "epsilon": (0, True), "rank": (1, False), "log_perplexity": (_TINY, False)}
DEFENSE_RANGES = {"epsilon": (0, False), "exposure": (_TINY, False), "test_loss": (0, False), "seconds": (0, False)}


def _checked_json(d, required: tuple[str, ...], kinds: dict, ranges: dict | None = None) -> dict:
    """``d`` if it is a JSON object with the ``required`` keys, no other key than ``kinds`` names, and each
    value of its kind (``kinds[key] = (types, nullable)``); else one error naming the key, never a traceback."""
    from ssviz.errors import InvalidValueError
    if not isinstance(d, dict):
        raise InvalidValueError(f"expected a JSON object, got {type(d).__name__}")
    missing = [k for k in required if k not in d]
    if missing:
        raise InvalidValueError(f"lacks {', '.join(missing)}")
    unknown = [k for k in d if k not in kinds]
    if unknown:
        raise InvalidValueError(f"has unknown key(s) {', '.join(map(repr, unknown))} (expected {', '.join(kinds)})")
    for key, value in d.items():
        types, nullable = kinds[key]
        types = types if isinstance(types, tuple) else (types,)
        if value is None and nullable:
            continue
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):  # JSON true is no number
            kind = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
            raise InvalidValueError(f"{key!r} must be {kind}, got {value!r:.60}")
        if key in (ranges or {}) and value is not None:
            least, inf_ok = ranges[key]
            if value != value or (math.isinf(value) and not (inf_ok and value > 0)) or value < least:
                raise InvalidValueError(f"{key!r} must be a finite number >= {least:g}"
                                        f"{' (or Infinity)' if inf_ok else ''}, got {value!r:.60}")
    return d


@dataclass(frozen=True)
class DefenseEpoch:
    """One epoch of a defense run's training, as :func:`ssviz.train.train` records it (the paper's Figure 4)."""

    epoch: int
    train_loss: float | None = None
    val_loss: float | None = None
    exposure: float | None = None
    seconds: float | None = None           # since training started
    epsilon: float | None = None           # DP spent so far (inf when DP promises nothing); None without DP
    exposure_method: str | None = None
    rank: int | None = None
    log_perplexity: float | None = None

    def to_json(self) -> dict:
        """The results file's epoch object: these keys, in this order (``epsilon`` only with DP)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.epsilon is None:
            del out["epsilon"]
        return out

    @classmethod
    def from_json(cls, d) -> DefenseEpoch:
        return cls(**_checked_json(d, ("epoch",), EPOCH_JSON, EPOCH_RANGES))


# every defense's name for people: tables, charts, pages and the report say these, never the codes
DEFENSE_LABELS = {"none": "No defense", "dropout": "Dropout", "weight_decay": "Weight decay",
                  "quantize8": "8-bit quantization", "regex": "Regex sanitization",
                  "lpd": "LPD sanitization", "dp": "DP-SGD (Opacus)"}


@dataclass(frozen=True)
class DefenseResult:
    """One defense at one strength, trained and measured on one canary: a record of the "Defense results"
    contract (``models/defenses/demo-results.json``, :func:`ssviz.defenses.compare.run_defense`)."""

    defense: str                           # one of ssviz.defenses.compare.DEFENSES
    strength: str                          # "-", "0.3", "1e-4", "8", "ssn+ccn", "eps=8", "noise=0", ...
    epsilon: float | None                  # DP guarantee spent; None without DP or when it promised nothing
    exposure: float                        # of the canary on the final model
    exposure_method: str
    test_loss: float
    seconds: float
    stopped: bool = False
    epochs: tuple[DefenseEpoch, ...] = ()
    details: dict = field(default_factory=dict)  # free-form JSON: quantization, DP noise, sanitization report
    setting: dict | None = None            # free-form JSON: what the bundled set was trained on (written if given)

    def to_json(self) -> dict:
        """The results file's record: these keys, in this order (``setting`` only when there is one)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["epochs"] = [e.to_json() for e in self.epochs]
        if self.setting is None:
            del out["setting"]
        return out

    @classmethod
    def from_json(cls, d) -> DefenseResult:
        """A record from the results file's JSON (:class:`ssviz.errors.InvalidValueError` naming the bad key)."""
        from ssviz.errors import InvalidValueError
        d = dict(_checked_json(d, DEFENSE_REQUIRED, DEFENSE_JSON, DEFENSE_RANGES))
        epochs = []
        for i, e in enumerate(d.get("epochs", ())):
            try:
                epochs.append(DefenseEpoch.from_json(e))
            except InvalidValueError as err:
                raise InvalidValueError(f"epoch {i}: {err}") from None
        return cls(**{**d, "epochs": tuple(epochs)})
