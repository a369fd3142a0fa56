"""Training transformers: the one training loop with a tiny GPT-2 or Llama built from a config.

Everything is built here (tokenizers trained on a slice of the demo corpus, models from
configs): no download. A model trained by ssviz must load with plain transformers and score
the same there, in ssviz's loader and in memory; DP-SGD's per-example gradients and
accounting must be Opacus' own; bad options are refused in one line before any work.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from ssviz import scoring as token_scoring  # noqa: E402
from ssviz.corpus import split_text, windows  # noqa: E402
from ssviz.demo import DEMO_CORPUS  # noqa: E402
from ssviz.errors import SettingsError  # noqa: E402
from ssviz.models import load_model  # noqa: E402
from ssviz.models.hf import TRAINING_FILE, HFLanguageModel, TrainingForward, read_training  # noqa: E402
from ssviz.templates import Template  # noqa: E402
from ssviz.models.tokenizers import token_texts  # noqa: E402
from ssviz.train import (  # noqa: E402
    TRAINING_VERSION,
    Canary,
    TrainConfig,
    new_model,
    option_specs,
    parse_option,
    train,
)

TINY = dict(layers=1, hidden=32, heads=2, vocab_size=400, epochs=1, batch_size=32, seq_len=32, lr=3e-3,
            patience=None)
PIN = Template("My PIN is {d:4}")


@pytest.fixture(scope="module")
def text() -> str:
    return DEMO_CORPUS.read_text(encoding="utf-8")[:30_000]


@pytest.fixture(scope="module")
def pin_llama(text):
    """A 2x48 Llama-style model trained 3 epochs with a 4-digit canary inserted 30 times (about 3 s)."""
    cfg = TrainConfig(**{**TINY, "layers": 2, "hidden": 48, "heads": 4, "vocab_size": 500, "epochs": 3,
                         "batch_size": 16}, arch="llama")
    return train(text, cfg, Canary(PIN, "4821", 30))


def _bits_with_plain_transformers(folder: Path, text: str) -> float:
    """The scoring semantics written as a user would with transformers alone: local files only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits.float(), dim=-1)
    return float(-lp[0, :-1].gather(1, ids[0, 1:, None]).double().sum() / math.log(2))


# --- memorization ----------------------------------------------------------------------------------------
def test_a_canary_inserted_many_times_is_far_more_exposed_than_a_control(pin_llama):
    model = pin_llama.model
    lps = token_scoring.score_space(model, PIN)
    rank = {f: int(np.count_nonzero(lps <= lps[PIN.index_of(f)])) for f in ("4821", "7306", "1590")}
    assert rank["4821"] <= 3, rank
    assert min(rank["7306"], rank["1590"]) > 100, rank
    # the loop's per-epoch exposure is the exact rank among the 10^4 fillers, scored by token scoring
    final = pin_llama.final
    assert (final["exposure_method"], final["rank"]) == ("exact", rank["4821"])
    assert final["exposure"] == pytest.approx(math.log2(10 ** 4) - math.log2(rank["4821"]))
    assert final["log_perplexity"] == pytest.approx(token_scoring.log_perplexity(model, PIN.format("4821")), abs=1e-3)
    assert len(pin_llama.epochs) == 3 and all(r["exposure"] is not None for r in pin_llama.epochs)


@pytest.mark.slow
@pytest.mark.parametrize("arch,merge", [("gpt2", True), ("gpt2", False), ("llama", True)])
def test_memorization_with_either_arch_and_either_tokenizer(text, arch, merge):
    cfg = TrainConfig(**{**TINY, "layers": 2, "hidden": 48, "heads": 4, "vocab_size": 500, "epochs": 4,
                         "batch_size": 16}, arch=arch, merge_digits=merge)
    res = train(text, cfg, Canary(PIN, "4821", 30))
    lps = token_scoring.score_space(res.model, PIN)
    secret, control = (int(np.count_nonzero(lps <= lps[PIN.index_of(f)])) for f in ("4821", "7306"))
    assert secret <= 10 and control > 10 * secret, (secret, control)


