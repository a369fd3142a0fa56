"""Counterfactual memorization and influence: the estimator against direct computations (planted effects,
an exact leave-one-out retrained here), the pool folder recomputing its own numbers, resume after a kill."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssviz.corpus import Split
from ssviz.errors import SsvizError
from ssviz.longtail import estimators
from ssviz.longtail.counterfactual import (
    INCLUSION,
    MEMORIZATION,
    METRICS,
    inclusion_mask,
    joined,
    load_pool,
    model_path,
    run_pool,
    split_examples,
)
from ssviz.paths import SOURCE_ROOT
from ssviz.scoring import read_texts
from ssviz.train import TrainConfig, new_model, train

LN2 = math.log(2)
TINY = TrainConfig(layers=1, hidden=16, embedding_dim=8, epochs=2, batch_size=16, seq_len=10, lr=0.01, patience=0)
LINES = ["the cat sat on the mat", "a dog ran in the park", "zq7 vortex lamp 91 kx", "the cat ran on the mat",
         "a bird sat in the tree", "the dog sat on the log"]
VALIDATION = "the cat sat in the park\nzq7 vortex lamp 92 kx\n"


# --- the estimator, pure -----------------------------------------------------------------------------
def test_planted_effects_are_recovered_exactly_and_others_are_about_zero():
    rng = np.random.default_rng(0)
    m, n = 40, 30
    inc = inclusion_mask(m, n, 0.5, seed=1)
    effect = np.zeros(n)
    effect[:5] = [0.3, 0.1, 0.5, 0.05, 0.2]
    base = rng.uniform(0.2, 0.6, n)
    scores = base + inc * effect                     # planted: the score depends on inclusion only
    scores[:, 5:] += rng.normal(0, 0.02, (m, n - 5))  # ordinary examples: model noise, no inclusion effect
    est = estimators.memorization(inc, scores, bootstrap=400, seed=0)
    np.testing.assert_allclose(est.value[:5], effect[:5], atol=1e-12)
    np.testing.assert_allclose(est.se[:5], 0, atol=1e-12)
    assert np.abs(est.value[5:]).max() < 4 * np.nanmax(est.se[5:])
    inside = (est.low[5:] <= 0) & (0 <= est.high[5:])
    assert inside.mean() >= 0.8  # a 95% interval covers the true 0 for most ordinary examples
    # the Welch standard error, written out for one column
    j = 7
    a, b = scores[inc[:, j], j], scores[~inc[:, j], j]
    assert est.se[j] == pytest.approx(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    assert est.n_in[j] == len(a) and est.n_out[j] == len(b)


def test_influence_and_pairs_match_a_direct_difference():
    rng = np.random.default_rng(3)
    inc = inclusion_mask(12, 5, 0.5, seed=2)
    val = rng.normal(size=(12, 3))
    val[:, 1] += 0.7 * inc[:, 2]  # training example 2 helps validation example 1
    infl, se = estimators.influence(inc, val)
    for i in range(5):
        for k in range(3):
            assert infl[i, k] == pytest.approx(val[inc[:, i], k].mean() - val[~inc[:, i], k].mean())
            a, b = val[inc[:, i], k], val[~inc[:, i], k]
            assert se[i, k] == pytest.approx(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    pairs = estimators.top_pairs(infl, se, k=3)
    assert pairs[0][:2] == (2, 1)
    assert [p[2] for p in pairs] == sorted((p[2] for p in pairs), reverse=True)


def test_undefined_sides_give_nan_not_numbers():
    inc = np.array([[1, 0], [1, 1], [1, 0]], bool)
    est = estimators.memorization(inc, np.ones((3, 2)), bootstrap=50)
    assert math.isnan(est.value[0]) and math.isnan(est.low[0])  # never OUT
    assert est.value[1] == 0 and math.isnan(est.se[1])          # one OUT model: no spread to estimate


def test_subsets_are_seeded_sized_and_independent_of_the_pool_size():
    a, b = inclusion_mask(4, 20, 0.5, seed=5), inclusion_mask(9, 20, 0.5, seed=5)
    assert (a == b[:4]).all() and (a.sum(1) == 10).all()
    assert not (inclusion_mask(4, 20, 0.5, seed=6) == a).all()


def test_examples_are_numbered_by_their_place_in_the_file():
    assert split_examples("a\n\nb\n  \nc\n") == [(0, "a"), (2, "b"), (4, "c")]
    assert split_examples("p1 l1\np1 l2\n\n\np2\n", "paragraph") == [(0, "p1 l1\np1 l2"), (1, "p2")]


# --- a pool, trained ----------------------------------------------------------------------------------
def metric(model, text):
    r = read_texts(model, [text])[0]
    return float(np.mean(r.correct)), float(np.mean(r.logp)) / LN2


@pytest.mark.slow
def test_estimator_equals_a_direct_leave_one_out(tmp_path):
    """Two models: one on every example, one on every example but x. mem(x) and infl(x -> x') are then the
    leave-one-out differences, computed here by training the same two models directly."""
    corpus = "\n".join(LINES) + "\n"
    x = 2
    design = np.ones((2, len(LINES)), bool)
    design[1, x] = False
    run_pool(corpus, TINY, tmp_path, models=2, validation=VALIDATION, inclusion=design, bootstrap=0)
    mem = pd.read_csv(tmp_path / MEMORIZATION)
    held = VALIDATION
    base = new_model(TINY, Split(joined(LINES, "line"), held, held))
    direct = []
    for m, texts in enumerate((LINES, LINES[:x] + LINES[x + 1:])):
        split = Split(joined(texts, "line"), held, held)
        config = TrainConfig(**{**TINY.__dict__, "seed": TINY.seed + m})
        direct.append(train(split, config, model=new_model(config, split, like=base)).model)
    (a_in, l_in), (a_out, l_out) = metric(direct[0], LINES[x]), metric(direct[1], LINES[x])
    row = mem.set_index("example").loc[x]
    assert row["mem_accuracy"] == pytest.approx(a_in - a_out, abs=1e-9)
    assert row["mem_log_likelihood"] == pytest.approx(l_in - l_out, abs=1e-6)
    assert mem.drop(index=x)["mem_accuracy"].isna().all()  # every other example is never OUT
    pool = load_pool(tmp_path)
    infl, _ = estimators.influence(pool.included, pool.val_log_likelihood / LN2)
    v = VALIDATION.splitlines()[1]
    assert infl[x, 1] == pytest.approx(metric(direct[0], v)[1] - metric(direct[1], v)[1], abs=1e-6)


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pool")
    corpus = "\n".join(LINES * 2) + "\n"
    result = run_pool(corpus, TINY, out, models=4, validation=VALIDATION, bootstrap=200)
    return out, result


@pytest.mark.slow
def test_the_matrices_on_disk_recompute_the_reported_numbers(pool_dir):
    out, result = pool_dir
    inc = pd.read_parquet(out / INCLUSION)
    met = pd.read_parquet(out / METRICS)
    assert list(inc.columns) == ["model", "example", "included"]
    assert list(met.columns) == ["model", "example", "split", "accuracy", "log_likelihood"]
    assert set(met["split"]) == {"train", "validation"} and len(inc) == 4 * 12
    mem = pd.read_csv(out / MEMORIZATION)
    assert list(mem.columns) == ["example", "text", "mem_accuracy", "mem_accuracy_se", "mem_accuracy_low",
                                 "mem_accuracy_high", "mem_log_likelihood", "mem_log_likelihood_se",
                                 "mem_log_likelihood_low", "mem_log_likelihood_high"]
    both = met[met["split"] == "train"].merge(inc, on=["model", "example"])
    for ex, g in both.groupby("example"):
        row = mem.set_index("example").loc[ex]
        if g["included"].all() or not g["included"].any():
            assert math.isnan(row["mem_accuracy"])
            continue
        acc = g[g.included]["accuracy"].mean() - g[~g.included]["accuracy"].mean()
        ll = (g[g.included]["log_likelihood"].mean() - g[~g.included]["log_likelihood"].mean()) / LN2
        assert row["mem_accuracy"] == pytest.approx(acc, abs=1e-12)
        assert row["mem_log_likelihood"] == pytest.approx(ll, abs=1e-9)
        assert row["mem_accuracy_low"] <= row["mem_accuracy"] + 1e-12 <= row["mem_accuracy_high"] + 2e-12
    top = result.to_json()["top"]
    assert top[0]["example"] == int(mem.sort_values("mem_accuracy", ascending=False).iloc[0]["example"])
    # the metrics equal a model's own reading of the example, from its stored weights
    from ssviz.models import load_model
    model = load_model(model_path(out, 1))
    row = met[(met.model == 1) & (met.example == 3) & (met.split == "train")].iloc[0]
    acc, bits = metric(model, LINES[3])
    assert row["accuracy"] == pytest.approx(acc) and row["log_likelihood"] / LN2 == pytest.approx(bits)


@pytest.mark.slow
def test_a_run_killed_midway_resumes_with_the_models_it_trained(tmp_path, capsys):
    MODELS = 12  # enough that the kill after the second lands while later ones are still to train
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES * 4) + "\n")
    out = tmp_path / "pool"
    argv = [sys.executable, "-m", "ssviz", "counterfactual", str(corpus), "--models", str(MODELS), "--out", str(out),
            "--layers", "1", "--hidden", "16", "--embedding-dim", "8", "--epochs", "2", "--batch-size", "16",
            "--seq-len", "10", "--patience", "0", "--bootstrap", "50", "--json"]
    env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and model_path(out, 1) is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = [m for m in range(MODELS) if model_path(out, m) is not None]
    assert 2 <= len(kept) < MODELS
    stamps = {m: model_path(out, m).stat().st_mtime_ns for m in kept}
    from ssviz.cli import main
    assert main(argv[3:]) == 0  # the same command again, here
    payload = json.loads(capsys.readouterr().out)
    assert payload["reused"] == len(kept) and payload["trained"] == MODELS - len(kept) and payload["models"] == MODELS
    assert all(model_path(out, m).stat().st_mtime_ns == stamps[m] for m in kept)  # never retrained
    met = pd.read_parquet(out / METRICS)
    assert sorted(met["model"].unique()) == list(range(MODELS))


@pytest.mark.slow
def test_a_stopped_pool_keeps_its_models_and_resumes(tmp_path):
    import threading

    from ssviz.errors import StoppedError
    corpus = "\n".join(LINES) + "\n"
    stop = threading.Event()

    def progress(done, total):
        if done >= 1:
            stop.set()  # the user presses Stop once the first model is in

    with pytest.raises(StoppedError, match="run again to resume"):
        run_pool(corpus, TINY, tmp_path, models=3, progress=progress, stop=stop, bootstrap=0)
    assert model_path(tmp_path, 0) is not None and model_path(tmp_path, 2) is None
    result = run_pool(corpus, TINY, tmp_path, models=3, bootstrap=0)
    assert (result.reused, result.trained) == (1, 2)
    with pytest.raises(SsvizError, match="other examples or settings"):
        run_pool(corpus, TINY, tmp_path, models=3, subset=0.3, bootstrap=0)


@pytest.mark.parametrize("extra, msg", [(["--out", "FILE"], "is a file"), (["--subset", "1"], "fraction"),
                                        (["--models", "1"], "whole number"), (["--unit", "word"], "invalid choice")])
def test_bad_inputs_are_one_line(tmp_path, capsys, extra, msg):
    from ssviz.cli import main
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(LINES * 3) + "\n")
    (tmp_path / "FILE").write_text("x")
    argv = ["counterfactual", str(corpus), "--out", str(tmp_path / "pool")] + [
        str(tmp_path / "FILE") if e == "FILE" else e for e in extra]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and msg in err[-1]


from tests.test_any_model import any_model  # noqa: E402,F401  (the fixture: every model kind)


def test_example_metrics_equal_a_direct_reading_on_every_model_kind(any_model):
    """Per-unit accuracy and mean log-likelihood, against a forward pass written out here; a text longer
    than a transformer's context is read up to it."""
    import torch

    from ssviz.longtail.counterfactual import example_metrics
    texts = ["my pin is 123.", "a" * 3, "the cat sat on the mat and the dog sat on the log " * 3]
    acc, ll = example_metrics(any_model, texts)
    for text, a, l in zip(texts, acc, ll):
        ids = any_model.encode(text)
        if any_model.max_positions:
            ids = ids[:any_model.max_positions]
        with torch.inference_mode():
            lp, _ = any_model.run(torch.tensor([ids]), any_model.initial_state(1))
        lp = lp[0, :-1].double()
        target = torch.tensor(ids[1:])
        assert a == pytest.approx((lp.argmax(1) == target).double().mean().item())
        assert l == pytest.approx(lp.gather(1, target[:, None]).mean().item(), abs=1e-5)
