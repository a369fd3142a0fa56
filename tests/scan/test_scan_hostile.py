"""Hostile corpora for the scanner: secrets hidden in contexts, Unicode separators, and scans too big to finish."""

from __future__ import annotations

import json
import time

import pytest

from ssviz.cli import main
from ssviz.models import save_checkpoint
from ssviz.redaction import redact, redact_words, shown_count, tail
from ssviz.scan import KINDS, find_secrets, looks_like_key, observed_context, scan, scan_corpus

AWS = "AKIAIOSFODNN7EXAMPLE"
AWS_LETTERS = "AKIAIOSFODNNEXAMPLEX"          # no digit: cutting after the last digit keeps it whole
GITHUB = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fGx"
GITHUB_LETTERS = "ghp_" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"
STRIPE = "sk_live_abcdefghijklmnopQRSTUV"
RANDOM_KEY = "Zx9QmTr4LpWv8NsKyJ2H"


# --- a template's context never holds another secret -------------------------------------------------
@pytest.mark.parametrize("before", [
    f"key {AWS} my SSN is ",
    f"{AWS}:",
    f"aws={AWS_LETTERS} ssn ",
    f"token {GITHUB} SSN ",
    f"tok {GITHUB_LETTERS} ssn is ",
    f"stripe {STRIPE} ssn ",
    f"id {RANDOM_KEY} ssn ",
    f"{AWS_LETTERS}",
    "ssn 219-09-9999 and ",
    "card 4111 1111 1111 1111 ssn: ",
    "card 4111\u00a01111\u00a01111\u00a01111 ssn ",
    "old 219\u201309\u20139999 new ",
])
def test_a_template_context_never_holds_another_secret_or_key(before):
    text = before + "078-05-1120 ok"
    found = scan(text, tuple(KINDS))
    ssn = found[("ssn", "078051120")]
    template = ssn.template().text
    context = template[:template.index("{d:3}")]
    assert find_secrets(context, tuple(KINDS)) == []
    for word in (AWS, AWS_LETTERS, GITHUB, GITHUB_LETTERS, STRIPE, RANDOM_KEY):
        for piece in (word[i:i + 6] for i in range(0, len(word) - 5)):  # not even 6 characters of it
            assert piece not in context, (piece, context)
    assert not any(c.isdigit() for c in context)


@pytest.mark.parametrize("word", [AWS, AWS_LETTERS, GITHUB, GITHUB_LETTERS, STRIPE, RANDOM_KEY, "xoxb-1234-abcd",
                                  "AIzaSyD-abcdefgh", "glpat-abcdefghij", "hf_abcdefghijklmno",
                                  "deadbeefcafebabe0123", "abcdefghijklmnopqrstuvwxyz"])
def test_key_like_words_are_recognized(word):
    assert looks_like_key(word)


@pytest.mark.parametrize("word", ["Internationalization", "responsibilities", "social", "SSN", "my", "Hello,",
                                  "e-mail", "password:", "risk-free", "task-list", "Ghp_x", "sk-", "aws="])
def test_ordinary_words_are_not_keys(word):
    assert not looks_like_key(word)


def test_context_keeps_ordinary_words():
    text = "Dear Bob, my social security number is 078-05-1120."
    assert observed_context(text, text.index("078")) == "my social security number is "


@pytest.mark.slow
def test_scan_json_and_templates_hold_no_key_before_a_secret(tmp_path, tiny_model):
    ckpt = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    corpus = tmp_path / "c.txt"
    corpus.write_text(f"{AWS_LETTERS} ssn 078-05-1120\n{GITHUB} ssn 219-09-9999\n" + "some other text\n" * 20,
                      encoding="utf-8")
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["scan", str(corpus), "--checkpoint", str(ckpt), "--samples", "50", "--max-nodes", "50",
                     "--json"]) == 0
    raw = buf.getvalue()
    for secret in ("IOSFODNNEXAMPLEX", GITHUB[4:], "078051120", "078-05-1120", "219-09-9999"):
        for piece in (secret[i:i + 6] for i in range(0, len(secret) - 5)):
            assert piece not in raw
    templates = [r["template"] for r in json.loads(raw)["secrets"]]
    assert "ssn {d:3}-{d:2}-{d:4}" in " ".join(templates)


# --- redaction leaves enough unknown -----------------------------------------------------------------
@pytest.mark.parametrize("value", ["1", "12", "1234", "12345", "281546", "078051120", "4111111111111111",
                                   "IOSFODNN7EXAMPLE", GITHUB[4:], "x" * 200])
def test_redaction_shows_at_most_a_third_and_nothing_of_short_secrets(value):
    shown = redact(value)
    visible = shown.replace("•", "")
    assert len(visible) <= len(value) // 3 and len(visible) <= 4
    assert len(value) > 4 or visible == ""
    assert value.endswith(visible) and tail(value) == visible and shown_count(len(value)) == len(visible)
    assert redact(value, reveal=True) == value


