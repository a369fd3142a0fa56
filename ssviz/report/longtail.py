"""The report's optional "long tail" section: which training examples a pool of models memorized.

:func:`longtail_summary` reads a counterfactual pool folder into plain numbers (texts redacted as
everywhere unless revealed); :func:`longtail_html` renders them with the Long tail page's figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TOP = 10


def longtail_summary(folder, reveal: bool = False) -> dict:
    """Models, examples, the most memorized examples and the highest-influence pairs of a pool folder,
    recomputed from its matrices; ``by_role`` when the folder names planted roles (``roles.json``)."""
    from ssviz.longtail.counterfactual import influence_pairs, load_pool, memorization_table, redact_text
    folder = Path(folder)
    pool = load_pool(folder)
    mem = memorization_table(pool)
    top = mem.sort_values("mem_accuracy", ascending=False, na_position="last").head(TOP)
    out = {"folder": folder.name, "models": int(len(pool.models)), "examples": int(len(pool.examples)),
           "mem_accuracy": mem["mem_accuracy"].to_numpy(float).tolist(),
           "novelty_bits": (-pool.out_log_likelihood()).tolist(), "frequency": pool.frequency.tolist(),
           "top": [{"example": int(r.example), "text": redact_text(r.text, reveal), "mem_accuracy": r.mem_accuracy,
                    "low": r.mem_accuracy_low, "high": r.mem_accuracy_high,
                    "mem_log_likelihood": r.mem_log_likelihood} for r in top.itertuples()],
           "pairs": [{**p, "train_text": redact_text(p["train_text"], reveal),
                      "validation_text": redact_text(p["validation_text"], reveal)}
                     for p in influence_pairs(pool, 5)[:5]],
           "by_role": None}
    roles_file = folder / "roles.json"
    if roles_file.is_file():
        roles = json.loads(roles_file.read_text(encoding="utf-8"))
        r = np.array([roles.get(str(int(e)), "ordinary") for e in pool.examples])
        values = mem["mem_accuracy"].to_numpy(float)
        out["by_role"] = {role: float(np.nanmean(values[r == role])) for role in sorted(set(r))
                          if np.isfinite(values[r == role]).any()}
    return out


def longtail_html(s: dict, *, figure, table, num) -> str:
    """The section's HTML, drawn with the report's own ``figure``, ``table`` and ``num`` helpers (passed in,
    so this module never imports the page it is part of)."""
    from html import escape

    from ssviz.plots.longtail import mem_histogram, mem_vs_novelty
    _figure, _table, _num = figure, table, num

    def _e(x) -> str:
        return escape(str(x), quote=True)
    texts = [""] * len(s["mem_accuracy"])
    parts = [f"<p>{s['models']} models, each trained on a random half of {s['examples']:,} training examples: an "
             "example is memorized when the models trained with it predict it better than those trained without "
             "it (per-unit accuracy, IN - OUT; Zhang et al.'s counterfactual memorization).</p>"]
    if s.get("by_role"):
        parts.append("<p>Mean memorization by planted role: " + ", ".join(
            f"{_e(k)} {_num(v, 3)}" for k, v in s["by_role"].items()) + ".</p>")
    parts.append(_figure(mem_histogram(s["mem_accuracy"]), "longtail-mem"))
    parts.append(_figure(mem_vs_novelty(s["mem_accuracy"], s["novelty_bits"], np.asarray(s["frequency"]), texts),
                         "longtail-novelty"))
    parts.append("<h3>Most memorized examples</h3>" + _table(
        ["example", "text", "mem (accuracy)", "95% interval", "mem (bits/unit)"],
        [[t["example"], t["text"], _num(t["mem_accuracy"], 3), f"{_num(t['low'], 3)} to {_num(t['high'], 3)}",
          _num(t["mem_log_likelihood"], 3)] for t in s["top"]]))
    if s["pairs"]:
        parts.append("<h3>Highest influence</h3>" + _table(
            ["training example", "validation example it helps most", "influence (accuracy)"],
            [[p["train_text"], p["validation_text"], _num(p["influence_accuracy"], 3)] for p in s["pairs"]]))
    return '<section id="longtail"><h2>The long tail</h2>' + "".join(parts) + "</section>"
