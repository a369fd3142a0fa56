"""Everything ssviz measures about one secret in one model, by every method that applies.

Used by the per-user study, the corpus scan and anything else that asks "how
exposed is this secret, and would a search extract it?":

* ``exact`` exposure when the space is small enough to enumerate;
* ``search`` (exact rank by best-first enumeration, when the secret comes out
  within the node budget);
* ``skewnorm`` (always; the paper's estimate).

The reported (``primary``) figure is the first of those that succeeded, in that
order. A shortest-path search under a node budget then says whether the secret
is extracted (it is the most likely filler of its template).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from ssviz.errors import SsvizError, StoppedError
from ssviz.records import Extraction, Measurement

EXPOSURE_ORDER = ("exact", "search", "skewnorm")


def measure_secret(model, template, secret: str, *, exact_limit: int = 10 ** 6, search_nodes: int = 20_000,
                   extraction_nodes: int = 20_000, samples: int = 5_000, batch_size: int = 64, seed: int = 0,
                   stop=None) -> tuple[list[Measurement], Extraction]:
    """``(measurements, extraction)`` of ``secret``; a method that fails records its message instead."""
    from ssviz import exposure
    from ssviz.extraction import search_exposure, shortest_path

    secret = template.normalize(secret)  # searches report bare fillers; compare like with like
    measurements = []

    def record(method: str, run) -> None:
        t0 = time.perf_counter()
        try:
            res = run()
        except StoppedError:
            raise
        except SsvizError as e:  # e.g. SearchBudgetError: the secret did not come out within the budget
            measurements.append(Measurement(method, message=str(e), seconds=time.perf_counter() - t0))
            return
        measurements.append(Measurement(method, exposure=res.exposure, ci=res.ci, rank=res.rank,
                                        log_perplexity=res.log_perplexity, samples=res.samples,
                                        log2_space_size=res.to_json()["log2_space_size"],
                                        seconds=time.perf_counter() - t0))

    if template.space_size <= exact_limit:
        record("exact", lambda: exposure.exact(model, template, secret, limit=exact_limit, stop=stop))
    record("search", lambda: search_exposure(model, template, secret, max_nodes=search_nodes,
                                             batch_size=batch_size, stop=stop))
    record("skewnorm", lambda: exposure.skewnorm(model, template, secret, samples=samples, seed=seed, stop=stop))
    primary = next((m for method in EXPOSURE_ORDER for m in measurements
                    if m.method == method and m.exposure is not None), None)
    measurements = [replace(m, primary=True) if m is primary else m for m in measurements]

    res = shortest_path(model, template, top_k=1, max_nodes=extraction_nodes, batch_size=batch_size, stop=stop)
    fillers = [t["filler"] for t in res.top]
    extraction = Extraction(res.algorithm, found=res.found == secret,
                            secret_rank=fillers.index(secret) + 1 if secret in fillers else None,
                            nodes=res.nodes_expanded, model_steps=res.model_steps, seconds=res.seconds,
                            complete=res.complete, max_nodes=extraction_nodes)
    return measurements, extraction


def primary(measurements) -> Measurement | None:
    """The reported figure among ``measurements`` (None when every method failed)."""
    return next((m for m in measurements if m.primary), None)


@dataclass(frozen=True)
class ScanRow:
    """One distinct secret found in a corpus and what the model reveals of it (never the value itself)."""

    type: str
    label: str                  # "SSN", "AWS access key ID", ...
    last4: str
    times_present: int
    template: str
    exposure: float | None
    exposure_method: str | None
    rank: int | None
    extracted: bool
    note: str = ""              # why it could not be measured, when it could not
    value: str = field(default="", repr=False)  # only kept when the caller asks to reveal

    def to_json(self, reveal: bool = False) -> dict:
        d = {k: getattr(self, k) for k in ("type", "label", "last4", "times_present", "template", "exposure",
                                          "exposure_method", "rank", "extracted", "note")}
        if reveal:
            d["secret"] = self.value
        return d


def scan_corpus(model, text: str, *, kinds=None, samples: int = 5_000, exact_limit: int = 10 ** 6,
                search_nodes: int = 20_000, extraction_nodes: int = 20_000, seed: int = 0, reveal: bool = False,
                progress=None, stop=None) -> list[ScanRow]:
    """Find the secrets already in ``text`` (every kind of :data:`ssviz.scan.KINDS` by default) and measure each
    in ``model``: exposure and whether shortest-path search extracts it. Most exposed first."""
    from ssviz.scan import KINDS, redact, scan

    found = sorted(scan(text, tuple(kinds or KINDS)).values(), key=lambda s: (-s.count, s.type, s.value))
    rows = []
    for i, s in enumerate(found):
        if progress:
            progress(i, len(found))
        kind = KINDS[s.type]
        try:
            template = s.template()
            template.check_vocab(model.vocab)
            ms, x = measure_secret(model, template, s.value, exact_limit=exact_limit, search_nodes=search_nodes,
                                   extraction_nodes=extraction_nodes, samples=samples, seed=seed + i, stop=stop)
        except StoppedError:
            raise
        except SsvizError as e:  # e.g. the model cannot write the secret's context: say so, go on
            rows.append(ScanRow(s.type, kind.label, s.last4, s.count, "", None, None, None, False,
                                note=redact(str(e), [s.value]), value=s.value if reveal else ""))
            continue
        m = primary(ms)
        rows.append(ScanRow(s.type, kind.label, s.last4, s.count, template.text, m.exposure if m else None,
                            m.method if m else None, m.rank if m else None, x.found,
                            value=s.value if reveal else ""))
    if progress:
        progress(len(found), len(found))
    return sorted(rows, key=lambda r: (r.exposure is None, -(r.exposure or 0.0)))
