"""Repeated audits over seeds: one folder per seed, the spread, resume, and the executor's results equal the
ones made here."""

from __future__ import annotations

import json

import pytest

from ssviz.audit.run import AuditSettings, load_audit, run_audit
from ssviz.audit.seeds import SUMMARY_JSON, run_audits, seed_dir, spread
from ssviz.cli import main
from ssviz.errors import SettingsError
from ssviz.train import TrainConfig

CONFIG = TrainConfig(layers=1, hidden=16, embedding_dim=8, epochs=1, batch_size=64, lr=0.01, patience=None)
SETTINGS = AuditSettings("My PIN is {d:3}", canaries=20, insertions=2, seed=3)
SAME = ("canaries", "included", "auc", "tpr_at_fpr", "epsilon_lower", "mia_auc", "seed", "template")


def test_spread_is_over_the_seeds_that_have_a_number():
    s = spread([{"epsilon_lower": 1.0, "auc": 0.5}, {"epsilon_lower": 3.0, "auc": None}, {"epsilon_lower": 2.0}])
    assert s["epsilon_lower"] == {"n": 3, "mean": 2.0, "std": 1.0, "min": 1.0, "median": 2.0, "max": 3.0}
    assert s["auc"]["n"] == 1 and s["auc"]["std"] is None and s["mia_auc"] == {"n": 0}


def test_seeds_must_be_a_whole_number(tmp_path):
    with pytest.raises(SettingsError, match="seeds"):
        run_audits("x" * 100, SETTINGS, CONFIG, 0, tmp_path)


@pytest.mark.slow
def test_each_seed_is_the_single_audit_of_that_seed_and_a_rerun_reuses_them(small_corpus, tmp_path):
    text = small_corpus[:6_000]
    seen = []
    summary = run_audits(text, SETTINGS, CONFIG, 2, tmp_path / "out", progress=lambda d, n: seen.append((d, n)))
    assert (summary.seeds, summary.computed, summary.reused, summary.stopped) == ([3, 4], 2, 0, False)
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    single = run_audit(text, AuditSettings(**{**SETTINGS.__dict__, "seed": 4}), CONFIG.__class__(
        **{**CONFIG.__dict__, "seed": 4})).to_json()
    assert {k: summary.results[1][k] for k in SAME} == {k: single[k] for k in SAME}
    assert summary.results[1]["checkpoint"] == str(seed_dir(tmp_path / "out", 4) / "model.safetensors")
    assert json.loads((tmp_path / "out" / SUMMARY_JSON).read_text())["spread"]["auc"]["n"] == 2
    again = run_audits(text, SETTINGS, CONFIG, 3, tmp_path / "out")
    assert (again.computed, again.reused, [r["seed"] for r in again.results]) == (1, 2, [3, 4, 5])
    assert not list((tmp_path / "out").glob(".seed-*"))


@pytest.mark.slow
def test_seeds_on_an_executor_equal_the_seeds_here(small_corpus, tmp_path):
    from ssviz.executor import LocalExecutor
    text = small_corpus[:6_000]
    here = run_audits(text, SETTINGS, CONFIG, 2, tmp_path / "here")
    with LocalExecutor(2) as ex:
        there = run_audits(text, SETTINGS, CONFIG, 2, tmp_path / "there", executor=ex)
    assert there.computed == 2
    for a, b in zip(here.results, there.results):
        assert {k: a[k] for k in SAME} == {k: b[k] for k in SAME}
    for s in (3, 4):
        assert (seed_dir(tmp_path / "here", s) / "canaries.csv").read_bytes() == \
            (seed_dir(tmp_path / "there", s) / "canaries.csv").read_bytes()
        assert load_audit(seed_dir(tmp_path / "there", s))["checkpoint"].startswith(str(tmp_path / "there"))


@pytest.mark.slow
def test_cli_seeds_json_and_resume(small_corpus, tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_corpus[:6_000], encoding="utf-8")
    argv = ["audit", str(corpus), "--template", "My PIN is {d:3}", "--canaries", "20", "--insertions", "2",
            "--out", str(tmp_path / "out"), "--seeds", "2", "--json", "--layers", "1", "--hidden", "16",
            "--embedding-dim", "8", "--epochs", "1", "--patience", "0"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert list(first) == ["out", "seeds", "computed", "reused", "stopped", "seconds", "results", "spread", "device",
                           "dtype"]
    assert first["seeds"] == [0, 1] and first["computed"] == 2 and len(first["results"]) == 2
    assert main(argv) == 0  # the same folder again: resumed, not refused
    assert json.loads(capsys.readouterr().out)["reused"] == 2
    single = list(argv)
    single[single.index("--seeds") + 1] = "1"
    assert main(single) == 2  # a single audit still refuses a used folder
    assert "not an empty folder" in capsys.readouterr().err
