"""The unique-features command: its files and JSON keys exactly, a saved classifier measured again, one-line errors,
and the text score on tiny language models trained with and without a name."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ssviz.cli import main
from ssviz.unique_features.run import CSV_COLUMNS, PER_INPUT_CSV, RESULTS_JSON, load


def run_json(capsys, *argv) -> dict:
    assert main(["unique-features", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_image_command_writes_per_input_rows_and_results_keys(tmp_path, capsys):
    out = tmp_path / "uf"
    doc = run_json(capsys, "image", "--seeds", "2", "--controls", "4", "--ood", "10", "--epochs", "2",
                   "--no-early-stopping", "--out", str(out))
    with open(out / PER_INPUT_CSV, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS == ("seed", "feature", "input", "kl_feature", "kl_random")
    assert len(rows) == 1 + 2 * 5 * 10
    assert {r[1] for r in rows[1:]} == {"uf", *(f"control-{i}" for i in range(4))}
    results = doc["results"]
    assert [r["seed"] for r in results] == [0, 1]
    for r in results:
        assert {"seed", "m2", "controls", "rank", "p_value"} <= set(r) and len(r["controls"]) == 4
        uf = [(float(x[3]), float(x[4])) for x in rows[1:] if x[0] == str(r["seed"]) and x[1] == "uf"]
        assert r["m2"] == pytest.approx(np.mean([a for a, _ in uf]) - np.mean([b for _, b in uf]))
        assert r["rank"] == 1 + sum(c >= r["m2"] for c in r["controls"])
    again = load(out)
    assert [r["m2"] for r in again["results"]] == pytest.approx([r["m2"] for r in results])
    saved = out / "classifiers" / "seed-0.safetensors"
    other = run_json(capsys, "image", "--classifier", str(saved), "--controls", "4", "--ood", "10",
                     "--out", str(tmp_path / "again"))
    assert other["results"][0]["m2"] == pytest.approx(results[0]["m2"])  # the same classifier, inputs and draws


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, tiny_model):
    assert main(["unique-features", "image", "--data", str(tmp_path / "no.npz"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    (tmp_path / "bad.npz").write_bytes(b"junk")
    assert main(["unique-features", "image", "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    ckpt = tmp_path / "m.safetensors"
    tiny_model.save(ckpt)
    assert main(["unique-features", "text", "--checkpoint", str(ckpt), "--feature", "Ωmega", "--controls", "3",
                 "--out", str(tmp_path / "t")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_report_section_shows_the_run():
    from ssviz.report.html import _e, _figure, _num, _table
    from ssviz.report.unique_features import section as plain
    section = lambda d: plain(d, escape=_e, number=_num, table=_table, figure=_figure)  # noqa: E731
    doc = {"kind": "image", "settings": {}, "summary": {"uf_top": 1, "seeds": 1},
           "results": [{"seed": 0, "m2": 0.5, "controls": [0.0, 0.1], "rank": 1, "p_value": 0.01}]}
    html = section(doc)
    assert 'id="unique-features"' in html and "1 of 3" in html and "plotly" in html.lower()
    assert section(None) == ""


def test_text_command_measures_a_checkpoint_on_given_contexts(tmp_path, capsys, tiny_model):
    ckpt = tmp_path / "m.safetensors"
    tiny_model.save(ckpt)
    contexts = tmp_path / "contexts.txt"
    contexts.write_text("the cat sat on the mat and then it slept\nshort line\n"
                        "a dog ran to the park and back home again\n", encoding="utf-8")
    doc = run_json(capsys, "text", "--checkpoint", str(ckpt), "--feature", "Mia", "--contexts", str(contexts),
                   "--controls", "4", "--next-units", "2", "--out", str(tmp_path / "t"))
    r = doc["results"][0]
    assert {"seed", "m2", "controls", "rank"} <= set(r) and len(r["controls"]) == 4 and r["contexts"] == 2
    with open(tmp_path / "t" / PER_INPUT_CSV, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 1 + 5 * 2
    assert all(s[0] in "MNPSIY" and s[1:] != "ia" or s[1:].islower() for s in r["control_strings"])
    assert load(tmp_path / "t")["results"][0]["rank"] == r["rank"]
