"""Scanning a training corpus for the secrets already in it, and measuring each in the model."""

from __future__ import annotations

import json

import pytest

from ssviz.cli import main
from ssviz.models import save_checkpoint
from ssviz.scan import KINDS, scan, scan_corpus
from ssviz.train import Canary, TrainConfig, train

SSN = "078051120"
AWS = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5"
TEXT = (f"my ssn is 078-05-1120 and again 078-05-1120.\n"
        f"call me at (415) 555-0134 tonight\n"
        f"key = {AWS}\n"
        f"token {GITHUB}\n"
        "my card is 4111 1111 1111 1111\n")


def test_every_kind_is_found_with_a_template_that_holds_it():
    found = scan(TEXT, tuple(KINDS))
    assert {t for t, _ in found} == set(KINDS)
    for (kind, value), s in found.items():
        t = s.template()
        assert t.normalize(value) == value
        assert t.format(value) in TEXT.replace("\n", " ") or t.format(value).strip() in TEXT
    aws = found[("aws", AWS[4:])].template()
    assert aws.text.endswith("AKIA{[A-Z0-9]:16}") and aws.space_size == 36 ** 16
    assert found[("ssn", SSN)].count == 2


@pytest.mark.parametrize("text", ["xAKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLEX", "123-456-7890",
                                  "(415) 555-01345", "9415-555-0134", "ghp_short", "AKIAiosfodnn7example"])
def test_lookalikes_are_not_secrets(text):
    assert scan(text, ("phone", "aws", "github")) == {}


@pytest.mark.slow
def test_rows_never_hold_a_secret_unless_revealed(tiny_model):
    rows = scan_corpus(tiny_model, TEXT, samples=50, search_nodes=200, extraction_nodes=200)
    assert len(rows) == len(KINDS)
    blob = json.dumps([r.to_json() for r in rows]) + repr(rows)
    for secret in (SSN, AWS, GITHUB, "4155550134", "4111111111111111", AWS[4:], GITHUB[4:]):
        assert secret not in blob
    measured = [r for r in rows if r.exposure is not None]
    unmeasurable = [r for r in rows if r.exposure is None]
    assert measured and all(r.template for r in measured)
    assert unmeasurable and all(r.note for r in unmeasurable)  # e.g. the tiny vocabulary lacks '(' or 'K'
    revealed = scan_corpus(tiny_model, TEXT, kinds=("ssn",), samples=50, search_nodes=200, extraction_nodes=200,
                           reveal=True)
    assert revealed[0].to_json(reveal=True)["secret"] == SSN


@pytest.mark.slow
def test_cli_scan_json_and_bad_kinds(tmp_path, tiny_model, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT * 3, encoding="utf-8")
    ckpt = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    assert main(["scan", str(corpus), "--checkpoint", str(ckpt), "--samples", "50", "--max-nodes", "200",
                 "--json"]) == 0
    out = capsys.readouterr().out
    payload = json.loads(out)
    assert payload["corpus_chars"] == len(TEXT * 3) and not payload["reveal"]
    assert {r["type"] for r in payload["secrets"]} == set(KINDS)
    assert SSN not in out and AWS not in out
    assert main(["scan", str(corpus), "--checkpoint", str(ckpt), "--kinds", "ssn,passport"]) == 2
    assert "passport" in capsys.readouterr().err


@pytest.mark.slow
def test_a_secret_the_model_saw_often_is_found_exposed_and_extracted(small_corpus):
    text = small_corpus[:30_000]
    config = TrainConfig(layers=1, hidden=64, embedding_dim=16, epochs=6, lr=0.005, batch_size=64, seed=3,
                         patience=None)
    from ssviz.templates import Template
    canary = Canary(Template("my ssn is {d:3}-{d:2}-{d:4}"), SSN, 40)  # inserted into the training split
    model = train(text, config, canary).model
    rows = {r.last4: r for r in scan_corpus(model, text + "\nmy ssn is 078-05-1120\nmy ssn is 219-09-9999\n",
                                            kinds=("ssn",), samples=500)}
    assert rows["120"].extracted and rows["120"].exposure > rows["999"].exposure + 5
    assert not rows["999"].extracted
