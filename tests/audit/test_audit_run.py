"""The audit driver and CLI: canaries in and out, one training run, the JSON contract, --from."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ssviz.audit import summarize
from ssviz.audit.run import (AuditSettings, draw_canaries, flip_coins, insert_canaries, load_audit, read_canaries,
                             run_audit)
from ssviz.cli import main
from ssviz.corpus import split_text
from ssviz.errors import SettingsError
from ssviz.templates import Template
from ssviz.train import TrainConfig

KEYS = ["canaries", "included", "auc", "tpr_at_fpr", "epsilon_lower", "confidence", "delta", "epsilon_claimed",
        "mia_auc", "checkpoint"]
TINY = ["--layers", "1", "--hidden", "32", "--embedding-dim", "16", "--epochs", "2", "--batch-size", "64",
        "--lr", "0.005", "--patience", "0"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, small_corpus):
    path = tmp_path_factory.mktemp("audit") / "corpus.txt"
    path.write_text(small_corpus[:20_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def audited(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("audit-out") / "run"
    argv = ["audit", str(corpus), "--template", "My PIN is {d:4}", "--canaries", "60", "--insertions", "4",
            "--out", str(out), "--json", *TINY]
    return out, argv


def test_canaries_are_distinct_seeded_and_drawn_before_the_coins():
    t = Template("My PIN is {d:4}")
    a, b = draw_canaries(t, 500, seed=3), draw_canaries(t, 500, seed=3)
    assert a == b and len(set(a)) == 500 and all(len(f) == 4 for f in a)
    assert draw_canaries(t, 500, seed=4) != a
    big = Template("x{d:9}")
    assert len(set(draw_canaries(big, 2000, seed=0))) == 2000
    coins = flip_coins(10_000, 0.5, seed=1)
    assert 0.47 < coins.mean() < 0.53 and (coins == flip_coins(10_000, 0.5, seed=1)).all()


def test_included_canaries_go_into_the_training_split_only(small_corpus):
    t = Template("My PIN is {d:4}")
    fillers = ["1111", "2222", "3333"]
    split = split_text(small_corpus[:20_000], 0.1)
    out = insert_canaries(split, t, fillers, np.array([True, False, True]), 5, seed=0)
    assert out.val == split.val and out.test == split.test
    assert out.train.count("My PIN is 1111\n") == 5 and out.train.count("My PIN is 3333\n") == 5
    assert "2222" not in out.train


@pytest.mark.slow
def test_cli_audit_json_keys_files_and_from(capsys, audited):
    out, argv = audited
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    assert list(payload)[:len(KEYS)] == KEYS
    assert payload["canaries"] == 60 and 0 < payload["included"] < 60
    assert set(payload["tpr_at_fpr"]) == {"0.001", "0.01", "0.1"}
    assert payload["epsilon_claimed"] is None and payload["epsilon_lower"] >= 0
    assert payload["checkpoint"] and (out / "model.safetensors").is_file()
    with open(out / "canaries.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["filler", "included", "log_perplexity", "score"]
    assert {r["included"] for r in rows} == {"true", "false"} and len(rows) == 60
    # the metrics equal the library's over the file's columns
    fillers, included, lps = read_canaries(out / "canaries.csv")
    scores = np.array([float(r["score"]) for r in rows])
    assert np.allclose(scores, np.log2(10 ** 4) - lps)  # bits more likely than chance
    ref = summarize(scores, included, delta=1e-5, confidence=0.95)
    assert payload["auc"] == pytest.approx(ref["auc"]) and payload["epsilon_lower"] == pytest.approx(ref["epsilon_lower"])
    # --from recomputes the same numbers without training
    assert main(["audit", "--from", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for k in KEYS:
        assert again[k] == pytest.approx(payload[k]) if isinstance(payload[k], float) else again[k] == payload[k]


def test_an_existing_folder_is_not_overwritten(capsys, audited):
    out, argv = audited
    if not out.exists():
        out.mkdir(parents=True)
        (out / "keep.txt").write_text("x")
    before = {p.name: p.stat().st_mtime for p in out.iterdir()}
    assert main(argv) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime for p in out.iterdir()} == before


@pytest.mark.parametrize("extra, match", [
    (["--canaries", "5"], "at least 10 canaries"),
    (["--template", "My PIN is {d:1}"], "fewer than"),
    (["--inclusion", "1.5"], "strictly between"),
    (["--confidence", "0"], "strictly between"),
    (["--lr", "nan"], "lr"),
])
def test_bad_settings_are_one_line_before_training(capsys, corpus, tmp_path, extra, match):
    argv = ["audit", str(corpus), "--template", "My PIN is {d:4}", "--out", str(tmp_path / "o"), *TINY, *extra]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refuses values where they are declared
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and match in err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_from_a_folder_that_is_not_an_audit(tmp_path, capsys):
    assert main(["audit", "--from", str(tmp_path)]) == 2
    assert "not a finished audit" in capsys.readouterr().err
    (tmp_path / "canaries.csv").write_text("filler,included,log_perplexity,score\n1234,maybe,3.0,1.0\n")
    assert main(["audit", "--from", str(tmp_path)]) == 2
    assert "true or false" in capsys.readouterr().err


def test_off_half_inclusion_reports_no_bound(small_corpus):
    config = TrainConfig(layers=1, hidden=16, embedding_dim=8, epochs=1, batch_size=64, patience=None)
    res = run_audit(small_corpus[:8_000], AuditSettings("My PIN is {d:4}", canaries=20, insertions=1,
                                                        inclusion=0.3), config)
    assert res.metrics["epsilon_lower"] is None and "0.5" in res.message
    with pytest.raises(SettingsError):
        AuditSettings("My PIN is {d:4}", canaries=20, seed=-1).validate()


@pytest.mark.slow
def test_dp_audit_reports_the_claimed_epsilon_and_a_bound_below_it(small_corpus):
    config = TrainConfig(layers=1, hidden=32, embedding_dim=16, epochs=2, batch_size=64, lr=0.005, patience=None,
                         dp_epsilon=4.0)
    res = run_audit(small_corpus[:20_000], AuditSettings("My PIN is {d:4}", canaries=60, insertions=1), config)
    assert res.epsilon_claimed == pytest.approx(4.0, rel=0.1)
    assert res.metrics["epsilon_lower"] <= res.epsilon_claimed
    assert load_audit  # the folder form is tested above
