"""Results as strict JSON: NaN and infinities become null (JSON has neither; other tools parse ours)."""

from __future__ import annotations

import math


def finite_json(o):
    """``o`` with every non-finite float (numpy scalars included) replaced by None, containers copied."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite_json(v) for v in o]
    if hasattr(o, "item") and getattr(o, "ndim", 1) == 0:  # numpy scalars
        return finite_json(o.item())
    return o