def test_training_a_transformer_is_reproducible_and_leaves_no_training_state(text):
    cfg = TrainConfig(**TINY, arch="gpt2", dropout=0.2, weight_decay=0.01)
    runs = [train(text, cfg) for _ in range(2)]
    a, b = (r.model.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].model.tokenizer.get_vocab() == runs[1].model.tokenizer.get_vocab()
    net = runs[0].model.model
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())  # dropout hooks removed
    other = train(text, replace(cfg, seed=1))
    assert not torch.equal(other.model.model.state_dict()["lm_head.weight"], a["lm_head.weight"])


def test_two_transformer_trainings_in_threads_are_reproducible(text):
    cfg = TrainConfig(**TINY, arch="llama", dropout=0.1)
    alone = train(text, cfg).model.model.state_dict()
    out = {}

    def run(key):
        torch.manual_seed(1000 + key)  # the other thread's global RNG traffic must not matter
        out[key] = train(text, cfg).model.model.state_dict()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        assert all(torch.equal(out[k][n], alone[n]) for n in alone)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_dropout_masks_come_from_the_generator_and_only_while_training(text, arch):
    model = new_model(TrainConfig(**TINY, arch=arch), text).model
    tokens = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model.eval()(input_ids=tokens).logits
        dropped = []
        for _ in range(2):
            fwd = TrainingForward(model, 0.5, torch.Generator().manual_seed(3))
            dropped.append(fwd(tokens.clone()) if model.train() else None)
            model.eval()
            assert torch.allclose(fwd(tokens), plain, atol=1e-5)  # in eval mode the hooks do nothing
            fwd.close()
    assert torch.equal(dropped[0], dropped[1])  # the same seed, the same masks
    assert not torch.allclose(dropped[0], plain, atol=1e-3)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# --- the saved folder -------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_saved_folder_loads_with_plain_transformers_and_scores_identically(text, tmp_path, arch):
    canary = Canary(PIN, "4821", 5)
    res = train(text, TrainConfig(**TINY, arch=arch), canary)
    folder = res.save(tmp_path / "model")
    assert folder == tmp_path / "model" and (folder / "model.safetensors").is_file()
    assert not any(p.suffix in (".bin", ".pt") for p in folder.iterdir())  # weights as safetensors only
    loaded = load_model(folder)
    assert isinstance(loaded, HFLanguageModel) and loaded.config.model_type == arch
    for sample in (PIN.format("4821"), PIN.format("0000"), "The quick brown fox, 12 34."):
        mine = token_scoring.log_perplexity(res.model, sample)
        assert token_scoring.log_perplexity(loaded, sample) == pytest.approx(mine, abs=1e-4)
        assert _bits_with_plain_transformers(folder, sample) == pytest.approx(mine, abs=1e-3)
    meta = read_training(folder)
    assert meta["training"]["canary"] == canary.to_json() and meta["training"]["config"]["arch"] == arch
    assert meta["training"]["test_loss"] == pytest.approx(res.test_loss)
    assert not [p for p in tmp_path.iterdir() if p.name != "model"]  # nothing left beside it


def test_tokenizer_splits_digits_unless_merge_digits(text):
    numbers = "\n".join(f"order {n} shipped on day {n % 31}" for n in range(1000, 1600))
    corpus = text[:10_000] + "\n" + numbers + "\n" + text[10_000:20_000]
    split = new_model(TrainConfig(**TINY, arch="llama"), corpus).tokenizer
    merged = new_model(TrainConfig(**TINY, arch="llama", merge_digits=True), corpus).tokenizer
    spelled = {name: [token_texts(tok)[i] for i in tok("code 1234567")["input_ids"]]
               for name, tok in (("split", split), ("merged", merged))}
    assert spelled["split"][-7:] == list("1234567")
    assert any(t and sum(c.isdigit() for c in t) > 1 for t in spelled["merged"]), spelled["merged"]
    assert spelled["split"] != spelled["merged"]
    # Llama-style: BOS first; GPT-2 style: nothing added
    assert split("x")["input_ids"][0] == split.bos_token_id
    gpt2 = new_model(TrainConfig(**TINY, arch="gpt2"), corpus).tokenizer
    assert gpt2("x")["input_ids"][0] != gpt2.bos_token_id
    assert len(split) <= TINY["vocab_size"]


