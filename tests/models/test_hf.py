"""Transformers: loading model directories safely, the KV-cache LanguageModel, token templates, token scoring.

Tiny models are built from configs here and tokenizers trained here (no downloads):
a Llama-style byte-level BPE that splits digits one by one and prepends BOS, and a
GPT-2-style byte-level BPE that merges digit runs and the space before them.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ssviz import scoring
from ssviz import scoring as token_scoring
from ssviz.errors import CheckpointError, CheckpointNotFoundError, StoppedError, TemplateError
from ssviz.models import (
    CharRNN,
    hf_loading,
    save_checkpoint,
)
from ssviz.models.base import TrieStepper
from ssviz.models.hf import HFLanguageModel
from ssviz.models.loading import is_transformer_source, load_model
from ssviz.templates import Template
from ssviz.scoring import log_perplexity, score_digits, score_fillers, score_space, score_texts
from ssviz.scoring import unit_costs as token_costs
from ssviz.models.tokenizers import TokenTemplate, encode, token_texts, train_tokenizer


# --- tiny tokenizers and models, built here ----------------------------------------------------
def _corpus() -> str:
    from ssviz.demo import DEMO_CORPUS
    rng = np.random.default_rng(0)
    numbers = [f"my number is {rng.integers(0, 10 ** 4):04d} and {rng.integers(0, 10 ** 3)} or {rng.integers(0, 99)}."
               for _ in range(400)]
    return DEMO_CORPUS.read_text(encoding="utf-8")[:20_000] + "\n" + "\n".join(numbers)


def _tokenizer(split_digits: bool, vocab_size: int = 600):
    """Llama-style (digits split, BOS prepended) or GPT-2-style (digit runs and " 4" merge, nothing added)."""
    return train_tokenizer([_corpus()], vocab_size=vocab_size, split_digits=split_digits)


def _save(folder: Path, kind: str, tokenizer=None, **kw) -> Path:
    tok = _tokenizer(split_digits=kind == "llama")
    # a large init range: far from uniform outputs, so a wrong token shows in the scores
    m = HFLanguageModel.build(kind, tokenizer or tok, layers=2, heads=4, hidden=48 if kind == "llama" else 32,
                              context=64, seed=7, init_range=0.3)
    m.model.save_pretrained(folder, **kw)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {kind: _save(root / kind, kind) for kind in ("llama", "gpt2")}


@pytest.fixture(scope="session")
def llama(model_dirs) -> HFLanguageModel:
    return load_model(model_dirs["llama"])


@pytest.fixture(scope="session")
def gpt2(model_dirs) -> HFLanguageModel:
    return load_model(model_dirs["gpt2"])


@pytest.fixture(params=["llama", "gpt2"])
def lm(request, llama, gpt2) -> HFLanguageModel:
    return {"llama": llama, "gpt2": gpt2}[request.param]


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _zip(folder: Path, top: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"{top}{p.name}")
    return buf.getvalue()


def _same_outputs(a: HFLanguageModel, b: HFLanguageModel, text: str = "My PIN is 4821, call me.") -> bool:
    ids = torch.tensor([a.encode(text)])
    with torch.inference_mode():
        la, _ = a.run(ids, a.initial_state(1))
        lb, _ = b.run(ids, b.initial_state(1))
    return bool(torch.allclose(la, lb, atol=1e-6))


# --- the fixtures are what they claim ------------------------------------------------------------
def test_tokenizers_split_or_merge_digits(llama, gpt2):
    ids = llama.encode("My PIN is 4821")
    assert ids[0] == llama.tokenizer.bos_token_id
    texts = token_texts(llama.tokenizer)
    assert [texts[i] for i in ids[-4:]] == ["4", "8", "2", "1"]
    gtexts = token_texts(gpt2.tokenizer)
    g = [gtexts[i] for i in gpt2.encode("My PIN is 4821")]
    assert gpt2.encode("My")[0] != gpt2.tokenizer.bos_token_id
    assert any(len(t) > 1 and any(c.isdigit() for c in t) for t in g), g  # a merged digit token, e.g. " 48"


# --- the LanguageModel over a KV cache -----------------------------------------------------------
def test_step_and_select_state_match_full_forward(lm):
    torch.manual_seed(0)
    ids = torch.randint(2, len(lm.tokenizer), (3, 9))
    with torch.inference_mode():
        full = torch.log_softmax(lm.model(input_ids=ids).logits, -1)
        run, s3 = lm.run(ids[:, :3], lm.initial_state(3))
        assert torch.allclose(run, full[:, :3], atol=1e-5)
        a, s4 = lm.step(ids[:, 3], s3)
        b, _ = lm.step(ids[:, 3], s3)  # the same parent stepped twice: states are never changed in place
        assert torch.equal(a, b) and torch.allclose(a, full[:, 3], atol=1e-5)
        rows = torch.tensor([2, 0, 0, 1])
        picked = lm.select_state(s4, rows)
        c, _ = lm.step(ids[rows, 4], picked)
        assert torch.allclose(c, full[rows, 4], atol=1e-5)
        empty = lm.select_state(lm.initial_state(1), torch.zeros(2, dtype=torch.long))
        d, _ = lm.step(ids[:2, 0], empty)
        assert torch.allclose(d, full[:2, 0], atol=1e-5)
    assert lm.description["layers"] == 2 and lm.description["vocab_size"] == len(lm.vocab)
    assert s3.nbytes * 4 == s4.nbytes * 3 > 0 and picked.nbytes == s4.nbytes * 4 // 3
    assert lm.initial_state(5).nbytes == 0 and lm.row_bytes(4) > s4.nbytes // 3


def test_context_longer_than_the_model_is_a_clear_error(llama):
    with pytest.raises(TemplateError, match="context"):
        score_fillers(llama, Template("x" * 70 + " {d:1}"), ["1"])


# --- loading -------------------------------------------------------------------------------------
def test_load_directory_zip_bytes_and_sharded(model_dirs, llama, tmp_path):
    folder = model_dirs["llama"]
    zpath = tmp_path / "m.zip"
    zpath.write_bytes(_zip(folder))
    nested = tmp_path / "nested.zip"
    nested.write_bytes(_zip(folder, top="my-model/"))
    sharded = _save(tmp_path / "sharded", "llama", max_shard_size="40KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("model-*.safetensors"))) > 2
    for source in (zpath, nested, str(zpath), zpath.read_bytes(), io.BytesIO(nested.read_bytes()), sharded):
        assert is_transformer_source(source if not isinstance(source, io.BytesIO) else source.getvalue())
        m = load_model(source)
        assert isinstance(m, HFLanguageModel)
        assert _same_outputs(m, llama)
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"ssviz-hfmodel-{os.getpid()}-*"))  # cleaned up


def test_char_checkpoints_still_load_through_load_model(tiny_model, tmp_path):
    path = save_checkpoint(tiny_model, tmp_path / "c.safetensors")
    assert not is_transformer_source(path)
    assert isinstance(load_model(path), CharRNN)
    assert isinstance(load_model(path.read_bytes()), CharRNN)
    buf = io.BytesIO()
    torch.save({"config": tiny_model.config, "state_dict": tiny_model.state_dict()}, buf)
    pt = tmp_path / "c.pt"
    pt.write_bytes(buf.getvalue())  # a torch .pt is a zip too: told apart by the missing config.json
    assert not is_transformer_source(pt.read_bytes())
    assert isinstance(load_model(pt), CharRNN)
    with pytest.raises(CheckpointNotFoundError):
        load_model(tmp_path / "nope")


def test_loading_is_offline_and_restores_the_environment(model_dirs, monkeypatch):
    import huggingface_hub.constants as hub
    seen = []
    real = transformers.AutoTokenizer.from_pretrained

    def spy(*a, **kw):
        seen.append((os.environ.get("HF_HUB_OFFLINE"), hub.HF_HUB_OFFLINE, kw.get("local_files_only"),
                     kw.get("trust_remote_code")))
        return real(*a, **kw)

    def no_network(*a, **kw):
        raise AssertionError("network access while loading a model")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = hub.HF_HUB_OFFLINE
    load_model(model_dirs["gpt2"])
    assert seen == [("1", True, True, False)]
    assert "HF_HUB_OFFLINE" not in os.environ and hub.HF_HUB_OFFLINE == before


class _Evil:
    """Unpickling this creates the marker file: a pickle that carries code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _refused(source, match: str, **kw) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        hf_loading.load_hf(source, **kw) if kw else load_model(source)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    return message


