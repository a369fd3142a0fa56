"""Defenses: DP-SGD (Opacus), quantization, regex and LPD sanitization, the defense runner."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst

from ssviz import exposure
from ssviz.defenses.compare import defense_config, load_results, run_defense, save_results
from ssviz.defenses.dp import dp_module
from ssviz.defenses.quantize import distinct_values, quantize_model, quantize_tensor
from ssviz.defenses.sanitize import MISSED_EXAMPLES, sanitize, sanitize_lpd, sanitize_regex
from ssviz.errors import MissingFileError, SsvizError
from ssviz.models import CharRNN, load_checkpoint
from ssviz.paths import bundled
from ssviz.records import DEFENSE_JSON, EPOCH_JSON, DefenseEpoch, DefenseResult, names
from ssviz.templates import Template
from ssviz.train import Canary, TrainConfig, evaluate_loss, train
from tests.conftest import CANARY_SECRET, CANARY_TEMPLATE, TINY_VOCAB

TINY = {"layers": 1, "hidden": 12, "embedding_dim": 8, "epochs": 1, "batch_size": 32, "patience": None}





# --- DP-SGD ----------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_opacus_fixed_copy_computes_the_same_logits(arch):
    from opacus.layers import DPGRU, DPLSTM
    model = CharRNN.from_config(TINY_VOCAB, TrainConfig(arch=arch, embedding_dim=8, hidden=12, layers=2)).eval()
    dp = dp_module(model).eval()
    assert isinstance(dp.rnn, DPLSTM if arch == "lstm" else DPGRU) and type(model.rnn) is not type(dp.rnn)
    tokens = torch.randint(0, len(TINY_VOCAB), (3, 9), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dp(tokens)[0], model(tokens)[0], atol=1e-5)
    # and back: weights trained in the DP copy land in the ordinary model under torch's names
    with torch.no_grad():
        for p in dp.parameters():
            p.add_(0.01)
    model.load_training_weights(dp)
    assert torch.allclose(dp(tokens)[0], model(tokens)[0], atol=1e-5)


def test_dp_training_reports_finite_epsilon_and_a_loadable_model(small_corpus, tmp_path):
    cfg = TrainConfig(**TINY, dp_noise=1.0, dp_clip=1.0, dp_delta=1e-5)
    res = train(small_corpus[:6000], cfg, Canary(Template("PIN {d:2}"), "42", 2))
    assert res.epsilon is not None and math.isfinite(res.epsilon) and 0 < res.epsilon < 100
    assert res.epochs[0]["epsilon"] == pytest.approx(res.epsilon)
    assert res.dp_noise == 1.0
    # the DP weights landed in the ordinary model: it is no longer its untrained self and round-trips
    reloaded = load_checkpoint(res.save(tmp_path / "dp.safetensors"))
    assert reloaded.extra_config["training"]["epsilon"] == pytest.approx(res.epsilon)
    ids = torch.tensor(reloaded.vocab.encode(small_corpus[6000:7000]))
    assert evaluate_loss(reloaded, ids, 20) == pytest.approx(evaluate_loss(res.model, ids, 20), rel=1e-5)


@pytest.mark.slow
def test_dp_target_epsilon_is_met_and_more_noise_means_less_epsilon(small_corpus):
    res = train(small_corpus[:6000], TrainConfig(**TINY, dp_epsilon=4.0))
    assert res.epsilon == pytest.approx(4.0, rel=0.1)
    noisy = train(small_corpus[:6000], TrainConfig(**TINY, dp_noise=3.0))
    assert noisy.epsilon < res.epsilon


def test_dp_options_are_validated():
    with pytest.raises(SsvizError, match="not both"):
        TrainConfig(dp_epsilon=1, dp_noise=1).validate()
    with pytest.raises(SsvizError, match="dp_delta"):
        TrainConfig(dp_noise=1, dp_delta=2).validate()
    # GRU trains with DP too (Opacus' DPGRU from the same module fixing)
    res = train("abc def\n" * 300, TrainConfig(**{**TINY, "arch": "gru"}, dp_noise=1.0))
    assert math.isfinite(res.epsilon) and math.isfinite(res.test_loss)


# --- quantization ------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(hst.lists(hst.floats(-100, 100, allow_nan=False), min_size=2, max_size=200), hst.integers(2, 8))
def test_quantized_tensor_has_few_levels_and_bounded_error(values, bits):
    t = torch.tensor(values, dtype=torch.float64)
    q = quantize_tensor(t, bits)
    assert torch.unique(q).numel() <= 2 ** bits
    step = float(t.max() - t.min()) / (2 ** bits - 1)
    assert float((q - t).abs().max()) <= step / 2 + 1e-9


def test_8bit_quantization_keeps_test_loss_and_exposure(canary_model, small_corpus):
    model = copy.deepcopy(canary_model)
    ids = torch.tensor(model.vocab.encode(small_corpus[-6000:]))
    before_loss = evaluate_loss(model, ids, 20)
    t = Template(CANARY_TEMPLATE)
    before = exposure.measure(model, t, CANARY_SECRET, "exact").exposure
    quantize_model(model, 8)
    assert distinct_values(model) <= 256 < distinct_values(canary_model)
    assert evaluate_loss(model, ids, 20) == pytest.approx(before_loss, abs=0.02)
    assert exposure.measure(model, t, CANARY_SECRET, "exact").exposure == pytest.approx(before, abs=1.0)
    # 2 bits, by contrast, wrecks the model: the margin above is not vacuous
    crude = quantize_model(copy.deepcopy(canary_model), 2)
    assert evaluate_loss(crude, ids, 20) > before_loss + 0.2


def test_train_with_quantize_reports_before_and_after(small_corpus):
    res = train(small_corpus[:6000], TrainConfig(**TINY, quantize=8), Canary(Template("PIN {d:2}"), "42", 2))
    q = res.quantization
    assert q["bits"] == 8 and q["after"]["test_loss"] == res.test_loss
    assert q["before"]["exposure"] is not None and q["after"]["exposure"] == res.final["exposure"]
    assert distinct_values(res.model) <= 256


# --- sanitization ------------------------------------------------------------------------
def test_regex_removes_ssn_and_card_numbers_but_misses_other_formats():
    secrets = ["my ssn is 078-05-1120 ok", "card 4111 1111 1111 1111 thanks", "pay 5500-0000-0000-0004 now"]
    text = "\n".join(secrets + list(MISSED_EXAMPLES.values()))
    res = sanitize_regex(text)
    assert [r["kind"] for r in res.removed] == ["ssn", "ccn", "ccn"]
    for s in ("078-05-1120", "4111 1111 1111 1111", "5500-0000-0000-0004"):
        assert s not in res.text
    for missed in MISSED_EXAMPLES.values():  # documented misses survive, e.g. the demo canary
        assert missed in res.text
    assert sanitize_regex(text, canary_line=MISSED_EXAMPLES["six-digit code (the demo canary)"]).canary_removed is False
    assert res.text.count("\n") == text.count("\n")


def synthetic_corpus(n_lines: int = 400, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    subj = ["the cat", "a dog", "my friend", "the old man", "our teacher", "the bird"]
    verb = ["sat on", "looked at", "walked to", "ran past", "jumped over"]
    obj = ["the mat", "a red house", "the big tree", "the river", "a small car", "the hill"]
    return [f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)}" for _ in range(n_lines)]


def test_lpd_ranks_a_once_only_canary_in_its_top_fraction():
    lines = synthetic_corpus()
    canary = "my pin is 482913"
    lines.insert(211, canary)
    cfg = TrainConfig(layers=1, hidden=24, embedding_dim=8, epochs=3, lr=0.01, batch_size=32, patience=None)
    res = sanitize_lpd("\n".join(lines), 0.1, cfg, canary_line=canary)
    assert res.canary_rank is not None and res.canary_rank <= 0.1 * res.details["lines_scored"]
    assert res.canary_removed and canary not in res.text
    assert res.details["canary_copies"] == res.details["canary_copies_removed"] == 1
    assert res.lines_removed == round(0.1 * res.details["lines_scored"])
    assert len(res.text.split("\n")) == len(lines) - res.lines_removed


def test_sanitize_rejects_bad_input():
    with pytest.raises(SsvizError, match="top fraction"):
        sanitize_lpd("a b\n" * 100, 1.5)
    with pytest.raises(SsvizError, match="at least 20"):
        sanitize_lpd("short line\n" * 5, 0.1)
    with pytest.raises(SsvizError, match="unknown sanitization"):
        sanitize("x", "magic")


# --- defense runner and bundled results ----------------------------------------------------
def test_defense_config_maps_strengths():
    base = TrainConfig()
    assert defense_config("dropout", "0.3", base).dropout == 0.3
    assert defense_config("weight_decay", "1e-4", base).weight_decay == 1e-4
    assert defense_config("dp", "eps=2", base).dp_epsilon == 2.0
    assert defense_config("dp", "noise=0.5", base).dp_noise == 0.5
    with pytest.raises(SsvizError, match="eps=E"):
        defense_config("dp", "8", base)
    with pytest.raises(SsvizError, match="unknown defense"):
        defense_config("prayer", "1", base)


def test_regex_defense_misses_the_demo_format_so_the_canary_is_still_trained_on(small_corpus):
    canary = Canary(Template("The secret code is {d:2}"), "42", 20)
    rec = run_defense(small_corpus[:8000], canary, TrainConfig(**TINY), "regex")
    assert isinstance(rec, DefenseResult) and rec.defense == "regex" and rec.details["canary_removed"] is False
    doc = json.loads(json.dumps(rec.to_json(), allow_nan=False))
    assert list(doc) == ["defense", "strength", "epsilon", "exposure", "exposure_method", "test_loss", "seconds",
                         "stopped", "epochs", "details"]
    assert list(doc["epochs"][0]) == ["epoch", "train_loss", "val_loss", "exposure", "seconds", "exposure_method",
                                      "rank", "log_perplexity"]
    assert DefenseResult.from_json(doc) == rec  # what a results file holds is the whole record


def test_bundled_results_follow_the_contract():
    records = load_results(bundled("defenses/demo-results.json"))
    by = {r.defense for r in records}
    assert {"none", "dp"} <= by
    none = next(r for r in records if r.defense == "none")
    dp = [r for r in records if r.defense == "dp" and r.epsilon is not None]
    assert dp and all(r.exposure < none.exposure for r in dp)
    assert all(isinstance(e, DefenseEpoch) for r in records for e in r.epochs)


def test_the_bundled_results_round_trip_unchanged(tmp_path):
    """load -> to_json is the file's content, key for key and byte for byte: the records lose no field and the
    format on disk does not change."""
    path = bundled("defenses/demo-results.json")
    text = path.read_text(encoding="utf-8")
    records = load_results(path)
    assert [r.to_json() for r in records] == json.loads(text)
    assert json.dumps([r.to_json() for r in records], indent=1) == text
    save_results(records, tmp_path / "copy.json")
    assert (tmp_path / "copy.json").read_text(encoding="utf-8") == text
    assert load_results(tmp_path / "copy.json") == records
    dp0 = next(r for r in records if r.strength == "noise=0")  # noise 0 promises nothing: null, inf per epoch
    assert dp0.epsilon is None and all(e.epsilon == math.inf for e in dp0.epochs)


def test_the_records_fields_are_the_contracts_keys():
    """A field lost or renamed fails here, and the JSON checks list exactly the fields."""
    assert names(DefenseResult) == ["defense", "strength", "epsilon", "exposure", "exposure_method", "test_loss",
                                    "seconds", "stopped", "epochs", "details", "setting"]
    assert names(DefenseEpoch) == ["epoch", "train_loss", "val_loss", "exposure", "seconds", "epsilon",
                                   "exposure_method", "rank", "log_perplexity"]
    assert list(DEFENSE_JSON) == names(DefenseResult) and list(EPOCH_JSON) == names(DefenseEpoch)


def test_a_missing_number_is_none_never_nan():
    rec = DefenseResult.from_json({"defense": "dp", "strength": "noise=0", "epsilon": None, "exposure": 3,
                                   "exposure_method": "exact", "test_loss": 2.5, "seconds": 1,
                                   "epochs": [{"epoch": 1}, {"epoch": 2, "epsilon": math.inf}]})
    assert rec.stopped is False and rec.details == {} and rec.setting is None
    first, second = rec.epochs
    assert first == DefenseEpoch(epoch=1) and first.val_loss is None and first.rank is None
    assert "epsilon" not in first.to_json() and second.to_json()["epsilon"] == math.inf  # epsilon only with DP
    assert "setting" not in rec.to_json()
    values = [v for e in rec.to_json()["epochs"] for v in e.values()]
    assert not any(isinstance(v, float) and math.isnan(v) for v in values)


GOOD = {"defense": "none", "strength": "-", "epsilon": None, "exposure": 1.5, "exposure_method": "exact",
        "test_loss": 2.0, "seconds": 1.0}


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    (json.dumps({"records": []}), "JSON list of records"),
    (json.dumps([GOOD, "none"]), "record 1: expected a JSON object"),
    (json.dumps([{k: v for k, v in GOOD.items() if k != "exposure"}]), "record 0: lacks exposure"),
    (json.dumps([{**GOOD, "exposre": 1.0}]), "record 0: has unknown key.*'exposre'"),
    (json.dumps([{**GOOD, "exposure": "high"}]), "record 0: 'exposure' must be int or float, got 'high'"),
    (json.dumps([{**GOOD, "exposure": None}]), "'exposure' must be int or float,"),
    (json.dumps([{**GOOD, "test_loss": True}]), "'test_loss' must be"),
    (json.dumps([{**GOOD, "epochs": {"epoch": 1}}]), "'epochs' must be list"),
    (json.dumps([{**GOOD, "epochs": [{"epoch": 1}, {"epoch": 2, "rank": 1.5}]}]), "record 0: epoch 1: 'rank'"),
    (json.dumps([{**GOOD, "epochs": [{"val_loss": 2.0}]}]), "epoch 0: lacks epoch"),
    (json.dumps([{**GOOD, "x" * 10_000: 1}]), "unknown key"),
])
def test_a_malformed_results_file_is_one_clear_error(tmp_path, content, match):
    path = tmp_path / "results.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SsvizError, match=match) as e:
        load_results(path)
    assert "\n" not in str(e.value) and len(str(e.value)) < 500
    with pytest.raises(MissingFileError):
        load_results(tmp_path / "none.json")


# --- CLI ---------------------------------------------------------------------------------
def test_cli_train_with_dp_reports_epsilon_and_test_loss(small_corpus, tmp_path, capsys):
    from ssviz.cli import main
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_corpus[:5000])
    common = [str(corpus), "--layers", "1", "--hidden", "8", "--embedding-dim", "8", "--epochs", "1",
              "--canary", "PIN {d:2}", "--secret", "42", "--json"]
    assert main(["train", *common, "--out", str(tmp_path / "m.safetensors"), "--dp-noise", "1.5",
                 "--dp-clip", "2", "--dp-delta", "1e-6"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert math.isfinite(out["epsilon"]) and out["epsilon"] > 0 and out["test_loss"] > 0
    assert out["dp"] == {"delta": 1e-6, "clip": 2.0, "target_epsilon": None, "noise_multiplier": 1.5}
    assert main(["train", *common, "--out", str(tmp_path / "p.safetensors"), "--quantize", "8", "--dropout", "0.2",
                 "--weight-decay", "1e-4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["epsilon"] is None and out["quantization"]["bits"] == 8
    assert main(["train", *common, "--out", str(tmp_path / "x.safetensors"), "--dp-noise", "1",
                 "--dp-epsilon", "2"]) == 2
    assert "not both" in capsys.readouterr().err


def test_cli_sanitize_regex_writes_the_clean_corpus(tmp_path, capsys):
    from ssviz.cli import main
    corpus = tmp_path / "c.txt"
    corpus.write_text("call me, my ssn is 078-05-1120\n" * 3 + "The secret code is 281546\n" + "plain text\n" * 20)
    out_path = tmp_path / "clean.txt"
    assert main(["sanitize", str(corpus), "--method", "regex", "--out", str(out_path),
                 "--canary-line", "The secret code is 281546", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["removed"]) == 3 and out["chars_removed"] == 33 and out["canary_removed"] is False
    clean = out_path.read_text()
    assert "078-05-1120" not in clean and "The secret code is 281546" in clean


# --- one split for every defense ---------------------------------------------------------------------------
def test_a_sanitization_that_removes_nothing_trains_exactly_like_no_defense(small_corpus):
    """Regex finds no SSN or card number here, so its training must be the undefended one: same split, same
    canary positions, same losses and exposure (it re-split the corpus and shifted validation text before)."""
    canary = Canary(Template("The secret code is {d:2}"), "42", 20)
    cfg = TrainConfig(**{**TINY, "epochs": 2})
    for text in (small_corpus[:8000], "\n".join(synthetic_corpus(400))):  # long lines, and short ones
        none = run_defense(text, canary, cfg, "none")
        regex = run_defense(text, canary, cfg, "regex")
        assert regex.details["canary_removed"] is False
        assert regex.test_loss == none.test_loss and regex.exposure == none.exposure
        assert [e.val_loss for e in regex.epochs] == [e.val_loss for e in none.epochs]
    assert canary.secret == "42" and canary.insertions == 20  # the caller's canary is untouched


@pytest.mark.parametrize("defense", ["regex", "lpd"])
def test_sanitization_defenses_keep_the_one_validation_and_test_split(small_corpus, monkeypatch, defense):
    from ssviz.corpus import Split, split_text
    from ssviz.defenses import compare
    seen = []
    real = compare.train
    monkeypatch.setattr(compare, "train", lambda text, *a, **k: seen.append(text) or real(text, *a, **k))
    text = "my ssn is 078-05-1120\n" * 3 + small_corpus[:6000]
    cfg = TrainConfig(**TINY)
    canary = Canary(Template("The secret code is {d:2}"), "42", 5)
    run_defense(text, canary, cfg, defense, "0.1" if defense == "lpd" else None,
                lpd_config=TrainConfig(**TINY))
    split = split_text(text, cfg.val_fraction)
    assert isinstance(seen[-1], Split)
    assert (seen[-1].val, seen[-1].test) == (split.val, split.test)
    assert len(seen[-1].train) < len(split.train) + 5 * len("The secret code is 42\n")  # something was removed


# --- DP accounting -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_dp_noise_for_a_target_epsilon_is_opacus_accounting(small_corpus):
    """The noise multiplier and epsilon are Opacus' own for this sample rate, epochs and delta."""
    from opacus.accountants.utils import get_noise_multiplier

    from ssviz.corpus import split_text, windows
    cfg = TrainConfig(**{**TINY, "epochs": 2}, dp_epsilon=3.0)
    text = small_corpus[:6000]
    res = train(text, cfg)
    vocab = res.model.vocab
    n = len(windows(torch.tensor(vocab.encode(split_text(text, cfg.val_fraction).train)), cfg.seq_len))
    rate = 1 / math.ceil(n / min(cfg.batch_size, n))  # Opacus: one over the loader's batches per epoch
    sigma = get_noise_multiplier(target_epsilon=3.0, target_delta=cfg.dp_delta, sample_rate=rate, epochs=2,
                                 accountant="rdp")
    assert res.dp_noise == pytest.approx(sigma) and res.epsilon == pytest.approx(3.0, rel=0.05)


