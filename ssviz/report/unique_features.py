"""The report's optional "Unique features" section: a unique-features run (``ssviz.unique_features.run.load``)
as a table per seed and the controls' histogram with the unique feature marked."""

from __future__ import annotations


def section(doc: dict | None, *, escape, number, table, figure) -> str:
    """HTML of the section, or "" when the report carries no unique-features run; the page's own helpers
    (escaping, numbers, tables, figures) are handed in by :mod:`ssviz.report.html`, which imports this."""
    if not doc or not doc.get("results"):
        return ""
    from ssviz.plots.unique_features import control_histogram, seed_spread
    _e, _num, _table, _figure = escape, number, table, figure

    s = doc.get("summary") or {}
    settings = doc.get("settings") or {}
    feature = settings.get("feature") if doc.get("kind") == "text" else "a pattern in one training image"
    rows = [[r["seed"], _num(r["m2"], 4), f"{r['rank']} of {len(r['controls']) + 1}",
             _num(r.get("p_value"), 3) if r.get("p_value") is not None else "–"] for r in doc["results"]]
    first = doc["results"][0]
    text = (f"Does the model react to {feature} more than to random features of its shape? The unique feature ranks "
            f"first among its controls in {s.get('uf_top', 0)} of {s.get('seeds', len(rows))} seed(s). M2 is the "
            "mean KL divergence between the outputs without and with the feature over out-of-distribution inputs, "
            "minus the same with a fresh random feature (Hartley and Tsaftaris, 2022).")
    parts = [_table(["seed", "M2 (nats)", "rank", "p (class test)"], rows),
             _figure(control_histogram(first["controls"], first["m2"]), "unique-features-controls")]
    if len(doc["results"]) > 1:
        parts.append(_figure(seed_spread(doc["results"]), "unique-features-seeds"))
    return f'<section id="unique-features"><h2>Unique features</h2><p>{_e(text)}</p>' + "".join(parts) + "</section>"
