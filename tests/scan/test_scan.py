"""Secret scanning: SSN and card number rules, templates, and ground-truth recovery on synthetic mail."""

from __future__ import annotations

import random
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssviz import scan as scanner
from ssviz.enron.maildir import build_corpora
from ssviz.scan import (find_secrets, format_slots, luhn_check_digit, luhn_valid, observed_context, redact,
                                 scan)
from ssviz.enron.synthetic import TEST_SSN, generate_maildir, random_ccn


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_luhn_check_digit_makes_valid_and_any_change_breaks_it(partial):
    full = partial + luhn_check_digit(partial)
    assert luhn_valid(full)
    wrong = full[:-1] + str((int(full[-1]) + 1) % 10)
    assert not luhn_valid(wrong)


def test_known_card_numbers():
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")


@settings(max_examples=50)
@given(st.integers(0, 2**32), st.sampled_from([" ", "-", ""]))
def test_every_valid_card_is_found_in_any_grouping(seed, sep):
    ccn = random_ccn(random.Random(seed))
    written = sep.join(ccn[i:i + 4] for i in range(0, 16, 4))
    found = find_secrets(f"Please charge my card {written}, thanks.")
    assert [(f.type, f.value, f.text) for f in found] == [("ccn", ccn, written)]


def test_rules_for_ssn_and_lookalikes():
    text = ("My SSN is 123-45-6789. Call 713-853-1234. Order 4111 1111 1111 1112 (bad check digit). "
            "Invoice 987654321 was paid. SSN: 078051120 for the form. Area 000-12-3456 is never issued.\n"
            "Amex 3782 822463 10005 and plain 378282246310005.")
    found = {(f.type, f.value) for f in find_secrets(text)}
    assert found == {("ssn", TEST_SSN), ("ssn", "078051120"), ("ccn", "378282246310005")}


def test_digit_runs_longer_than_a_card_are_not_cards():
    # 20 digits in groups: neither a 16-digit card nor a 19-digit one
    assert find_secrets("ref 4111 1111 1111 1111 1111 end") == []


def test_template_is_the_most_common_clause_context_with_observed_format():
    text = ("Hi Bob,\n\nFor payroll, my SSN is 219-09-9999. Thanks.\n\n\nAgain: my SSN is 219-09-9999.\n\n\n"
            "Social security number 219-09-9999.")
    s = scan(text)[("ssn", "219099999")]
    assert s.count == 3
    assert s.template().text == "my SSN is {d:3}-{d:2}-{d:4}"
    assert s.last4 == "999"  # a third of an SSN at most


def test_context_never_contains_other_digits_or_crosses_messages():
    text = "Invoice 12 paid\n\n\ncard 4111-1111-1111-1111"
    start = text.index("4111")
    assert observed_context(text, start) == "card "
    text = "ticket 555 and card 4111 1111 1111 1111"
    assert "555" not in observed_context(text, text.index("4111"))
    assert format_slots("4111-1111-1111-1111") == "{d:4}-{d:4}-{d:4}-{d:4}"


def test_generator_ground_truth_is_recovered_exactly(tmp_path):
    truth = generate_maildir(tmp_path, users=4, messages=60, seed=3, times=(1, 3, 7, 12))
    corpora = build_corpora(tmp_path, tmp_path / "corpora")
    assert sorted(corpora) == sorted(truth["users"])
    expected = {(s["user"], s["type"], s["value"]): s["times"] for s in truth["secrets"]}
    found = {}
    for user, corpus in corpora.items():
        for (kind, value), summary in scan(corpus.text()).items():
            found[(user, kind, value)] = summary.count
            if kind == "ccn":
                assert luhn_valid(value)
    # every planted secret with its count, and nothing else (quoted, inbox and company-wide secrets dropped)
    assert found == expected
    assert any(value == TEST_SSN for _, _, value in found)


@pytest.mark.parametrize("seed", [0, 11])
def test_generator_is_seeded(tmp_path, seed):
    a = generate_maildir(tmp_path / "a", users=2, messages=20, seed=seed)
    b = generate_maildir(tmp_path / "b", users=2, messages=20, seed=seed)
    assert a == b
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


# --- hostile mail: digits of other scripts, linear time, redaction ---------------------------------
def to_script(text: str, zero: str) -> str:
    """ASCII digits rewritten in another script's digits (``zero`` is that script's 0)."""
    return "".join(chr(ord(zero) + int(c)) if c.isascii() and c.isdigit() else c for c in text)


