"""Secret scanning: SSN and card number rules, templates, and ground-truth recovery on synthetic mail."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssviz.enron.maildir import build_corpora
from ssviz.enron.scanner import find_secrets, format_slots, luhn_check_digit, luhn_valid, observed_context, scan
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
    assert s.last4 == "9999"


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
