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
from dataclasses import replace

from ssviz.errors import SsvizError, StoppedError
from ssviz.exposure.methods import measure
from ssviz.records import Extraction, Measurement

EXPOSURE_ORDER = ("exact", "search", "skewnorm")


def measure_secret(model, template, secret: str, *, exact_limit: int = 10 ** 6, search_nodes: int = 20_000,
                   extraction_nodes: int = 20_000, samples: int = 5_000, batch_size: int = 64, seed: int = 0,
                   stop=None) -> tuple[list[Measurement], Extraction]:
    """``(measurements, extraction)`` of ``secret``; a method that fails records its message instead."""
    from ssviz.extraction import shortest_path

    secret = template.normalize(secret)  # searches report bare fillers; compare like with like
    measurements = []
    for method in EXPOSURE_ORDER:
        if method == "exact" and template.space_size > exact_limit:
            continue
        t0 = time.perf_counter()
        try:
            res = measure(model, template, secret, method, limit=exact_limit, max_nodes=search_nodes,
                          batch_size=batch_size, samples=samples, seed=seed, stop=stop)
        except StoppedError:
            raise
        except SsvizError as e:  # e.g. SearchBudgetError: the secret did not come out within the budget
            measurements.append(Measurement(method, message=str(e), seconds=time.perf_counter() - t0))
            continue
        measurements.append(Measurement(method, exposure=res.exposure, ci=res.ci, rank=res.rank,
                                        log_perplexity=res.log_perplexity, samples=res.samples,
                                        log2_space_size=res.to_json()["log2_space_size"],
                                        seconds=time.perf_counter() - t0))
    first = next((m for method in EXPOSURE_ORDER for m in measurements
                  if m.method == method and m.exposure is not None), None)
    measurements = [replace(m, primary=True) if m is first else m for m in measurements]

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
