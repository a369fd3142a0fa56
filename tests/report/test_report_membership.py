"""The report's optional membership section: the attacks' numbers with intervals, the blind baseline and the
verdict in plain words, from a saved result (the CLI's --membership)."""

from __future__ import annotations

import html as htmlmod
import json
import re

import pytest

from ssviz.cli import main
from ssviz.membership.blind import shift_message
from ssviz.membership.run import load_mia
from ssviz.models import save_checkpoint
from ssviz.report import Report, model_summary, render
from ssviz.report.html import _figure, _table
from ssviz.report.membership import membership_section
from ui.membership import DEMO_DIR


def test_the_section_shows_every_attack_and_the_blind_baseline():
    res = load_mia(DEMO_DIR)
    doc = res.to_json()
    section = membership_section(res, _table, _figure)
    text = htmlmod.unescape(section)
    assert section.startswith('<section id="membership">') and shift_message(doc["blind"], doc["attacks"]) in text
    for a in (*doc["attacks"].values(), doc["blind"]):
        lo, hi = a["auc_ci"]
        assert f"{a['auc']:.3f}" in text and f"{lo:.3f}–{hi:.3f}" in text
        assert f"{a['tpr_at_fpr']['0.01']:.3f}" in text
    assert 'data-figure="membership-roc"' in section
    assert membership_section(None, _table, _figure) == ""


@pytest.mark.slow
def test_the_report_command_includes_a_saved_result(tmp_path, tiny_model, capsys):
    ckpt = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    out = tmp_path / "r.html"
    assert main(["report", "--checkpoint", str(ckpt), "--template", "My PIN is {d:2}", "--secret", "12",
                 "--method", "exact", "--membership", str(DEMO_DIR), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.index('id="membership"') < page.index('id="methods"')
    data = json.loads(re.search(r'id="ssviz-data">(.*?)</script>', page, re.S).group(1))
    assert data["membership"]["best_attack"] == load_mia(DEMO_DIR).to_json()["best_attack"]
    plain = render(Report(model_summary(tiny_model), _findings(tiny_model)))
    assert 'id="membership"' not in plain


def _findings(model):
    from ssviz.report import measure
    from ssviz.templates import Template
    return measure(model, Template("My PIN is {d:2}"), ["12"], method="exact")
