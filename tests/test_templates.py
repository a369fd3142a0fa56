import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssviz.errors import TemplateError
from ssviz.models import Vocab
from ssviz.templates import PRESETS, Template, parse_template


def test_ssn_template_structure():
    t = parse_template("SSN")
    assert t.prefix == "My SSN is "
    assert t.filler_length == 9
    assert t.space_size == 10 ** 9
    assert t.format("123456789") == "My SSN is 123-45-6789"
    assert t.display("123456789") == "123-45-6789"


def test_presets_sizes():
    sizes = {name: Template(text).space_size for name, text in PRESETS.items()}
    assert sizes == {"SSN": 10 ** 9, "Credit card": 10 ** 16, "Random number (paper)": 10 ** 9, "PIN": 10 ** 4}


@pytest.mark.parametrize("form", ["123456789", "123-45-6789", "My SSN is 123-45-6789", " 123-45-6789 "])
def test_filler_forms_accepted(form):
    assert parse_template("SSN").normalize(form) == "123456789"


def test_custom_sets_ranges_and_escapes():
    t = Template("key {{{[A-C_]:2}}} {x:1}.")
    assert t.slots[0].alphabet == "ABC_"
    assert t.format("A_f") == "key {A_} f."
    assert t.space_size == 4 * 4 * 16
    assert t.normalize("key {A_} f") == "A_f"  # trailing literal may be omitted


@pytest.mark.parametrize("text,msg", [
    ("no slots here", "no slot"),
    ("{d:4} first", "start with literal"),
    ("bad {q:3}", "bad slot"),
    ("open { brace", "bad slot"),
    ("close } brace {d:2}", "unmatched"),
    ("zero {d:0}", "length >= 1"),
    ("range {[z-a]:2}", "bad range"),
    ("", "empty"),
])
def test_template_errors(text, msg):
    with pytest.raises(TemplateError, match=msg):
        Template(text)


def test_filler_that_does_not_fit():
    t = parse_template("PIN")
    for bad in ["12a4", "12345", "My PIN is 12"]:
        with pytest.raises(TemplateError, match="does not fit"):
            t.normalize(bad)


def test_check_vocab_names_missing_characters():
    t = Template("My PIN is {x:2}")
    with pytest.raises(TemplateError, match="'abcdef'|lacks"):
        t.check_vocab(Vocab(list(dict.fromkeys("My PINis0123456789 "))))


templates = st.sampled_from(list(PRESETS.values()) + ["id {[xyz]:3}-{a:1}!", "v{x:2} {d:1}{{}}"])


@settings(max_examples=60, deadline=None)
@given(templates, st.data())
def test_index_round_trip(text, data):
    t = Template(text)
    i = data.draw(st.integers(0, t.space_size - 1))
    f = t.filler_at(i)
    assert t.index_of(f) == i
    assert t.normalize(t.format(f)) == f
    assert t.normalize(t.display(f)) == f


@settings(max_examples=30, deadline=None)
@given(templates, st.integers(0, 2 ** 32 - 1))
def test_digits_round_trip(text, seed):
    t = Template(text)
    digits = t.random_digits(7, np.random.default_rng(seed))
    fillers = t.digits_to_fillers(digits)
    assert np.array_equal(t.fillers_to_digits(fillers), digits)
    if t.space_size < 2 ** 62:
        idx = [t.index_of(f) for f in fillers]
        assert np.array_equal(t.digits_of_indices(np.array(idx)), digits)
