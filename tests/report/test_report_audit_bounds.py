"""The report's audit section: both epsilon bounds and the intervals of the membership numbers."""

from __future__ import annotations

import html as htmllib

from ssviz.audit import demo
from ssviz.audit.run import load_audit
from ssviz.report.html import Report, _audit


def test_the_audit_section_shows_both_bounds_and_the_intervals():
    a = load_audit(demo.BUNDLED_DIR / "plain")
    out = htmllib.unescape(_audit(Report(model=None, findings=[], audit=a)))
    assert f"epsilon lower bound (Steinke et al.)</td><td>{a['epsilon_lower']:.2f}" in out
    assert f"epsilon lower bound (f-DP)</td><td>{a['epsilon_lower_fdp']:.2f}" in out
    lo, hi = a["auc_ci"]
    assert f"{a['auc']:.3f} [{lo:.3f}, {hi:.3f}]" in out
    t, (tlo, thi) = a["tpr_at_fpr"]["0.01"], a["tpr_ci"]["0.01"]
    assert f"{t:.3f} [{tlo:.3f}, {thi:.3f}]" in out
    assert "canary_kind random" in out
    assert "audited, f-DP (Gaussian curve)" in out  # the third bar of the epsilon figure
