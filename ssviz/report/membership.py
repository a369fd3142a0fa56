"""The report's membership section: every attack's AUC and TPR at 1% FPR with intervals, the blind
baseline beside them, the shift verdict in plain words, and the ROC. Built from a
:class:`ssviz.membership.run.MiaResult` (what ``python -m ssviz mia`` saved, or the page ran)."""

from __future__ import annotations

import html


def _interval(ci) -> str:
    return "n/a" if not ci else f"{ci[0]:.3f}–{ci[1]:.3f}"


def _rate(a: dict, f: str = "0.01") -> str:
    t = (a.get("tpr_at_fpr") or {}).get(f)
    return "n/a" if t is None else f"{t:.3f}"


def membership_section(res, table, figure) -> str:
    """``<section id="membership">`` for the report, or "" without a result. ``table(header, rows)`` and
    ``figure(fig, name)`` are the report's own builders (passed in: the report imports this module)."""
    if res is None:
        return ""
    from ssviz.membership.blind import shift_message
    from ssviz.membership.run import metrics_rows
    from ssviz.plots.membership import attack_rocs

    doc = res.to_json()
    rows = [[r["attack"], "n/a" if r["AUC"] is None else f"{r['AUC']:.3f}", r["AUC 95% interval"],
             "n/a" if r["TPR at 1% FPR"] is None else f"{r['TPR at 1% FPR']:.3f}", r["TPR at 1% 95% interval"],
             r["texts scored"]] for r in metrics_rows(doc)]
    curves, blind = res.rocs()
    cls = "warning" if doc["shift_warning"] else ""
    what = res.settings.get("description") or "the member and non-member texts given"
    return (f'<section id="membership"><h2>Membership inference</h2>'
            f"<p>{html.escape(what)}: {doc['members']:,} members, {doc['nonmembers']:,} non-members. Each attack "
            "scores every text (higher = more likely in the training data); a blind classifier that never sees the "
            "model is measured beside them. Intervals are 95% (AUC: bootstrap; TPR: Clopper-Pearson).</p>"
            f'<p class="{cls}"><strong>{html.escape(shift_message(doc["blind"], doc["attacks"]))}</strong></p>'
            + table(["attack", "AUC", "AUC interval", "TPR at 1% FPR", "TPR interval", "texts"], rows)
            + figure(attack_rocs(curves, blind), "membership-roc") + "</section>")
