"""Verbatim extraction: greedy decoding against transformers' generate and a step-by-step loop, the
suffix probability against the one per-text reader, the rates and files against a model whose answers
are known by construction."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ssviz.errors import SettingsError, StoppedError
from ssviz.longtail.verbatim import (
    COLUMNS,
    corpus_texts,
    extraction_probability,
    fit_log_linear,
    greedy_decode,
    read_rows,
    save,
    verbatim,
)
from ssviz.models import LanguageModel, Vocab
from ssviz.scoring import read_ids
from tests.test_any_model import ElmanModel


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny_transformer(request):
    pytest.importorskip("transformers")
    from ssviz.models.hf import HFLanguageModel
    tokenizer = request.getfixturevalue("digit_tokenizer" if request.param == "llama" else "merge_tokenizer")
    # a large init range: far from uniform, so a wrong argmax shows (no near-ties)
    return HFLanguageModel.build(request.param, tokenizer, layers=2, heads=2, hidden=16, context=64, seed=3,
                                 init_range=0.3)


def random_prompts(vocab_size: int, lengths, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab_size, (n,), generator=g).tolist() for n in lengths]


def test_greedy_equals_generate(tiny_transformer):
    """The same continuations as transformers' generate(do_sample=False), prompt lengths mixed, small batches."""
    model = tiny_transformer
    steps = 12
    prompts = random_prompts(len(model.vocab), [5, 9, 5, 5, 9, 1, 5])
    got = greedy_decode(model, prompts, steps, batch_size=2).tokens
    for n in sorted({len(p) for p in prompts}):
        rows = [i for i, p in enumerate(prompts) if len(p) == n]
        ids = torch.tensor([prompts[i] for i in rows])
        with torch.no_grad():
            ref = model.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps,
                                       do_sample=False, eos_token_id=None, pad_token_id=0)
        np.testing.assert_array_equal(got[rows], ref[:, n:].numpy())
    targets = random_prompts(len(model.vocab), [steps] * len(prompts), seed=3)
    np.testing.assert_array_equal(greedy_decode(model, prompts, steps, targets=targets, batch_size=2).tokens, got)


def step_by_step(model: LanguageModel, prompt, steps: int) -> list[int]:
    """The obvious loop: one row, one unit at a time, the argmax fed back."""
    state = model.initial_state(1)
    for t in prompt:
        lp, state = model.step(torch.tensor([t]), state)
    out = []
    for _ in range(steps):
        tok = int(lp[0].argmax())
        out.append(tok)
        lp, state = model.step(torch.tensor([tok]), state)
    return out


@pytest.fixture(params=["lstm", "gru", "minimal"])
def char_model(request, tiny_model, tiny_gru):
    return {"lstm": tiny_model, "gru": tiny_gru, "minimal": ElmanModel(list(tiny_model.vocab.chars), seed=7)}[
        request.param]


def test_greedy_equals_step_by_step_on_character_models(char_model):
    prompts = random_prompts(len(char_model.vocab), [6, 6, 3, 6, 1], seed=1)
    got = greedy_decode(char_model, prompts, 15, batch_size=2).tokens
    for row, prompt in zip(got, prompts):
        assert row.tolist() == step_by_step(char_model, prompt, 15)
    # reading the true suffix from the same prompt state leaves the greedy continuation as it was
    targets = random_prompts(len(char_model.vocab), [15] * len(prompts), seed=3)
    np.testing.assert_array_equal(greedy_decode(char_model, prompts, 15, targets=targets, batch_size=2).tokens, got)


def test_suffix_log_probability_equals_the_reader(tiny_model, tiny_transformer):
    """Teacher-forced along the true suffix from the prompt's cached state = the full text read from scratch."""
    for model in (tiny_model, tiny_transformer):
        rows = random_prompts(len(model.vocab), [14, 14, 20], seed=2)
        k = 6
        dec = greedy_decode(model, [r[:k] for r in rows], 8, targets=[r[k:k + 8] for r in rows])
        ref = read_ids(model, [r[:k + 8] for r in rows])
        for got, reading in zip(dec.target_logp, ref):
            np.testing.assert_allclose(got, reading.logp[k - 1:], atol=1e-4)


