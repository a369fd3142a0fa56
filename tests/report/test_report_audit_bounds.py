"""The report's audit section: both epsilon bounds and the intervals of the membership numbers."""

from __future__ import annotations

import html as htmllib

from ssviz.audit import demo
from ssviz.audit.run import load_audit
from ssviz.report.html import Report, _audit


def test_the_audit_section_shows_both_bounds_and_the_intervals():
    a = {k: v for k, v in load_audit(demo.BUNDLED_DIR / "plain").items() if k not in ("scores", "included_mask")}
    out = htmllib.unescape(_audit(Report(model=None, findings=[], audit=a)))  # the numbers, without figures
    assert f"epsilon lower bound (Steinke et al.)</td><td>{a['epsilon_lower']:.2f}" in out
    assert f"epsilon lower bound (f-DP)</td><td>{a['epsilon_lower_fdp']:.2f}" in out
    lo, hi = a["auc_ci"]
    assert f"{a['auc']:.3f} [{lo:.3f}, {hi:.3f}]" in out
    t, (tlo, thi) = a["tpr_at_fpr"]["0.01"], a["tpr_ci"]["0.01"]
    assert f"{t:.3f} [{tlo:.3f}, {thi:.3f}]" in out
    assert "canary_kind random" in out


def test_the_epsilon_figure_has_the_fdp_bar_beside_the_steinke_bar():
    from ssviz.plots.audit import epsilon_bars
    fig = epsilon_bars([{"label": "plain", "epsilon_lower": 2.1, "epsilon_claimed": None, "epsilon_lower_fdp": 3.1},
                        {"label": "DP", "epsilon_lower": 0.5, "epsilon_claimed": 8.0, "epsilon_lower_fdp": None}])
    steinke, fdp, claimed = fig.data
    assert steinke.name == "audited, Steinke et al." and fdp.name == "audited, f-DP (Gaussian curve)"
    assert list(fdp.y) == [3.1, 0] and list(fdp.text) == ["≥ 3.10", "–"] and list(claimed.y) == [0, 8.0]