# --- DP speed: vectorized per-example gradients, Opacus' clipping, noise and accounting --------------------
@pytest.mark.parametrize("arch,layers", [("lstm", 1), ("lstm", 2), ("gru", 2)])
def test_vectorized_per_example_gradients_equal_opacus_hooks(arch, layers):
    from opacus import GradSampleModule

    from ssviz.defenses.dp import PerSampleGradients
    from ssviz.models.rnn import TrainingForward
    cfg = TrainConfig(arch=arch, layers=layers, hidden=12, embedding_dim=8, seed=3)
    tokens = torch.randint(0, len(TINY_VOCAB), (6, 11), generator=torch.Generator().manual_seed(1))

    def per_example(vectorized: bool) -> dict:
        net = TrainingForward(dp_module(CharRNN.from_config(TINY_VOCAB, cfg)), 0.0, torch.Generator())
        if vectorized:
            grads = PerSampleGradients(net)
            grads.start()
            module = net
        else:
            module = GradSampleModule(net)
        logits = module(tokens[:, :-1])
        torch.nn.functional.cross_entropy(logits.reshape(-1, len(TINY_VOCAB)), tokens[:, 1:].reshape(-1)).backward()
        if vectorized:
            grads.assign()
        return {name.removeprefix("_module."): p.grad_sample for name, p in module.named_parameters()}

    fast, reference = per_example(True), per_example(False)
    assert fast.keys() == reference.keys() and len(fast) == 2 + 4 * layers + 1  # head w+b, per layer ih/hh w+b, emb
    for name, g in reference.items():
        assert fast[name].shape == g.shape and torch.allclose(fast[name], g, atol=1e-6), name


@pytest.mark.parametrize("privacy", [{"dp_noise": 1.0},
                                     pytest.param({"dp_epsilon": 4.0, "dropout": 0.2, "layers": 2}, marks=pytest.mark.slow)])
def test_the_fast_dp_path_trains_and_accounts_exactly_like_opacus_hooks(small_corpus, monkeypatch, privacy):
    from ssviz.defenses import dp
    cfg = TrainConfig(**{**TINY, "epochs": 2, **privacy})
    runs = {}
    for mode in ("hooks", "vectorized"):
        monkeypatch.setattr(dp.DPBackend, "grad_sample_mode", mode)
        runs[mode] = train(small_corpus[:6000], cfg)
    hooks, fast = runs["hooks"], runs["vectorized"]
    assert fast.dp_noise == hooks.dp_noise and fast.epsilon == hooks.epsilon
    assert [r["epsilon"] for r in fast.epochs] == [r["epsilon"] for r in hooks.epochs]
    for name, w in hooks.model.state_dict().items():
        assert torch.allclose(fast.model.state_dict()[name], w, atol=1e-5), name