def test_extraction_probability_is_stable():
    np.testing.assert_allclose(extraction_probability(math.log(0.3), 10), 1 - 0.7 ** 10)
    assert extraction_probability(-200.0, 1000) == pytest.approx(1000 * math.exp(-200.0), rel=1e-12)  # (1-p)^n = 1
    assert extraction_probability(0.0, 1) == 1.0
    assert extraction_probability(math.log(1e-20), 1) == pytest.approx(1e-20, rel=1e-12)
    assert extraction_probability(-np.inf, 100) == 0.0


def test_fit_log_linear_recovers_a_line():
    x = np.array([1, 2, 4, 8, 16, 32])
    fit = fit_log_linear(x, 0.1 + 0.2 * np.log10(x), weights=[5, 1, 1, 1, 1, 9])
    assert fit["slope"] == pytest.approx(0.2) and fit["intercept"] == pytest.approx(0.1)
    assert fit["r2"] == pytest.approx(1.0) and fit["points"] == 6
    assert fit_log_linear([4, 4], [0.1, 0.3]) is None


class CycleModel(LanguageModel):
    """Knows one thing: after letter i comes letter i + 1 (probability ``p``); its answers are known exactly."""

    def __init__(self, p: float = 0.9):
        self.vocab = Vocab(list("abcdefghijklmnopqrstuvwxyz "))
        v = len(self.vocab)
        table = torch.full((v, v), (1 - p) / (v - 1))
        for i in range(v):
            table[i, (i + 1) % v] = p
        self.table = table.log()

    def initial_state(self, batch_size):
        return torch.zeros(batch_size)

    def step(self, tokens, state):
        return self.table[tokens], state + 1

    def select_state(self, state, index):
        return state[index]


CYCLE = "abcdefghijklmnopqrstuvwxyz abcdefghij"  # every unit the model's top choice
OTHER = "the quick brown fox jumps over the lazy dog"


def cycle_corpus() -> str:
    return "\n".join([CYCLE, OTHER, CYCLE, "short", CYCLE, "caf\u00e9 " * 10, OTHER, "zyx" * 10]) + "\n"


def test_rates_rows_and_duplicates_on_a_model_known_by_construction():
    model = CycleModel(0.9)
    res = verbatim(model, cycle_corpus(), prefix=5, suffix=10)
    assert res.lines == 8 and res.distinct == 5 and res.short == 1 and res.unencodable == 1
    assert res.line.tolist() == [0, 1, 7]  # each distinct text once, at its first line
    assert res.duplicates.tolist() == [3, 2, 1]
    assert res.extractable.tolist() == [True, False, False]
    assert res.match_fraction[0] == 1.0
    # "zyx...": from 'y' the model says 'z', from 'z' it says ' ': greedy continues "z" + " abcdefgh"
    prompt = "zyxzy"
    greedy = "z abcdefgh"
    truth = ("zyx" * 10)[5:15]
    assert res.match_fraction[2] == pytest.approx(np.mean([a == b for a, b in zip(greedy, truth)]))
    assert prompt == ("zyx" * 10)[:5]
    # log p of the true suffix: the exact product of the table's entries
    assert res.log_p_suffix[0] == pytest.approx(10 * math.log(0.9), abs=1e-5)
    small = math.log(0.1 / 26)
    other = OTHER[4:15]
    expected = sum(math.log(0.9) if ord(b) == ord(a) + 1 or (a == "z" and b == " ") or (a == " " and b == "a")
                   else small for a, b in zip(other, other[1:]))
    assert res.log_p_suffix[1] == pytest.approx(expected, abs=1e-4)
    summary = res.to_json()
    assert summary["rates_by_duplicates"] == {"1": 0.0, "2": 0.0, "3": 1.0}
    top = summary["by_duplicates"][-1]
    assert top["extraction_probability"]["1"] == pytest.approx(0.9 ** 10, rel=1e-5)
    assert top["extraction_probability"]["10"] == pytest.approx(1 - (1 - 0.9 ** 10) ** 10, rel=1e-5)
    assert summary["duplicates_law"]["slope"] > 0