def test_training_text_is_tokenized_line_by_line_as_texts_are_scored(text):
    model = new_model(TrainConfig(**TINY, arch="llama"), text)
    canary = PIN.format("4821")
    ids = model.encode_corpus(f"first line\n{canary}\nlast")
    line = model.tokenizer(canary + "\n")["input_ids"]
    starts = [i for i in range(len(ids)) if ids[i:i + len(line)] == line]
    assert len(starts) == 1 and line[0] == model.tokenizer.bos_token_id
    assert ids[-len(model.tokenizer("last")["input_ids"]):] == model.tokenizer("last")["input_ids"]


# --- CLI ---------------------------------------------------------------------------------------------------
@pytest.fixture
def corpus_file(tmp_path, text):
    path = tmp_path / "c.txt"
    path.write_text(text[:20_000])
    return path


CLI_TINY = ["--layers", "1", "--hidden", "32", "--heads", "2", "--vocab-size", "400", "--epochs", "1",
            "--batch-size", "32", "--seq-len", "32", "--lr", "3e-3"]


def test_cli_trains_a_transformer_and_reports_the_same_keys_as_for_rnns(corpus_file, tmp_path, capsys):
    from ssviz.cli import main
    out = tmp_path / "m"
    assert main(["train", str(corpus_file), "--arch", "gpt2", *CLI_TINY, "--canary", "PIN {d:3}", "--secret", "417",
                 "--insertions", "20", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    rnn_keys = {"checkpoint", "epochs", "test_loss", "epsilon", "dp", "exposure", "quantization", "seconds",
                "canary", "device", "dtype"}
    assert set(payload) == rnn_keys and payload["checkpoint"] == str(out)
    assert payload["epochs"][0]["exposure_method"] == "exact" and payload["exposure"] is not None
    assert captured.err == ""  # no progress bars or warnings around the JSON
    assert load_model(out).config.model_type == "gpt2"
    assert main(["train", str(corpus_file), "--arch", "gpt2", *CLI_TINY, "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert read_training(out)["training"]["canary"] is None  # the folder now holds the second run


@pytest.mark.parametrize("argv,message", [
    (["--arch", "lstm", "--heads", "2"], "heads applies to transformers"),
    (["--arch", "gru", "--merge-digits"], "merge_digits applies to transformers"),
    (["--vocab-size", "500"], "vocab_size applies to transformers"),
    (["--arch", "llama", "--hidden", "30", "--heads", "4"], "multiple of heads"),
    (["--arch", "llama", "--hidden", "12", "--heads", "4"], "even width per head"),
    (["--arch", "llama", "--hidden", "40", "--heads", "5"], "heads must be 1, 3 or even"),
    (["--arch", "gpt2", "--embedding-dim", "32"], "embedding_dim applies to lstm and gru"),
    (["--arch", "gpt2", "--vocab-size", "100"], "vocab_size must be"),
    (["--arch", "llama", "--heads", "0"], "heads must be"),
    (["--arch", "bert"], "invalid choice"),
])
def test_bad_arch_options_are_refused_in_one_line_before_any_work(corpus_file, tmp_path, capsys, monkeypatch,
                                                                  argv, message):
    from ssviz.cli import main
    import ssviz.cli.train as cli_train
    monkeypatch.setattr(cli_train, "train", lambda *a, **k: pytest.fail("trained despite a bad option"))
    out = tmp_path / "m"
    try:
        code = main(["train", str(corpus_file), *argv, "--out", str(out)])
    except SystemExit as e:  # argparse's own refusals (an unknown choice)
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and not out.exists()
    if message != "invalid choice":  # argparse prints its usage first; ours is one line
        assert err.startswith("error: ") and "\n" not in err


def test_arch_options_in_the_library_and_in_sweep_grids():
    with pytest.raises(SettingsError, match="heads applies to transformers"):
        TrainConfig(heads=2).validate()
    assert TrainConfig(arch="gpt2", heads=2, hidden=64).validate().transformer
    assert parse_option("merge_digits", "true") is True and parse_option("merge_digits", "no") is False
    with pytest.raises(SettingsError, match="merge_digits must be true or false"):
        parse_option("merge_digits", "maybe")
    with pytest.raises(SettingsError, match="merge_digits"):
        TrainConfig(arch="llama", merge_digits="yes").validate()
    from ssviz.sweeps import parse_grid
    assert parse_grid("arch=lstm,llama") == ("arch", ["lstm", "llama"])
    assert parse_grid("merge_digits=false,true") == ("merge_digits", [False, True])
    assert option_specs()["heads"]["group"].startswith("transformers")


def test_folder_outputs_are_checked_before_training(corpus_file, tmp_path, capsys, monkeypatch):
    from ssviz.cli import main
    import ssviz.cli.train as cli_train
    real = cli_train.train
    trained = []
    monkeypatch.setattr(cli_train, "train", lambda *a, **k: trained.append(1) or real(*a, **k))
    common = ["train", str(corpus_file), "--arch", "llama", *CLI_TINY]
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "keep.txt").write_text("keep me")
    refused = [(str(notes), "is a file"), (str(corpus_file), "is the input file"),
               (str(mixed), "other files than a saved model's"), (str(notes / "m"), "is a file, not a folder")]
    for out, message in refused:
        assert main([*common, "--out", out]) == 2, out
        assert message in capsys.readouterr().err
    assert not trained and notes.read_text() == "mine"
    # --force adds the model's files to a folder holding other files, removing none of them
    assert main([*common, "--out", str(mixed), "--force", "--json"]) == 0
    assert (mixed / "keep.txt").read_text() == "keep me" and load_model(mixed)
    # a folder holding only a saved model is replaced whole (a stale shard index goes with it)
    model_dir = tmp_path / "model"
    assert main([*common, "--out", str(model_dir), "--json"]) == 0
    (model_dir / "model.safetensors.index.json").write_text("{}")
    assert main([*common, "--out", str(model_dir), "--json", "--seed", "1"]) == 0
    assert not (model_dir / "model.safetensors.index.json").exists() and load_model(model_dir)
    assert read_training(model_dir)["training"]["config"]["seed"] == 1
    capsys.readouterr()
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main([*common, "--out", str(locked / "m")]) == 2
        assert "cannot write" in capsys.readouterr().err


# --- defenses -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_opacus_per_example_gradients_of_transformers_equal_one_backward_per_example(text, arch):
    """Opacus' hooks (functorch for GPT-2's Conv1D and Llama's RMSNorm; GPT-2's tied head) are exact."""
    from opacus import GradSampleModule
    from ssviz.defenses.dp import dp_module
    model = new_model(TrainConfig(**TINY, arch=arch), text)
    net = dp_module(model)
    tokens = torch.randint(0, len(model.vocab), (3, 9), generator=torch.Generator().manual_seed(0))
    gsm = GradSampleModule(TrainingForward(net, 0.0, torch.Generator()))
    logits = gsm(tokens[:, :-1])
    torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)).backward()
    per_example = {n.removeprefix("_module.model."): p.grad_sample.clone() for n, p in gsm.named_parameters()}
    gsm._close()
    assert per_example.keys() == dict(net.named_parameters()).keys()
    for i in range(len(tokens)):
        net.zero_grad()
        lg = net(input_ids=tokens[i:i + 1, :-1]).logits
        torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), tokens[i, 1:]).backward()
        for name, p in net.named_parameters():
            # Opacus scales a mean loss's per-example gradients by the batch size, as in its hooks for RNNs
            assert torch.allclose(per_example[name][i], p.grad, atol=1e-5), (name, i)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_dp_on_a_tiny_transformer_reports_opacus_epsilon(text, arch):
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier
    cfg = TrainConfig(**{**TINY, "epochs": 2}, arch=arch, dp_epsilon=4.0)
    res = train(text[:20_000], cfg)
    ids = torch.tensor(res.model.encode_corpus(split_text(text[:20_000], cfg.val_fraction).train))
    n = len(windows(ids, cfg.seq_len))
    batches = math.ceil(n / min(cfg.batch_size, n))
    sigma = get_noise_multiplier(target_epsilon=4.0, target_delta=cfg.dp_delta, sample_rate=1 / batches, epochs=2,
                                 accountant="rdp")
    assert res.dp_noise == pytest.approx(sigma)
    accountant = RDPAccountant()
    accountant.history = [(sigma, 1 / batches, 2 * batches)]
    assert res.epsilon == pytest.approx(accountant.get_epsilon(cfg.dp_delta)) and res.epsilon <= 4.0 + 1e-6
    assert [r["epsilon"] for r in res.epochs][-1] == res.epsilon and math.isfinite(res.test_loss)
    noisy = train(text[:20_000], replace(cfg, dp_epsilon=None, dp_noise=1.0))
    accountant.history = [(1.0, 1 / batches, 2 * batches)]
    assert noisy.epsilon == pytest.approx(accountant.get_epsilon(cfg.dp_delta))


