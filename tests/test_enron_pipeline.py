"""The per-user study end to end on tiny synthetic mailboxes: stored exposures agree with the
library, parallel workers, cached models, resume after a kill, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from ssviz import exposure
from ssviz.cli import main as cli_main
from ssviz.enron.maildir import build_corpora
from ssviz.enron.pipeline import StudySettings, _sha, checkpoint_path, run_study
from ssviz.enron.synthetic import generate_maildir
from ssviz.errors import SsvizError
from ssviz.extraction import SearchBudgetError, search_exposure, shortest_path
from ssviz.models import load_checkpoint
from ssviz.store import Store
from ssviz.templates import Template
from ssviz.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
TINY = StudySettings(train=TrainConfig(layers=1, hidden=24, embedding_dim=8, epochs=2, batch_size=64, lr=0.01,
                                       seed=0, patience=None),
                     exposure_samples=200, search_nodes=200, extraction_nodes=200)
TRAIN_ARGS = ["--layers", "1", "--hidden", "24", "--embedding-dim", "8", "--epochs", "2", "--lr", "0.01",
              "--patience", "0", "--exposure-samples", "200", "--search-nodes", "200", "--extraction-nodes", "200"]




@pytest.fixture(scope="module")
def mail(tmp_path_factory):
    out = tmp_path_factory.mktemp("mail")
    truth = generate_maildir(out, users=3, messages=40, seed=2, times=(2, 12, 30))
    return out, truth


def test_study_rows_agree_with_the_library(mail, tmp_path):
    source, truth = mail
    db, cache = tmp_path / "r.duckdb", tmp_path / "cache"
    rows = run_study(source, db, settings=TINY, cache_dir=cache, workers=2)
    planted = {(s["user"], s["type"], s["value"][-4:]): s["times"] for s in truth["secrets"]}
    assert {(r["user"], r["type"], r["last4"]): r["times_present"] for r in rows} == planted
    store = Store(db, read_only=True)
    secrets = store.table("secrets").set_index("secret_hash")
    meas = store.table("measurements")
    extr = store.table("extractions").set_index("secret_hash")
    corpora = build_corpora(source, tmp_path / "corpora")
    for s in truth["secrets"]:
        text = corpora[s["user"]].text()
        model = load_checkpoint(checkpoint_path(cache, s["user"], _sha(text), asdict(TINY.train)))
        h = Store(db).secret_hash(s["type"], s["value"])
        template = Template(secrets.loc[h, "template"])
        index = sorted(((x["type"], -x["times"], x["value"]) for x in truth["secrets"] if x["user"] == s["user"]))
        index = index.index((s["type"], -s["times"], s["value"]))
        direct = exposure.skewnorm(model, template, s["value"], samples=TINY.exposure_samples,
                                   seed=TINY.train.seed + 1000 * index)
        mine = meas[(meas.secret_hash == h)].set_index("method")
        assert mine.loc["skewnorm", "exposure"] == pytest.approx(direct.exposure, rel=1e-9)
        assert mine.loc["skewnorm", "log_perplexity"] == pytest.approx(direct.log_perplexity, rel=1e-9)
        try:
            rank = search_exposure(model, template, s["value"], max_nodes=TINY.search_nodes).rank
        except SearchBudgetError:
            rank = None
        stored_rank = mine.loc["search", "rank"]
        assert (None if pd.isna(stored_rank) else int(stored_rank)) == rank
        found = shortest_path(model, template, max_nodes=TINY.extraction_nodes).found == s["value"]
        assert bool(extr.loc[h, "found"]) == found
    # a second run reuses the run, skips every stored user and trains nothing
    logs = []
    again = run_study(source, db, settings=TINY, cache_dir=cache, log=logs.append)
    assert any("3 already stored" in line for line in logs)
    assert [r["exposure"] for r in again] == [r["exposure"] for r in rows]


def test_cached_model_is_reused_for_a_new_store(mail, tmp_path):
    source, truth = mail
    cache = tmp_path / "cache"
    user = truth["users"][0]
    first = run_study(source, tmp_path / "a.duckdb", settings=TINY, cache_dir=cache, users=[user])
    logs = []
    second = run_study(source, tmp_path / "b.duckdb", settings=TINY, cache_dir=cache, users=[user], log=logs.append)
    assert any("cached model" in line for line in logs)
    assert [r["exposure"] for r in first] == [r["exposure"] for r in second]
    with pytest.raises(SsvizError, match="no sent mail"):
        run_study(source, tmp_path / "c.duckdb", settings=TINY, cache_dir=cache, users=["nobody-x"])


def test_a_user_that_cannot_be_studied_is_skipped_not_fatal(tmp_path):
    generate_maildir(tmp_path, users=1, messages=30, seed=6, times=(3,))
    tiny = tmp_path / "maildir" / "tiny-x" / "sent"
    tiny.mkdir(parents=True)
    (tiny / "1.").write_bytes(b"From: tiny@enron.com\nTo: a@enron.com\n\nSSN 219-09-9999")
    logs = []
    rows = run_study(tmp_path, tmp_path / "r.duckdb", settings=TINY, cache_dir=tmp_path / "cache", log=logs.append)
    assert any(line.startswith("tiny-x: skipped: corpus too short") for line in logs)
    assert {r["user"] for r in rows} == set(Store(tmp_path / "r.duckdb", read_only=True).table("users").user)
    assert "tiny-x" not in {r["user"] for r in rows} and len(rows) >= 1
    assert Store(tmp_path / "r.duckdb", read_only=True).table("runs").finished.isna().all()  # not complete


def test_killed_run_resumes_without_losing_finished_users(tmp_path):
    source = tmp_path / "mail"
    generate_maildir(source, users=3, messages=80, seed=4, times=(3, 9))
    db = tmp_path / "r.duckdb"
    cmd = [sys.executable, "-m", "ssviz", "enron", str(source), "--db", str(db), "--cache-dir",
           str(tmp_path / "cache"), *TRAIN_ARGS, "--epochs", "4", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = Store(db, read_only=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and len(store.table("users")) < 1:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    before = {t: store.table(t) for t in ("users", "secrets", "measurements", "extractions")}
    stored = set(before["users"].user)
    assert 1 <= len(stored) < 3, "the run should have been killed between users"
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(stored)} already stored" in done.stderr
    rows = json.loads(done.stdout)["secrets"]
    assert len({r["user"] for r in rows}) == 3
    assert all(set(r) == {"user", "type", "last4", "times_present", "exposure", "exposure_method", "extracted"}
               for r in rows)
    for table, old in before.items():
        new = store.table(table)
        new = new[new.user.isin(stored)].reset_index(drop=True)
        assert new.equals(old.reset_index(drop=True)), table  # finished users untouched, to the timestamp
    assert store.table("runs").finished.notna().all()


def test_cli_synth_show_export_and_errors(tmp_path, capsys):
    assert cli_main(["enron-synth", str(tmp_path / "m"), "--users", "2", "--messages", "12", "--times", "3",
                     "--json"]) == 0
    truth = json.loads(capsys.readouterr().out)
    assert len(truth["users"]) == 2 and (tmp_path / "m" / "ground_truth.json").exists()
    assert cli_main(["enron-show", "--db", str(tmp_path / "none.duckdb"), "--json"]) == 2  # a typo is not "empty"
    assert "results file not found" in capsys.readouterr().err
    assert cli_main(["enron-export", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "x.txt")]) == 2
    assert "csv or .parquet" in capsys.readouterr().err
    assert cli_main(["enron", str(tmp_path / "nope"), "--db", str(tmp_path / "r.duckdb")]) == 2
    assert "maildir not found" in capsys.readouterr().err
    assert cli_main(["enron-synth", str(tmp_path / "m2"), "--times", "0"]) == 2


@pytest.mark.slow
def test_two_maildirs_with_the_same_user_names_get_their_own_runs(tmp_path):
    """A run is keyed by settings and source: a second maildir whose users have the same names no longer
    resumes the first one's run (skipping its users or replacing their rows); the same mail moved elsewhere
    still resumes."""
    import random
    import shutil
    from ssviz.enron.synthetic import PlantedSecret, random_ccn, random_ssn

    rng = random.Random(11)
    plan = lambda: [PlantedSecret("user0", "ssn", random_ssn(rng), 3),  # noqa: E731
                    PlantedSecret("user1", "ccn", random_ccn(rng), 3)]
    a, b = tmp_path / "a", tmp_path / "b"
    truth_a = generate_maildir(a, users=2, messages=30, seed=9, plan=plan())
    truth_b = generate_maildir(b, users=2, messages=30, seed=9, plan=plan())
    assert truth_a["users"] == truth_b["users"]  # same names, different secrets
    planted = lambda truth: {(s["user"], s["value"][-4:]) for s in truth["secrets"]}  # noqa: E731
    db, cache = tmp_path / "r.duckdb", tmp_path / "cache"
    rows_a = run_study(a, db, settings=TINY, cache_dir=cache)
    logs = []
    rows_b = run_study(b, db, settings=TINY, cache_dir=cache, log=logs.append)
    assert any("2 user(s) with secrets, 0 already stored" in line for line in logs)
    (run_a,), (run_b,) = {r["run_id"] for r in rows_a}, {r["run_id"] for r in rows_b}
    assert run_a != run_b
    store = Store(db, read_only=True)
    assert {(r.user, r.last4) for r in store.rows(run_a)} == planted(truth_a)  # untouched by b
    assert {(r.user, r.last4) for r in store.rows(run_b)} == planted(truth_b)
    assert list(store.table("runs")["source"]) == [str(a), str(b)]
    moved = tmp_path / "moved"
    shutil.copytree(a, moved)
    logs = []
    again = run_study(moved, db, settings=TINY, cache_dir=cache, log=logs.append)
    assert any(f"run {run_a}: 2 user(s) with secrets, 2 already stored" in line for line in logs)
    assert [r["exposure"] for r in again] == [r["exposure"] for r in rows_a]
