"""Audit folders edited or damaged by hand: every field read back is checked, one line naming it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssviz.audit.metrics import AuditError
from ssviz.audit.run import AUDIT_JSON, CANARIES_CSV, AuditSettings, load_audit
from ssviz.cli import main
from ssviz.errors import SsvizError

TEMPLATE = "My PIN is {d:4}"


def _folder(tmp_path, settings=None, results=None, rows=None, bom: bool = False):
    rng = np.random.default_rng(0)
    if rows is None:
        rows = [f"{i:04d},{'true' if i % 2 else 'false'},{20.0 - 8 * (i % 2) + rng.random():.3f},0.5"
                for i in range(200)]
    text = "filler,included,log_perplexity,score\n" + "\n".join(rows) + "\n"
    (tmp_path / CANARIES_CSV).write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    doc = {"settings": {"template": TEMPLATE, "canaries": 200, "insertions": 8, "inclusion": 0.5, "delta": 1e-5,
                        "confidence": 0.95, "seed": 0, **(settings or {})},
           "results": {"epsilon_claimed": 2.0, "mia_auc": 0.6, "insertions": 8, "inclusion": 0.5,
                       "template": TEMPLATE, "seed": 0, "message": "", **(results or {})}}
    (tmp_path / AUDIT_JSON).write_text(json.dumps(doc))
    return tmp_path


def test_an_honest_folder_reads_back(tmp_path):
    res = load_audit(_folder(tmp_path))
    assert res["epsilon_lower"] is not None and res["epsilon_lower"] > 0 and res["epsilon_claimed"] == 2.0


def test_a_csv_saved_by_excel_with_a_byte_order_mark_reads_back(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = load_audit(_folder(tmp_path / "a"))
    marked = load_audit(_folder(tmp_path / "b", bom=True))
    assert marked["epsilon_lower"] == plain["epsilon_lower"] and marked["auc"] == plain["auc"]


@pytest.mark.parametrize("section, field, value", [
    ("settings", "confidence", 1e-9), ("settings", "confidence", 0.3), ("settings", "confidence", 1.0),
    ("settings", "confidence", "0.95"), ("settings", "inclusion", "0.5"), ("settings", "inclusion", 1.5),
    ("settings", "inclusion", True), ("settings", "delta", -0.1), ("settings", "delta", "1e-5"),
    ("settings", "seed", 1.5), ("settings", "insertions", 0), ("settings", "template", 42),
    ("results", "epsilon_claimed", -1.0), ("results", "epsilon_claimed", 1e300), ("results", "epsilon_claimed", "2"),
    ("results", "mia_auc", 1.7), ("results", "mia_auc", "high"), ("results", "inclusion", "0.5"),
    ("results", "epsilon_claimed_per_canary", -3), ("results", "message", ["x"]),
])
def test_an_impossible_field_is_one_line_naming_it(tmp_path, section, field, value):
    folder = _folder(tmp_path, **{section: {field: value}})
    with pytest.raises(AuditError, match=rf"{section}\.{field}") as info:
        load_audit(folder)
    assert str(folder / AUDIT_JSON) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("doc", [{"settings": [1, 2]}, {"results": "none"}, {"settings": {"template": "My {d:"}}])
def test_sections_of_the_wrong_shape_are_one_line(tmp_path, doc):
    folder = _folder(tmp_path)
    (folder / AUDIT_JSON).write_text(json.dumps(doc))
    with pytest.raises(AuditError, match="audit.json"):
        load_audit(folder)


@pytest.mark.parametrize("row, match", [
    ("0001,true", "missing field"), ("0001", "missing field"), ("0001,true,3.0,0.5,extra", "more fields"),
    ("0001,true,nan,0.5", "finite"), ("0001,true,inf,0.5", "finite"), ("0001,true,-4,0.5", "finite"),
    ("0001,yes,3.0,0.5", "true or false"),
])
def test_canary_rows_with_missing_or_impossible_fields_are_one_line(tmp_path, row, match):
    rows = [f"{i:04d},{'true' if i % 2 else 'false'},{10.0 + i % 7},0.5" for i in range(30)] + [row]
    folder = _folder(tmp_path, rows=rows)
    with pytest.raises(AuditError, match=match) as info:
        load_audit(folder)
    assert "line 32" in str(info.value)


@pytest.mark.parametrize("flag, value", [("--confidence", "0.2"), ("--delta", "1.5")])
def test_cli_overrides_read_back_are_checked(tmp_path, capsys, flag, value):
    folder = _folder(tmp_path)
    try:
        code = main(["audit", "--from", str(folder), flag, value])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and flag.lstrip("-") in err and "Traceback" not in err


def test_cli_prints_one_line_for_a_string_inclusion(tmp_path, capsys):
    folder = _folder(tmp_path, settings={"inclusion": "0.5"})
    assert main(["audit", "--from", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "settings.inclusion" in err and len(err.splitlines()) == 1


def test_settings_below_even_odds_are_refused_before_training():
    with pytest.raises(SsvizError, match="confidence"):
        AuditSettings(TEMPLATE, confidence=1e-9).validate()
    with pytest.raises(SsvizError, match="delta"):
        AuditSettings(TEMPLATE, delta=float("nan")).validate()