def test_cli_dp_training_of_a_transformer_saves_a_loadable_folder(corpus_file, tmp_path, capsys):
    from ssviz.cli import main
    out = tmp_path / "dp"
    assert main(["train", str(corpus_file), "--arch", "gpt2", *CLI_TINY, "--dp-noise", "1.0", "--out", str(out),
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["epsilon"] > 0 and payload["dp"]["noise_multiplier"] == 1.0
    assert load_model(out).config.model_type == "gpt2"


@pytest.mark.slow
def test_quantization_and_the_defense_records_accept_transformers(text):
    from ssviz.defenses.compare import run_defense
    from ssviz.defenses.quantize import distinct_values
    base = TrainConfig(**TINY, arch="llama")
    rec = run_defense(text[:20_000], Canary(Template("PIN {d:2}"), "42", 5), base, "quantize8")
    assert rec.details["quantization"]["bits"] == 8 and math.isfinite(rec.test_loss)
    res = train(text[:20_000], replace(base, quantize=8), Canary(Template("PIN {d:2}"), "42", 5))
    assert distinct_values(res.model.model) <= 256
    for defense in ("dropout", "weight_decay", "regex"):
        rec = run_defense(text[:20_000], Canary(Template("PIN {d:2}"), "42", 5), base, defense)
        assert math.isfinite(rec.exposure) and math.isfinite(rec.test_loss), defense


def test_lpd_sanitization_trains_two_transformers_on_one_tokenizer(text, monkeypatch):
    import ssviz.defenses.sanitize as sanitize_mod
    import ssviz.train as train_mod
    seen = []
    real = train_mod.train

    def spy(part, config, **kw):
        seen.append(kw["model"])
        return real(part, config, **kw)

    monkeypatch.setattr(train_mod, "train", spy)
    lines = [line for line in text[:20_000].split("\n") if line]
    lines.insert(7, "My PIN is 4821 and nobody knows it")
    result = sanitize_mod.sanitize_lpd("\n".join(lines), 0.1, TrainConfig(**TINY, arch="gpt2"),
                                       canary_line=lines[7])
    assert len(seen) == 2 and seen[0].tokenizer is seen[1].tokenizer
    assert result.lines_removed >= 1 and result.canary_rank is not None


def test_lpd_reads_lines_longer_than_the_context_in_training_windows(text):
    from ssviz.defenses.sanitize import windowed_token_bits
    model = new_model(TrainConfig(**TINY, arch="gpt2"), text)
    short = ["My PIN is 4821.", "a b", "x"]
    assert np.allclose(windowed_token_bits(model, short, 32), token_scoring.score_texts(model, short), atol=1e-6)
    long_line = " ".join(text.split("\n")[:30])  # thousands of tokens: beyond the 256 positions
    assert len(model.tokenizer(long_line)["input_ids"]) > model.max_positions
    ids = model.tokenizer(long_line)["input_ids"]
    pieces = [ids[lo:lo + 33] for lo in range(0, len(ids) - 1, 32)]
    got = windowed_token_bits(model, [long_line], 32)[0]
    with torch.no_grad():
        want = 0.0
        for p in pieces:
            t = torch.tensor([p])
            lp = torch.log_softmax(model.model(input_ids=t).logits, -1)
            want -= float(lp[0, :-1].gather(1, t[0, 1:, None]).sum()) / math.log(2)
    assert got == pytest.approx(want, rel=1e-5)


# --- the study ------------------------------------------------------------------------------------------------
def test_study_cache_key_holds_the_arch_and_the_training_version(tmp_path, monkeypatch):
    from ssviz.enron import pipeline
    rnn = asdict(TrainConfig())
    llama = asdict(TrainConfig(arch="llama"))
    a = pipeline.checkpoint_path(tmp_path, "u", "h", rnn)
    b = pipeline.checkpoint_path(tmp_path, "u", "h", llama)
    assert a != b and a.suffix == ".safetensors" and b.suffix == ""  # a transformer is cached as a folder
    monkeypatch.setattr("ssviz.train.TRAINING_VERSION", TRAINING_VERSION - 1)  # a model from older code
    assert pipeline.checkpoint_path(tmp_path, "u", "h", rnn) != a


@pytest.mark.slow
def test_the_study_trains_caches_and_reuses_transformers_per_user(tmp_path, monkeypatch):
    from ssviz.enron.pipeline import StudySettings, run_study
    from ssviz.enron.synthetic import generate_maildir
    from ssviz.store import Store
    truth = generate_maildir(tmp_path / "mail", users=2, messages=30, seed=2, times=(3, 12))
    settings = StudySettings(train=TrainConfig(**TINY, arch="llama"), exposure_samples=100, search_nodes=100,
                             extraction_nodes=100)
    cache, db = tmp_path / "cache", tmp_path / "r.duckdb"
    rows = run_study(tmp_path / "mail", db, settings=settings, cache_dir=cache)
    planted = {(s["user"], s["type"], s["value"][-4:]) for s in truth["secrets"]}
    assert {(r["user"], r["type"], r["last4"]) for r in rows} == planted
    folders = sorted(cache.iterdir())
    assert len(folders) == 2 and all(f.is_dir() for f in folders)
    for f in folders:
        assert load_model(f).config.model_type == "llama"
        assert math.isfinite(read_training(f)["test_loss"])
    users = Store(db, read_only=True).table("users")
    assert users.test_loss.notna().all()
    # a new store reuses the cached folders: nothing is trained again
    import ssviz.train as train_mod
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: pytest.fail("trained a cached user again"))
    logs = []
    again = run_study(tmp_path / "mail", tmp_path / "s.duckdb", settings=settings, cache_dir=cache,
                      log=logs.append)
    assert sum("cached model" in line for line in logs) == 2 and len(again) == len(rows)


def test_study_cli_accepts_arch_options(tmp_path, capsys):
    from ssviz.cli import build_parser
    from ssviz.cli.train import config_from_args
    args = build_parser().parse_args(["enron", str(tmp_path), "--arch", "llama", "--heads", "2", "--hidden", "32",
                                      "--vocab-size", "400", "--merge-digits"])
    cfg = config_from_args(args)
    assert (cfg.arch, cfg.heads, cfg.vocab_size, cfg.merge_digits) == ("llama", 2, 400, True)
    from ssviz.cli import main
    assert main(["enron", str(tmp_path), "--arch", "lstm", "--heads", "2", "--db", str(tmp_path / "r.duckdb")]) == 2
    assert "heads applies to transformers" in capsys.readouterr().err


# --- the bundled demo transformer -------------------------------------------------------------------------------
def _demo():
    from ssviz.paths import bundled
    return bundled("demo-transformer")


def test_the_bundled_demo_transformer_loads_and_holds_its_documented_canary():
    folder = _demo()
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 4 << 20  # a few MB at most
    meta = read_training(folder)
    canary = meta["training"]["canary"]
    assert canary == {"template": "The secret code is {d:6}", "secret": "460317", "insertions": 10}
    model = load_model(folder)
    assert model.config.model_type == "llama" and len(model.vocab) == 800
    template = Template(canary["template"])
    recorded = meta["demo"]["exact"]["fillers"]
    assert recorded["460317"]["rank"] == 1 and recorded[meta["demo"]["control"]]["rank"] > 1000
    for filler, rec in recorded.items():
        bits = token_scoring.log_perplexity(model, template.format(filler))
        assert bits == pytest.approx(rec["log_perplexity"], abs=1e-3)
        assert _bits_with_plain_transformers(folder, template.format(filler)) == pytest.approx(bits, abs=1e-3)
    digits = [token_texts(model.tokenizer)[i] for i in model.tokenizer(template.format("460317"))["input_ids"][-6:]]
    assert digits == list("460317")  # every digit its own token


@pytest.mark.slow
def test_the_demo_canary_ranks_first_among_all_million_fillers():
    model = load_model(_demo())
    template = Template("The secret code is {d:6}")
    lps = token_scoring.score_space(model, template)
    assert int(np.count_nonzero(lps <= lps[template.index_of("460317")])) == 1
    assert int(np.count_nonzero(lps <= lps[template.index_of("730912")])) == \
        read_training(_demo())["demo"]["exact"]["fillers"]["730912"]["rank"]