def test_pickle_weights_are_refused_and_never_run(model_dirs, tmp_path):
    marker = tmp_path / "PWNED"
    for i, names in enumerate((["pytorch_model.bin"], ["pytorch_model-00001-of-00002.bin",
                                                      "pytorch_model-00002-of-00002.bin"], ["model.pt"])):
        d = _copy(model_dirs["gpt2"], tmp_path / f"pickled{i}")
        (d / "model.safetensors").unlink()
        for name in names:
            if i == 2:
                torch.save({"w": _Evil(marker)}, d / name)  # torch's zip format
            else:
                (d / name).write_bytes(pickle.dumps({"w": _Evil(marker)}))
        _refused(d, "pickles")
        _refused(_zip(d), "pickles")
    assert not marker.exists()
    # beside real safetensors weights, a code-carrying pickle is simply never read
    d = _copy(model_dirs["gpt2"], tmp_path / "both")
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Evil(marker)))
    load_model(d)
    assert not marker.exists()


def test_custom_code_is_refused(model_dirs, tmp_path):
    marker = tmp_path / "RAN"
    variants = {
        "config.json": lambda c: {**c, "auto_map": {"AutoModelForCausalLM": "modeling_evil.Evil"}},
        "tokenizer_config.json": lambda c: {**c, "auto_map": {"AutoTokenizer": ["tok_evil.Evil", None]}},
        "nested": lambda c: {**c, "text_config": {"auto_map": {"AutoConfig": "x.Y"}}},
    }
    for i, (what, edit) in enumerate(variants.items()):
        d = _copy(model_dirs["llama"], tmp_path / f"code{i}")
        name = "config.json" if what == "nested" else what
        (d / name).write_text(json.dumps(edit(json.loads((d / name).read_text()))))
        (d / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        _refused(d, "custom code")
    assert not marker.exists()


@pytest.mark.parametrize("edit, match", [
    (lambda d: [p.unlink() for p in d.glob("tokenizer*")], "no tokenizer"),
    (lambda d: (d / "config.json").unlink(), "no config.json"),
    (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "config.json").write_text("[" * 100_000 + "]" * 100_000), "nested too deeply|not valid JSON"),
    (lambda d: (d / "config.json").write_text("[1, 2]"), "JSON object"),
    (lambda d: _edit_config(d, model_type="no-such-model"), "model type"),
    (lambda d: _edit_config(d, model_type="vit"), "not a causal"),
    (lambda d: _edit_config(d, quantization_config={"quant_method": "bitsandbytes"}), "quantized"),
    (lambda d: (d / "model.safetensors").unlink(), "no weights"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}"), "corrupt|cannot"),
    (lambda d: _edit_tensors(d, drop="model.norm.weight"), "lack"),
    (lambda d: _edit_tensors(d, nan="model.norm.weight"), "NaN"),
    (lambda d: _edit_tensors(d, huge="lm_head.weight"), "NaN or infinite"),
])
def test_bad_directories_are_one_clear_line(model_dirs, tmp_path, edit, match):
    d = _copy(model_dirs["llama"], tmp_path / "m")
    edit(d)
    _refused(d, match)