def test_prefix_sweep_measures_the_same_lines_and_progress_reaches_the_total():
    model = CycleModel(0.9)
    calls = []
    res = verbatim(model, cycle_corpus(), prefix=5, suffix=10, prefixes=[1, 20], progress=lambda d, t: calls.append((d, t)))
    assert [r["prefix"] for r in res.by_prefix] == [1, 20]
    assert [r["texts"] for r in res.by_prefix] == [3, 3]  # 30 units needed: all but "short" (and the unreadable)
    assert [r["extractable"] for r in res.by_prefix] == [1, 1]
    assert calls[-1][0] == calls[-1][1] == 3 + 2 * 3
    assert "prefix_law" in res.to_json()


def test_max_per_count_is_a_seeded_choice():
    text = "\n".join(f"{w} abcdefghijklmnop" for w in ["x", "y", "z", "w", "v"] * 1) + "\n" + CYCLE + "\n" + CYCLE
    model = CycleModel()
    a = verbatim(model, text, prefix=3, suffix=5, max_per_count=2, seed=4)
    b = verbatim(model, text, prefix=3, suffix=5, max_per_count=2, seed=4)
    assert a.line.tolist() == b.line.tolist() and a.tested == 3 and a.left_out == 3
    assert sorted(a.duplicates.tolist()) == [1, 1, 2]


def test_bad_settings_and_stop():
    model = CycleModel()
    with pytest.raises(SettingsError):
        verbatim(model, cycle_corpus(), prefix=0, suffix=3)
    with pytest.raises(StoppedError):
        verbatim(model, cycle_corpus(), prefix=2, suffix=3, stop=lambda: True)


class BrokenModel(CycleModel):
    """Gives NaN once it has read 4 units: decoding must refuse it, not return arbitrary units."""

    def step(self, tokens, state):
        lp, state = super().step(tokens, state)
        return torch.where(state[:, None] > 4, torch.full_like(lp, float("nan")), lp), state


def test_a_model_that_gives_nan_is_refused():
    from ssviz.errors import NonFiniteError
    greedy_decode(BrokenModel(), [[0, 1]], 2)  # reads 3 units: fine
    with pytest.raises(NonFiniteError):
        greedy_decode(BrokenModel(), [[0, 1]], 6)


def test_files_have_the_contract_columns(tmp_path):
    res = verbatim(CycleModel(), cycle_corpus(), prefix=5, suffix=10)
    summary = save(res, tmp_path / "out", {"corpus": "c.txt"})
    header = (tmp_path / "out" / "verbatim.csv").read_text().splitlines()[0]
    assert header == ",".join(COLUMNS)
    assert "true" in (tmp_path / "out" / "verbatim.csv").read_text()
    rows = read_rows(tmp_path / "out" / "verbatim.csv")
    assert rows["extractable"].tolist() == res.extractable.tolist()
    np.testing.assert_allclose(rows["log_p_suffix"], res.log_p_suffix, rtol=0, atol=0)
    assert json.loads((tmp_path / "out" / "verbatim.json").read_text())["corpus"] == summary["corpus"] == "c.txt"


def test_cli(tmp_path, tiny_model, capsys):
    from ssviz.cli import main
    ckpt = tiny_model.save(tmp_path / "m.safetensors")
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(["the secret is 12 and more text"] * 3 + ["a line seen once and long enough"] +
                                ["tiny"]) + "\n")
    out = tmp_path / "out"
    assert main(["verbatim", str(corpus), "--checkpoint", str(ckpt), "--prefix", "8", "--suffix", "6",
                 "--out", str(out), "--prefixes", "4,8", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["tested"] == 2 and payload["short"] == 1 and set(payload["rates_by_duplicates"]) == {"1", "3"}
    assert [r["prefix"] for r in payload["by_prefix"]] == [4, 8]
    assert read_rows(out / "verbatim.csv")["duplicates"].tolist() == [3, 1]
    # bad inputs: one line, exit 2
    assert main(["verbatim", str(tmp_path / "missing.txt"), "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    assert main(["verbatim", str(corpus), "--checkpoint", str(ckpt), "--out", str(corpus)]) == 2
    assert main(["verbatim", str(corpus), "--checkpoint", str(ckpt), "--out", str(out), "--prefixes", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and "Traceback" not in err


def test_corpus_texts_counts_identical_lines_only():
    t = corpus_texts(CycleModel(), "ab\nab \nab\n\nab")
    assert t.lines == 5 and t.duplicates.tolist() == [3, 1, 1] and t.line.tolist() == [0, 1, 3]