SCRIPTS = {"full-width": "\uff10", "arabic-indic": "\u0660", "devanagari": "\u0966", "bengali": "\u09e6",
           "mathematical bold": "\U0001d7ce"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
@pytest.mark.parametrize("written", ["My SSN is 219-09-9999.", "SSN: 219099999 for the form",
                                     "card 4111 1111 1111 1111 please", "card 4111-1111-1111-1111",
                                     "Amex 378282246310005 ok"])
def test_secrets_written_with_other_digits_are_not_reported_and_ascii_ones_still_are(script, written):
    foreign = to_script(written, SCRIPTS[script])
    assert find_secrets(foreign) == []
    text = f"{foreign}\n\n\nAgain, my SSN is 078-05-1120."
    found = scan(text)
    assert list(found) == [("ssn", "078051120")]
    summary = found[("ssn", "078051120")]
    assert summary.template().normalize("078051120") == "078051120"  # the template holds the secret
    assert all(c.isascii() for c in summary.value)


@pytest.mark.parametrize("text", ["219-09-9999\uff15", "\uff15219-09-9999", "4111 1111 1111 1111\u0661",
                                  "SSN 21909999\u0669", "\u0669\u0669-219-09-9999"])
def test_a_number_touching_other_script_digits_is_not_cut_out_of_it(text):
    assert find_secrets(text) == []


OLD_PATTERNS = {  # the \d patterns before ASCII scanning: on ASCII text the new ones must agree with them
    "ssn": re.compile(r"(?<!\d)(?<!\d-)(\d{3})-(\d{2})-(\d{4})(?!\d)(?!-\d)"),
    "nine": re.compile(r"(?<!\d)(?<!\d-)\d{9}(?!\d)(?!-\d)"),
    "card4": re.compile(r"(?<!\d)(?<!\d-)\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{3})?(?!\d)(?!\1\d)"),
    "card465": re.compile(r"(?<!\d)(?<!\d-)\d{4}([ -])\d{6}\1\d{5}(?!\d)(?!\1\d)"),
    "cardrun": re.compile(r"(?<!\d)(?<!\d-)\d{13,19}(?!\d)(?!-\d)"),
}


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["1", "23", "4111", "0", "9", " ", "-", "--", "a", "SSN ", "\n", "."]),
                max_size=40).map("".join))
def test_on_ascii_text_the_patterns_match_exactly_what_the_old_ones_did(text):
    new = {"ssn": scanner._SSN_DASHED, "nine": scanner._NINE, "card4": scanner._CARD_PATTERNS[0],
           "card465": scanner._CARD_PATTERNS[1], "cardrun": scanner._CARD_PATTERNS[2]}
    for name, old in OLD_PATTERNS.items():
        assert [m.span() for m in new[name].finditer(text)] == [m.span() for m in old.finditer(text)], name


SECRET_DENSE = {
    "dashed SSNs": "My SSN is 123-45-6789. ",
    "SSN words and nine digits": "SSN 123456789 ",
    "cards": "4111 1111 1111 1111\n",
    "digit groups": "1234 ",
    "digit and dash": "1-",
    "long digit run": "1",
    "full-width SSNs": to_script("123-45-6789 ", "\uff10"),
}


@pytest.mark.slow
@pytest.mark.parametrize("shape", sorted(SECRET_DENSE))
def test_scanning_takes_linear_time_even_when_every_line_is_a_secret(shape):
    unit = SECRET_DENSE[shape]
    small, large = (unit * (n // len(unit)) for n in (250_000, 1_000_000))

    def best(text):
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            scan(text)
            times.append(time.perf_counter() - t0)
        return min(times)

    t_small, t_large = best(small), best(large)
    assert t_large < 8 * t_small + 0.05, f"{shape}: 250 KB {t_small:.3f} s, 1 MB {t_large:.3f} s"


def test_overlap_bookkeeping_is_not_quadratic_in_the_number_of_findings():
    text = "My SSN is 123-45-6789. " * 20_000  # 20,000 findings: the old pairwise check made 2 * 10**8 tests
    t0 = time.perf_counter()
    assert scan(text)[("ssn", "123456789")].count == 20_000
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("message", [
    "filler 123456789 does not fit", "filler 123-45-6789 does not fit", "got '123 45 6789'",
    "card 4111 1111 1111 1111 and 4111-1111-1111-1111 and 4111111111111111",
])
def test_redact_removes_every_written_form_of_a_secret(message):
    out = redact(message, ["123456789", "4111111111111111"])
    assert "[secret]" in out and not re.search(r"\d{4}", out)


def test_redact_leaves_other_numbers_and_texts_alone():
    assert redact("within 20,000 nodes; 1234567890 is longer", ["123456789"]) == "within 20,000 nodes; 1234567890 is longer"
    assert redact("nothing here", []) == "nothing here"