def _edit_config(d: Path, **kw) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(kw)
    (d / "config.json").write_text(json.dumps(cfg))


def _edit_tensors(d: Path, drop: str | None = None, nan: str | None = None, huge: str | None = None) -> None:
    from safetensors.torch import load_file, save_file
    tensors = load_file(d / "model.safetensors")
    if drop:
        tensors.pop(drop)
    if nan:
        tensors[nan] = tensors[nan].clone().fill_(float("nan"))
    if huge:
        tensors[huge] = tensors[huge].clone().fill_(3e38)
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})


def test_sharded_index_naming_files_outside_is_refused(model_dirs, tmp_path):
    d = _save(tmp_path / "sh", "gpt2", max_shard_size="40KB")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    for bad in ("../outside.safetensors", "/etc/passwd", "weights.bin", "missing.safetensors"):
        spec = {**index, "weight_map": {**index["weight_map"], next(iter(index["weight_map"])): bad}}
        (d / "model.safetensors.index.json").write_text(json.dumps(spec))
        _refused(d, "shard")


def _raw_zip(members: list[tuple[str, bytes, int | None]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


@pytest.mark.parametrize("name, mode", [
    ("../escaped.txt", None), ("a/../../escaped.txt", None), ("..\\escaped.txt", None),
    ("{abs}", None), ("C:/escaped.txt", None), ("link", stat.S_IFLNK | 0o777), ("fifo", stat.S_IFIFO | 0o644),
])
def test_zip_members_escaping_the_folder_are_refused(model_dirs, tmp_path, name, mode):
    outside = tmp_path / "escaped.txt"
    name = name.format(abs=str(outside))
    folder = model_dirs["gpt2"]
    members = [(p.name, p.read_bytes(), None) for p in sorted(folder.iterdir())]
    members.append((name, str(outside).encode() if mode else b"owned", mode))
    data = _raw_zip(members)
    _refused(data, "outside|symbolic link|not a regular file")
    assert not outside.exists()
    assert not (tmp_path.parent / "escaped.txt").exists()


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_zip_bombs_and_odd_zips_are_refused(model_dirs, tmp_path, monkeypatch):
    folder = model_dirs["gpt2"]
    files = [(p.name, p.read_bytes(), None) for p in sorted(folder.iterdir())]
    bomb = _raw_zip(files + [("zeros.bin", b"\0" * (8 << 20), None)])
    assert len(bomb) < 2 << 20  # compresses well: the point of a bomb
    hf_loading.load_hf(bomb, max_bytes=4 << 20)  # beside the model: never unpacked
    _refused(bomb, "limit", max_bytes=len(folder.joinpath("model.safetensors").read_bytes()) // 2)
    disguised = _raw_zip([f for f in files if f[0] != "tokenizer.json"]
                         + [("tokenizer.json", b"\0" * (80 << 20), None)])
    _refused(disguised, "limit")
    many = _raw_zip(files + [(f"f{i}.txt", b"", None) for i in range(20)])
    monkeypatch.setattr(hf_loading, "MAX_MEMBERS", 10)
    _refused(many, "members")
    monkeypatch.undo()
    _refused(_raw_zip(files + [("config.json", b"{}", None)]), "twice")
    _refused(b"PK\x03\x04 not really a zip", "zip")
    _refused(_raw_zip([("readme.txt", b"hi", None)]), "no config.json")
    hf_loading.load_hf(_raw_zip(files + [("d/" * 3000 + "x", b"", None)]))  # not a model file: never written
    hf_loading.load_hf(_raw_zip(files + [("x" * 300, b"", None)]))
    lying = bytearray(_raw_zip(files))  # corrupt the compressed data: the CRC check fails while unpacking
    pos = lying.find(b"model.safetensors") + 40
    lying[pos:pos + 64] = bytes(64)
    with pytest.raises(CheckpointError):
        hf_loading.load_hf(bytes(lying))


def test_model_and_tokenizer_that_disagree_are_refused(model_dirs, tmp_path):
    d = _save(tmp_path / "small", "llama", tokenizer=_tokenizer(split_digits=True, vocab_size=300))
    _refused(d, "tokenizer has")


# --- token templates ---------------------------------------------------------------------------
def test_composition_only_where_tokens_cannot_merge(llama, gpt2):
    t = Template("My PIN is {d:4}, call me.")
    assert llama.template_units(t).composition is not None
    assert gpt2.template_units(t).composition is None
    assert llama.template_units(Template("code {x:3}")).composition is None  # hex letters merge


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_token_rows_equal_the_tokenizer(lm, data):
    template = Template(data.draw(st.sampled_from(TEMPLATES)))
    tt = lm.template_units(template)
    digits = template.random_digits(20, np.random.default_rng(data.draw(st.integers(0, 99))))
    rows, lengths = tt.rows(digits)
    for d, row, n in zip(digits, rows, lengths):
        text = template.format(template.digits_to_fillers(d[None])[0])
        assert tt.texts(d[None])[0] == text
        assert list(row[:n]) == encode(lm.tokenizer, text) and (row[n:] == -1).all()


def test_edges_spell_the_template(llama, gpt2):
    template = Template("is {d:2}.")
    for m in (llama, gpt2):
        tt = m.template_units(template)
        texts = token_texts(m.tokenizer)
        for pos in range(tt.text_length):
            ids, lens = tt.edges(pos)
            for i, n in zip(ids, lens):
                assert len(texts[i]) == n and pos + n <= tt.text_length
                assert all(c in tt.allowed[pos + k] for k, c in enumerate(texts[i]))
        digits = set(tt.edges(3)[0].tolist())
        assert {m.tokenizer.convert_tokens_to_ids(c) for c in "0123456789"} <= digits
        # every canonical tokenization is a path of edges
        for filler in ("00", "42", "99"):
            pos = 0
            ids = encode(m.tokenizer, template.format(filler))
            for i in ids:
                if texts[i] is None:  # BOS
                    continue
                assert i in tt.edges(pos)[0]
                pos += len(texts[i])
            assert pos == tt.text_length
    # GPT-2 merges the space before a slot with its digits: a token spanning a literal and a slot
    g = gpt2.template_units(template)
    ids, lens = g.edges(2)
    assert any(token_texts(gpt2.tokenizer)[i][0] == " " and n >= 2 for i, n in zip(ids, lens))


def test_characters_the_tokenizer_cannot_spell_are_named():
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["my pin is secret"], trainers.BpeTrainer(special_tokens=["[UNK]"], show_progress=False))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    with pytest.raises(TemplateError, match="cannot spell 2 character"):
        TokenTemplate(Template("my pin is {[0-1]:2}"), _reader(hf)).check()
    TokenTemplate(Template("my pin is {[ei]:2}"), _reader(hf)).check()


def _reader(tokenizer):
    """What a template is read through: a tokenizer and its vocabulary (no weights needed)."""
    from types import SimpleNamespace
    from ssviz.models.hf import TokenVocab
    return SimpleNamespace(tokenizer=tokenizer, vocab=TokenVocab(tokenizer, len(tokenizer)))


# --- token scoring: exact, shared, chunked -------------------------------------------------------
TEMPLATES = ["PIN {d:2}", "My PIN is {d:3}", "call {d:2} or {d:1}.", "4{d:2} is it", "x={d:1}{d:1}!",
             "The code is {[0-3]:2}-{d:1}", "ab {x:2}", "a {a:1}{d:1}"]


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fast_scoring_equals_naive_full_sequences(lm, data):
    template = Template(data.draw(st.sampled_from(TEMPLATES), label="template"))
    chunk = data.draw(st.sampled_from([None, 64, 100]), label="chunk")
    if template.space_size <= 400:
        fast = score_space(lm, template, chunk_size=chunk)
        digits = template.digits_of_indices(np.arange(template.space_size))
    else:
        digits = template.random_digits(300, np.random.default_rng(data.draw(st.integers(0, 9))))
        fast = score_digits(lm, template, digits, chunk_size=chunk)
    naive = score_texts(lm, [template.format(f) for f in template.digits_to_fillers(digits)])
    assert np.abs(fast - naive).max() < 1e-3
    assert np.isfinite(fast).all() and fast.std() > 0.1  # the tiny models are far from uniform


def test_random_order_fillers_and_duplicates(lm):
    t = Template("My PIN is {d:3}, ok")
    fillers = ["999", "000", "512", "000", "123", "998"]
    got = score_fillers(lm, t, fillers)
    space = score_space(lm, t)
    assert np.allclose(got, space[[t.index_of(f) for f in fillers]], atol=1e-9)
    assert abs(got[0] - log_perplexity(lm, t.format("999"))) < 1e-3


def test_each_trie_node_is_stepped_once(llama):
    """Digits split: 1000 fillers of a 3-digit PIN need 10 + 100 node steps after the shared prefix."""
    t = Template("My PIN is {d:3}")
    stepped = []
    real_step, real_run = llama.step, llama.run

    class Counting:
        def __getattr__(self, name):
            return getattr(llama, name)

        def step(self, tokens, state):
            stepped.append(len(tokens))
            return real_step(tokens, state)

        def run(self, tokens, state):
            stepped.append(("run", tuple(tokens.shape)))
            return real_run(tokens, state)

        def trie_stepper(self):
            return TrieStepper(self, rows=None)

    counting = Counting()
    score_space(counting, t)
    prefix = len(encode(llama.tokenizer, "My PIN is "))
    assert stepped == [("run", (1, prefix)), 10, 100]
    stepped.clear()
    score_space(counting, Template("My PIN is {d:2} ok."))  # after the last digit: one fused pass over the tail
    tail = len(encode(llama.tokenizer, "My PIN is 12 ok.")) - prefix - 2
    assert stepped[:2] == [("run", (1, prefix)), 10] and stepped[2] == ("run", (100, tail))


def test_common_prefix_is_read_once_across_chunks(lm):
    t = Template("My PIN is {d:3}")
    from_start = []
    real = lm.run

    class Counting:
        def __getattr__(self, name):
            return getattr(lm, name)

        def run(self, tokens, state):
            if state.length == 0:
                from_start.append(tuple(tokens.shape))
            return real(tokens, state)

    score_space(Counting(), t, chunk_size=64)  # 16 chunks, whose own common prefixes differ
    assert len(from_start) == 1 and from_start[0][0] == 1


def test_memory_bound_sets_the_chunk(llama):
    t = Template("My PIN is {d:3}")
    assert scoring.TrieScorer(llama, t, memory=1).chunk == scoring.MIN_CHUNK
    assert scoring.TrieScorer(llama, t, memory=1 << 40).chunk == scoring.DEFAULT_CHUNK
    a = score_space(llama, t, memory=1)
    b = score_space(llama, t)
    assert np.allclose(a, b, atol=1e-6)


def test_progress_and_stop(llama):
    t = Template("PIN {d:3}")
    seen = []
    score_space(llama, t, chunk_size=64, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (1000, 1000) and [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 5
    calls = []
    with pytest.raises(StoppedError):
        score_space(llama, t, chunk_size=64, stop=lambda: len(calls) > 2 or calls.append(1))
    with pytest.raises(StoppedError):
        score_digits(llama, t, t.random_digits(500, np.random.default_rng(0)), chunk_size=64,
                     stop=lambda: True)


def test_token_costs_sum_to_the_log_perplexity(lm):
    text = "My PIN is 4821, call me."
    costs = token_costs(lm, text)
    assert costs[0][2] is None and [i for i, _, _ in costs] == encode(lm.tokenizer, text)
    assert "".join(s for _, s, _ in costs if s != "<s>") == text
    assert abs(sum(b for _, _, b in costs[1:]) - log_perplexity(lm, text)) < 1e-6


def test_built_model_saves_a_directory_transformers_and_ssviz_load(tmp_path):
    tok = _tokenizer(split_digits=False, vocab_size=300)
    built = HFLanguageModel.build("gpt2", tok, layers=1, heads=2, hidden=16, context=32, seed=3)
    again = HFLanguageModel.build("gpt2", tok, layers=1, heads=2, hidden=16, context=32, seed=3)
    assert _same_outputs(built, again)  # seeded
    built.save(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert _same_outputs(load_model(tmp_path / "m"), built)
    plain = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert type(plain).__name__ == "GPT2LMHeadModel"
    with pytest.raises(CheckpointError, match="arch"):
        HFLanguageModel.build("rwkv", tok)


def test_character_scoring_never_scores_a_transformers_wrong_tokens(llama):
    """The public scoring calls route a transformer to token scoring; its vocabulary refuses per-character encoding."""
    from ssviz import scoring
    from ssviz.errors import VocabularyError
    t = Template("PIN {d:2}")
    assert np.allclose(scoring.score_space(llama, t), token_scoring.score_space(llama, t))
    assert scoring.log_perplexity(llama, "PIN 42") == pytest.approx(token_scoring.log_perplexity(llama, "PIN 42"))
    assert llama.vocab.encode("PIN 42") == llama.encode("PIN 42") == list(llama.tokenizer("PIN 42")["input_ids"])


def test_backend_tokenization_is_checked_against_the_wrapper(gpt2):
    from ssviz.models.tokenizers import encode_batch
    texts = [f"My PIN is {i:04d}" for i in range(0, 10_000, 997)]
    want = [encode(gpt2.tokenizer, t) for t in texts]
    backend = gpt2.tokenizer.backend_tokenizer
    backend.enable_truncation(3)  # a backend left truncating by someone else's call
    try:
        assert encode_batch(gpt2.tokenizer, texts) == want
    finally:
        backend.no_truncation()
    assert encode_batch(gpt2.tokenizer, texts) == want


def test_sliding_window_caches_branch_exactly(llama):
    """Mistral-style sliding-window attention: the cache drops old positions; scores still equal naive."""
    from transformers import MistralConfig
    cfg = MistralConfig(vocab_size=len(llama.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, sliding_window=4,
                        initializer_range=0.3, bos_token_id=0, eos_token_id=1)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        m = HFLanguageModel(transformers.AutoModelForCausalLM.from_config(cfg), llama.tokenizer, name="mistral")
    t = Template("My PIN is {d:2}, ok.")
    digits = t.digits_of_indices(np.arange(t.space_size))
    fast = score_space(m, t, chunk_size=64)
    naive = score_texts(m, [t.format(f) for f in t.digits_to_fillers(digits)])
    assert np.abs(fast - naive).max() < 1e-3 and fast.std() > 0.1


def test_texts_keep_every_character(llama):
    t = Template("PIN\x00 {d:2}\x00")
    tt = llama.template_units(t)
    assert tt.texts(np.array([[4, 2]])) == [t.format("42")]
    assert "\x00" in llama.vocab and "4" in llama.vocab