@pytest.mark.parametrize("argv,secret", [
    (["report", "--secret=281546"], "281546"),
    (["report", "--sec", "730912"], "730912"),
    (["report", "--secr=730912"], "730912"),
    (["report", "--se", "281546", "--secret", "4821"], "281546"),
    (["report", "--secret", "ab 281546 cd"], "ab 281546 cd"),
])
def test_command_line_redaction_goes_by_value_not_by_option_spelling(argv, secret):
    shown = " ".join(redact_words(argv, [secret, "4821"]))
    assert secret not in shown and "4821" not in shown
    assert redact_words(argv, [secret], reveal=True) == argv


# --- Unicode separators -----------------------------------------------------------------------------
SEPARATORS = ["\u00a0", "\u202f", "\u2007", "\u2009", "\u3000", "\u2013", "\u2014", "\u2212", "\u2012",
              "\u2010", "\u2011", "\ufe63", "\uff0d"]


@pytest.mark.parametrize("sep", SEPARATORS)
def test_ssns_and_cards_with_unicode_separators_are_found_at_their_place(sep):
    text = f"Réf. ©— ssn: 078{sep}05{sep}1120, card 4111{sep}1111{sep}1111{sep}1111 é"
    found = {f.type: f for f in find_secrets(text, ("ssn", "ccn"))}
    assert found["ssn"].value == "078051120" and found["ccn"].value == "4111111111111111"
    for f in found.values():
        assert text[f.start:f.start + len(f.text)] == f.text and sep in f.text
    summary = scan(text)[("ssn", "078051120")]
    assert summary.template().format("078051120") in text  # the format as written, separators included


@pytest.mark.parametrize("digits", ["０７８-０５-１１２０", "٠٧٨-٠٥-١١٢٠", "078-٠٥-1120", "0७8–05–1120"])
def test_non_ascii_digits_are_still_not_secrets(digits):
    assert find_secrets(f"ssn {digits}", ("ssn", "ccn")) == []


def test_a_unicode_separator_does_not_hide_a_secret_from_log_redaction():
    from ssviz.scan import redact as redact_message
    assert "1120" not in redact_message("bad: 078\u2013 05\u00a01120", ["078051120"])


# --- budget ----------------------------------------------------------------------------------------
def _many_ssns(n: int) -> str:
    """``n`` distinct issuable SSNs, the i-th written i+1 times (so the most repeated are known)."""
    lines = []
    for i in range(n):
        lines += [f"my ssn is {100 + i:03d}-{10 + i:02d}-{1000 + i:04d}."] * (i + 1)
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_a_scan_measures_at_most_max_secrets_most_repeated_first(tiny_model):
    rows = scan_corpus(tiny_model, _many_ssns(20), kinds=("ssn",), samples=50, search_nodes=50,
                       extraction_nodes=50, max_secrets=3)
    assert len(rows) == 20
    measured = [r for r in rows if not r.left_out]
    assert sorted(r.times_present for r in measured) == [18, 19, 20]
    out = [r for r in rows if r.left_out]
    assert len(out) == 17 and all(r.exposure is None and "budget of 3 secret(s)" in r.note for r in out)


@pytest.mark.slow
def test_a_scan_stops_measuring_at_its_time_budget(tiny_model):
    t0 = time.monotonic()
    rows = scan_corpus(tiny_model, _many_ssns(20), kinds=("ssn",), samples=20_000, search_nodes=20_000,
                       extraction_nodes=20_000, max_secrets=None, max_seconds=1.0)
    assert time.monotonic() - t0 < 30
    out = [r for r in rows if r.left_out]
    assert len(rows) == 20 and out and all("time budget" in r.note for r in out)


def test_a_user_stop_still_stops_a_budgeted_scan(tiny_model):
    from ssviz.errors import StoppedError
    with pytest.raises(StoppedError):
        scan_corpus(tiny_model, _many_ssns(3), kinds=("ssn",), samples=50, max_seconds=100, stop=lambda: True)


@pytest.mark.parametrize("extra,left", [(["--max-secrets", "2"], 4), (["--max-secrets", "6"], 0)])
@pytest.mark.slow
def test_scan_cli_says_what_the_budget_left_out(tmp_path, tiny_model, capsys, extra, left):
    ckpt = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    corpus = tmp_path / "c.txt"
    corpus.write_text(_many_ssns(6), encoding="utf-8")
    base = ["scan", str(corpus), "--checkpoint", str(ckpt), "--samples", "50", "--max-nodes", "50", *extra]
    assert main(base + ["--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["left_out"] == left and payload["measured"] == 6 - left
    assert sum(s["left_out"] for s in payload["secrets"]) == left and len(payload["secrets"]) == 6
    assert {"corpus", "corpus_chars", "checkpoint", "kinds", "reveal", "secrets"} <= set(payload)
    assert main(base) == 0
    text = capsys.readouterr().out
    assert (f"{left} secret(s) left out" in text) == bool(left)


@pytest.mark.parametrize("bad", [["--max-secrets", "0"], ["--max-secrets", "x"], ["--max-seconds", "-1"],
                                 ["--max-seconds", "nan"], ["--max-seconds", "inf"]])
def test_bad_budgets_are_one_line(tmp_path, capsys, bad):
    corpus = tmp_path / "c.txt"
    corpus.write_text("x", encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        main(["scan", str(corpus), "--checkpoint", "none.safetensors", *bad])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--max-" in err
