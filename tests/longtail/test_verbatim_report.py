"""The report's verbatim section: the summary's rates on the page, its figures, bad summaries refused."""

from __future__ import annotations

import json

import pytest

from ssviz.errors import SsvizError
from ssviz.longtail.verbatim import save, verbatim
from ssviz.report import ModelSummary, Report, render
from ssviz.report.verbatim import read_summary
from tests.longtail.test_verbatim import CycleModel, cycle_corpus


@pytest.mark.slow
def test_section_shows_the_rates(tmp_path):
    res = verbatim(CycleModel(0.9), cycle_corpus(), prefix=5, suffix=10, prefixes=[2, 5])
    save(res, tmp_path)
    summary = read_summary(tmp_path)
    page = render(Report(ModelSummary("m", {}, 0), [], scan=[], verbatim=summary, created="t"))
    assert 'id="verbatim"' in page and "100.0%" in page
    for name in ("verbatim-duplicates", "verbatim-prefix", "verbatim-samples"):
        assert f'data-figure="{name}"' in page
    assert "quick brown fox" not in page  # rates only: no training line is quoted
    assert 'id="verbatim"' not in render(Report(ModelSummary("m", {}, 0), [], scan=[], created="t"))


def test_bad_summaries_are_one_line_errors(tmp_path):
    with pytest.raises(SsvizError, match="not found"):
        read_summary(tmp_path / "none.json")
    (tmp_path / "x.json").write_text(json.dumps({"rates": 1}))
    with pytest.raises(SsvizError, match="not a verbatim summary"):
        read_summary(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(SsvizError, match="not a verbatim summary"):
        read_summary(tmp_path / "y.json")
    (tmp_path / "z.json").write_text(json.dumps({"by_duplicates": [{"duplicates": 1, "rate": "<script>"}]}))
    with pytest.raises(SsvizError, match="malformed"):
        read_summary(tmp_path / "z.json")
    (tmp_path / "w.json").write_text(json.dumps({"by_duplicates": [], "prefix": "<b>"}))
    with pytest.raises(SsvizError, match="prefix is not a number"):
        read_summary(tmp_path / "w.json")


@pytest.mark.slow
def test_report_command_includes_a_verbatim_folder(tmp_path, tiny_model, capsys):
    from ssviz.cli import main
    ckpt = tiny_model.save(tmp_path / "m.safetensors")
    save(verbatim(CycleModel(0.9), cycle_corpus(), prefix=5, suffix=10), tmp_path / "v")
    out = tmp_path / "r.html"
    base = ["report", "--checkpoint", str(ckpt), "--template", "pin {d:2}", "--secret", "42", "--method", "exact",
            "--max-nodes", "200", "--out", str(out)]
    assert main([*base, "--verbatim", str(tmp_path / "v")]) == 0
    assert 'data-figure="verbatim-duplicates"' in out.read_text(encoding="utf-8")
    assert main([*base, "--verbatim", str(tmp_path / "missing")]) == 2
    assert "verbatim summary not found" in capsys.readouterr().err
