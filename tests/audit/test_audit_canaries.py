"""Canary kinds: random template fillers, new units the training data never uses, bigram samples.

Each kind must give distinct, seeded canaries that the audit can insert and score; the new-unit
choice is the model's answer (a character model and a tokenizer answer differently for the same
corpus); bigram samples follow the corpus's bigram frequencies.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from ssviz.audit.canaries import (CANARY_KINDS, NEW_UNIT_POOL, BigramModel, bigram_canaries, new_unit_candidates,
                                  new_units, with_alphabet)
from ssviz.audit.run import AuditSettings, canary_design, load_audit
from ssviz.cli import main
from ssviz.corpus import split_text
from ssviz.errors import SettingsError
from ssviz.templates import Template
from ssviz.train import TrainConfig, new_model

LSTM = TrainConfig(layers=1, hidden=16, embedding_dim=8, epochs=1, batch_size=64, lr=0.005, patience=None)
GPT2 = TrainConfig(arch="gpt2", layers=1, hidden=16, heads=2, vocab_size=300, epochs=1, batch_size=64, lr=0.005,
                   patience=None)


@pytest.fixture(scope="module")
def clean(small_corpus):
    return split_text(small_corpus[:15_000], 0.1)


def test_with_alphabet_keeps_literals_and_lengths_and_writes_any_alphabet():
    t = Template("Code {{x}} {d:3}-{a:2} end")
    u = with_alphabet(t, "ab]-c\n")
    assert u.prefix == t.prefix and u.filler_length == 5
    assert set(u.filler_alphabets) == {"abc-"}  # ']' and line breaks cannot be canary characters
    assert u.format("ab-ca") == "Code {x} ab--ca end"


@pytest.fixture(scope="module")
def cyrillic(clean):
    """The training text with rare Cyrillic letters outside the pool, each once, in its training part."""
    corpus = "ёђѓєѕіїјљњћќ\n" + clean.text
    candidates = new_unit_candidates(corpus)
    assert "а" in candidates and "р" in candidates and set(candidates) == set(NEW_UNIT_POOL)
    return split_text(corpus, 0.1), candidates


def test_a_character_model_takes_every_absent_character_as_a_new_unit(cyrillic):
    split, candidates = cyrillic
    char_model = new_model(LSTM, split, with_alphabet(Template("x {d:2}"), candidates))
    assert new_units(char_model, split.train, candidates) == candidates  # every absent character joins the vocab
    no_room = new_model(LSTM, split, Template("x {d:2}"))  # a vocabulary built without them cannot read them
    assert new_units(no_room, split.train, candidates) == ""


@pytest.mark.slow
def test_a_tokenizer_takes_only_characters_whose_tokens_the_corpus_never_produces(cyrillic):
    split, candidates = cyrillic
    tok_model = new_model(GPT2, split, Template("x {d:2}"))
    got = new_units(tok_model, split.train, candidates)
    seen = set(tok_model.encode(split.train))
    assert got and all(not seen.intersection(tok_model.encode(c)) for c in got)
    # 'р' (D1 80) shares its first UTF-8 byte with 'ё' (D1 91), whose bytes the tokenizer has read: not a
    # new unit for it, while 'а' (D0 B0) and the Greek letters are
    assert "р" not in got and "а" in got and "α" in got


@pytest.mark.parametrize("kind", CANARY_KINDS)
def test_each_kind_gives_distinct_seeded_canaries_the_audit_can_insert(clean, kind):
    s = AuditSettings("The code is {d:6}", canaries=60, seed=4, canary_kind=kind)
    template, fillers, model = canary_design(s, LSTM.validate(), clean)
    _, again, _ = canary_design(s, LSTM.validate(), clean)
    _, other, _ = canary_design(AuditSettings("The code is {d:6}", canaries=60, seed=5, canary_kind=kind),
                                LSTM.validate(), clean)
    assert fillers == again and fillers != other and len(set(fillers)) == 60
    texts = [template.format(f) for f in fillers]
    assert all(t.startswith("The code is ") and len(t) == len("The code is ") + 6 and "\n" not in t for t in texts)
    assert all(c in model.vocab for t in texts for c in t)  # the model can read every canary
    used = set(clean.text)
    if kind == "random":
        assert all(f.isdigit() for f in fillers)
    elif kind == "new-token":
        assert all(c not in used for f in fillers for c in f)
    else:
        assert all(c in used for f in fillers for c in f)
        pairs = {clean.train[i:i + 2] for i in range(len(clean.train) - 1)}
        assert all(t[i:i + 2] in pairs for t in texts for i in range(len("The code is ") - 1, len(t) - 1))


def test_bigram_samples_follow_the_corpus_frequencies(clean):
    bigram = BigramModel(clean.train)
    template = with_alphabet(Template("x {d:1}"), bigram.alphabet)
    draws = Counter(bigram.sample(template, 20_000, np.random.default_rng(0)))
    after_space = Counter(clean.train[i + 1] for i in range(len(clean.train) - 1)
                          if clean.train[i] == " " and clean.train[i + 1] in bigram.alphabet)
    total = sum(after_space.values())
    for c, n in after_space.most_common(5):
        assert draws[c] / 20_000 == pytest.approx(n / total, abs=0.015)


def test_too_few_distinct_bigram_canaries_and_bad_kinds_are_one_line(clean):
    bigram = BigramModel("ab" * 50)
    with pytest.raises(SettingsError, match="distinct canaries"):
        bigram_canaries(with_alphabet(Template("b {d:2}"), bigram.alphabet), bigram, 10, seed=0)
    with pytest.raises(SettingsError, match="canary kind"):
        AuditSettings("x {d:3}", canary_kind="fancy").validate()


def test_cli_refuses_an_unknown_canary_kind(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["audit", "c.txt", "--template", "x {d:3}", "--out", str(tmp_path / "o"), "--canary-kind", "fancy"])
    assert e.value.code == 2 and "--canary-kind: invalid choice" in capsys.readouterr().err


def test_a_bad_canary_kind_in_audit_json_is_one_line(tmp_path):
    import shutil

    from ssviz.audit import AuditError, demo
    folder = tmp_path / "a"
    shutil.copytree(demo.BUNDLED_DIR / "plain", folder)
    doc = json.loads((folder / "audit.json").read_text())
    assert load_audit(folder)["canary_kind"] == "random"  # audits from before the kinds read as random
    doc["results"]["canary_kind"] = 5
    (folder / "audit.json").write_text(json.dumps(doc))
    with pytest.raises(AuditError, match="results.canary_kind is 5: it must be null or one of random"):
        load_audit(folder)


TINY = ["--layers", "1", "--hidden", "16", "--embedding-dim", "8", "--epochs", "1", "--batch-size", "64",
        "--lr", "0.005", "--patience", "0"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["new-token", "bigram"])
def test_the_audit_runs_with_each_kind_and_reads_back(tmp_path, capsys, small_corpus, kind):
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_corpus[:12_000], encoding="utf-8")
    out = tmp_path / "run"
    assert main(["audit", str(corpus), "--template", "The code is {d:5}", "--canaries", "40", "--insertions", "2",
                 "--canary-kind", kind, "--out", str(out), "--json", *TINY]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["canary_kind"] == kind and payload["canary_template"] != "The code is {d:5}"
    assert payload["epsilon_lower_fdp"] is not None and payload["auc_ci"][0] <= payload["auc"] <= payload["auc_ci"][1]
    again = load_audit(out)
    assert again["canary_kind"] == kind and again["auc"] == pytest.approx(payload["auc"])
    assert again["epsilon_lower_fdp"] == pytest.approx(payload["epsilon_lower_fdp"])
    assert main(["audit", "--from", str(out)]) == 0
    human = capsys.readouterr().out
    assert f"{kind} canaries" in human and "(f-DP, Gaussian curve)" in human
