"""The records passed between the study pipeline, the sweeps and their DuckDB files.

Named fields instead of dicts, so a misspelt key is an error where it is made,
not a NULL in a results file. A missing number is ``None`` and is stored as
NULL; reads give ``None`` back (never NaN), so nothing downstream patches NaN.
A secret's value is only in :class:`SecretResult`, which the store hashes; it is
left out of every ``repr`` so a record in a log line cannot leak it.
"""

from __future__ import annotations

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
