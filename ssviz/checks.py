"""Numbers handed to the library (log-perplexities, membership scores) checked once, with one clear error."""

from __future__ import annotations

from ssviz.errors import InvalidValueError, NonFiniteError, SsvizError


def finite_array(name: str, values, why: str, *, error: type[SsvizError] = NonFiniteError, flat: bool = False,
                 nonempty: bool = False):
    """``values`` as float64, or one clear ``error`` saying which are not finite numbers and ``why`` that matters.

    ``flat``: a 1-d list is required (a scalar is refused); otherwise a scalar counts as one value.
    """
    import numpy as np
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise error(f"{name} must be numbers") from None
    if flat and arr.ndim != 1:
        raise error(f"{name} must be a flat list of numbers (got shape {arr.shape})")
    arr = arr.reshape(-1) if arr.ndim == 0 else arr
    if nonempty and arr.size == 0:
        raise InvalidValueError(f"{name} is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise error(f"{name}: {int(bad.sum())} NaN or infinite value(s) (first at index "
                    f"{int(np.flatnonzero(bad)[0])}): {why}")
    return arr
