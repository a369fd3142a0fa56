"""Hostile model folders, zips and tokenizers: each gets one clear line, at bounded cost, or is read exactly."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers, processors  # noqa: E402

from ssviz.models.tokenizers import TokenTemplate, encode, encode_batch, train_tokenizer  # noqa: E402
from ssviz.templates import Template  # noqa: E402

SECRET = "281546"
TEMPLATE = Template("my ssn is {d:6}")


def _tok():
    texts = [f"my ssn is {n:06d} and more text 0123456789" for n in range(0, 999_999, 7919)]
    return train_tokenizer(texts, vocab_size=300)


def _units(tok) -> TokenTemplate:
    return TokenTemplate(TEMPLATE, SimpleNamespace(tokenizer=tok, vocab=[None] * len(tok),
                                                      encode_batch=lambda texts: encode_batch(tok, texts)))


def _secret_row(units: TokenTemplate) -> list[int]:
    rows, lengths = units.rows(np.array([[int(c) for c in SECRET]]))
    return [int(i) for i in rows[0, :lengths[0]]]


def test_honest_digit_splitting_tokenizer_keeps_the_fast_path():
    tok = _tok()
    units = _units(tok)
    assert units.composition is not None
    assert _secret_row(units) == encode(tok, TEMPLATE.format(SECRET))


def _replace_secret(tok):
    tok.backend_tokenizer.normalizer = normalizers.Replace(SECRET, "000000")


def _lowercase_replace(tok):
    tok.backend_tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.Replace(Regex("2815[0-9]6"), "111111")])


def _replace_one_digit(tok):
    tok.backend_tokenizer.normalizer = normalizers.Replace("4", "9")


def _special_token_covers_digits(tok):
    tok.add_special_tokens({"additional_special_tokens": [SECRET]})


def _added_token_covers_digit(tok):
    tok.add_tokens([AddedToken("15", normalized=False)])


def _post_processor_repeats_text(tok):
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s> $A", special_tokens=[("<s>", 0), ("</s>", 1)])


def _regex_split(tok):
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex("815"), "isolated"), pre_tokenizers.Digits(individual_digits=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False)])


def _precompiled_like(tok):
    tok.backend_tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\d{6}"),
                                                                                                     "123456")])


@pytest.mark.parametrize("lie", [_replace_secret, _lowercase_replace, _replace_one_digit, _special_token_covers_digits,
                                 _added_token_covers_digit, _post_processor_repeats_text, _regex_split,
                                 _precompiled_like])
def test_a_tokenizer_the_fast_path_cannot_prove_is_tokenized_text_by_text(lie):
    tok = _tok()
    lie(tok)
    units = _units(tok)
    assert units.composition is None
    assert _secret_row(units) == encode(tok, TEMPLATE.format(SECRET))


def test_a_replace_of_the_secret_makes_it_score_as_another_filler():
    """The lie the proof catches: the normalizer spells the secret as another filler, sampling never sees it."""
    tok = _tok()
    _replace_secret(tok)
    assert encode(tok, TEMPLATE.format(SECRET)) == encode(tok, TEMPLATE.format("000000"))
    assert _secret_row(_units(tok)) == encode(tok, TEMPLATE.format("000000"))


# --- model folders and zips: checked against the weights' headers before anything is built ------
import io  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

from ssviz.errors import CheckpointError  # noqa: E402
from ssviz.models import hf_loading  # noqa: E402
from ssviz.models.loading import load_model  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    from ssviz.models.hf import HFLanguageModel
    root = tmp_path_factory.mktemp("hostile")
    out = {}
    for kind in ("llama", "gpt2"):
        tok = train_tokenizer([f"my ssn is {n:06d} and more text" for n in range(0, 999_999, 7919)], vocab_size=300,
                              split_digits=kind == "llama")
        m = HFLanguageModel.build(kind, tok, layers=2, heads=2, hidden=16, context=32, seed=1)
        m.model.save_pretrained(root / kind)
        tok.save_pretrained(root / kind)
        out[kind] = root / kind
    return out


def _variant(folders, tmp_path, kind: str, edit) -> Path:
    d = tmp_path / f"{kind}-edited"
    d.mkdir()
    for p in folders[kind].iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    config = json.loads((d / "config.json").read_text())
    edit(config)
    (d / "config.json").write_text(json.dumps(config))
    return d


def _refused(source, match: str, seconds: float = 10.0) -> str:
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=match) as info:
        load_model(source)
    assert time.monotonic() - start < seconds
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    return message


@pytest.mark.parametrize("kind, field, value, match", [
    ("llama", "num_hidden_layers", 10 ** 6, "num_hidden_layers is 1,000,000 but the weights hold 2 layer"),
    ("gpt2", "n_layer", 10 ** 6, "n_layer is 1,000,000"),
    ("llama", "hidden_size", 10 ** 5, "hidden_size"),
    ("llama", "intermediate_size", 10 ** 7, "intermediate_size"),
    ("llama", "vocab_size", 10 ** 8, "vocab_size"),
    ("gpt2", "n_positions", 10 ** 9, "n_positions"),
    ("llama", "max_position_embeddings", 10 ** 12, "max_position_embeddings"),
    ("llama", "intermediate_size", 200, "parameters"),  # within every bound, yet more than the weights hold
])
def test_sizes_the_weights_do_not_hold_are_refused_before_building(folders, tmp_path, kind, field, value, match):
    d = _variant(folders, tmp_path, kind, lambda c: c.__setitem__(field, value))
    assert "config" in _refused(d, match, seconds=5.0)


@pytest.mark.parametrize("field, value", [
    ("num_attention_heads", 0), ("num_hidden_layers", 2.5), ("num_hidden_layers", "2"), ("hidden_size", -16),
    ("num_hidden_layers", True), ("vocab_size", None), ("num_key_value_heads", [2]),
])
def test_size_fields_of_the_wrong_type_or_zero_are_one_line(folders, tmp_path, field, value):
    d = _variant(folders, tmp_path, "llama", lambda c: c.__setitem__(field, value))
    assert field in _refused(d, "whole number")


def test_an_unbuildable_config_is_one_line(folders, tmp_path):
    d = _variant(folders, tmp_path, "llama", lambda c: c.update(num_attention_heads=3, num_key_value_heads=3))
    _refused(d, "config")


def _zip_bytes(members: list[tuple[str, bytes]], big: tuple[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members:
            zf.writestr(name, data)
        if big is not None:  # streamed zeros: hundreds of MB compress to a few hundred KB
            with zf.open(big[0], "w", force_zip64=True) as out:
                block = bytes(1 << 20)
                for _ in range(big[1] >> 20):
                    out.write(block)
    return buf.getvalue()


def _members(folder: Path, top: str = "") -> list[tuple[str, bytes]]:
    return [(top + p.name, p.read_bytes()) for p in sorted(folder.iterdir())]


@pytest.mark.parametrize("big", ["zeros.bin", "model/zeros.bin", "extra/weights.safetensors", "pytorch_model.bin"])
def test_a_large_member_beside_the_model_is_never_unpacked(folders, big, monkeypatch):
    data = _zip_bytes(_members(folders["llama"]), big=(big, 200 << 20))
    assert len(data) < 2 << 20
    start = time.monotonic()
    lm = hf_loading.load_hf(data, max_bytes=8 << 20)
    assert time.monotonic() - start < 10
    assert lm.tokenizer is not None


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json", "config.json", "ssviz_training.json"])
def test_a_large_member_posing_as_a_model_file_is_refused(folders, name):
    members = [(n, b) for n, b in _members(folders["llama"]) if n != name]
    data = _zip_bytes(members, big=(name, 200 << 20))
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="limit|header|safetensors|bytes"):
        hf_loading.load_hf(data)
    assert time.monotonic() - start < 10


def test_weights_longer_than_their_header_declares_are_refused(folders):
    members = [(n, b + bytes(1 << 20) if n == "model.safetensors" else b) for n, b in _members(folders["llama"])]
    with pytest.raises(CheckpointError, match="header declares"):
        hf_loading.load_hf(_zip_bytes(members))


@pytest.mark.parametrize("tops", [("a/", "b/"), ("one/", "two/", "three/")])
def test_a_zip_of_several_model_folders_says_so(folders, tops):
    members = [m for top in tops for m in _members(folders["gpt2"], top)]
    message = _refused(_zip_bytes(members), "model folders")
    assert f"{len(tops)} model folders" in message and tops[0] in message


def test_a_zip_with_the_model_in_one_folder_still_loads(folders):
    assert hf_loading.load_hf(_zip_bytes(_members(folders["gpt2"], "my-model/") + [("README.md", b"hi")]))


# --- tokenizers that fail to load or panic on first use ------------------------------------------
def _edit_tokenizer(folders, tmp_path, edit) -> Path:
    d = _variant(folders, tmp_path, "llama", lambda c: None)
    spec = json.loads((d / "tokenizer.json").read_text())
    edit(spec)
    (d / "tokenizer.json").write_text(json.dumps(spec))
    return d


@pytest.mark.parametrize("edit", [
    lambda s: s["model"].__setitem__("type", "Nonesuch"),
    lambda s: s.__setitem__("pre_tokenizer", {"type": "Split", "pattern": {"Regex": "(["}, "behavior": "Isolated",
                                              "invert": False}),
    lambda s: s.__setitem__("normalizer", {"type": "Replace", "pattern": {"Regex": "(?<"}, "content": "x"}),
    lambda s: s.__setitem__("post_processor", {"type": "Nonesuch"}),
    lambda s: s["model"].__setitem__("vocab", "not a vocabulary"),
])
def test_a_tokenizer_that_cannot_be_read_is_one_line(folders, tmp_path, edit):
    _refused(_edit_tokenizer(folders, tmp_path, edit), "tokenizer")


class PanicException(BaseException):
    """What a Rust panic in the tokenizers library surfaces as: not an Exception."""


@pytest.mark.parametrize("where", ["load", "first use"])
def test_a_tokenizer_that_panics_is_one_line(folders, monkeypatch, where):
    import transformers

    real = transformers.AutoTokenizer.from_pretrained

    def panicking(*a, **kw):
        if where == "load":
            raise PanicException("called `Result::unwrap()` on an `Err` value")
        tok = real(*a, **kw)

        class Panics(type(tok)):
            def __call__(self, *a, **kw):
                raise PanicException("regex panicked")
        tok.__class__ = Panics
        return tok
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", panicking)
    _refused(folders["llama"], "tokenizer")


def test_ctrl_c_while_loading_is_not_swallowed(folders, monkeypatch):
    import transformers

    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_model(folders["llama"])


def test_a_tokenizer_that_panics_on_a_template_is_one_line():
    from ssviz.errors import TemplateError
    tok = _tok()

    class Panics(type(tok)):
        def __call__(self, *a, **kw):
            raise PanicException("regex panicked")
    tok.__class__ = Panics
    with pytest.raises(TemplateError, match="tokenizer fails"):
        _units(tok).composition
