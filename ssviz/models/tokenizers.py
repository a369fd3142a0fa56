"""Token-aware templates: how a transformer's tokenizer spells a template's texts.

Scoring semantics for token models (docs/checkpoints.md): the tokens of a text
are ``tokenizer(text)["input_ids"]``, special tokens added as the tokenizer adds
them by default (a Llama-style tokenizer prepends BOS, a GPT-2-style one adds
nothing), and its log-perplexity in bits is ``-sum_{i>=2} log2 P(t_i | t_1..t_{i-1})``:
the first token is context, exactly as the first character is for char models.

A filler's tokens come from tokenizing the whole formatted text, so the literal
text before a slot may merge with the slot's first character (GPT-2's ``" 4"``)
and digit runs may merge. :attr:`TokenTemplate.composition` finds, and checks,
when they cannot: then every filler's tokens are the same skeleton with one
token per slot character, and no text needs tokenizing (the scorer's fast
path). Otherwise every text is tokenized, always exactly.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from ssviz.errors import TemplateError
from ssviz.models.units import Composition, TemplateUnits
from ssviz.templates import Template

VERIFY_SAMPLES = 256

_TEXTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def train_tokenizer(texts: Sequence[str], vocab_size: int = 1024, split_digits: bool = True,
                    add_bos: bool | None = None):
    """A byte-level BPE tokenizer trained on ``texts`` (no download), as transformers loads it back.

    ``split_digits`` (default) isolates every digit as Llama, Mistral, Qwen and
    Gemma do, so fillers are one token per digit; without it digit runs merge as
    in GPT-2. ``add_bos`` (default: with ``split_digits``) prepends ``<s>`` to
    every text, Llama-style; GPT-2-style tokenizers add nothing.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    add_bos = split_digits if add_bos is None else add_bos
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def encode(tokenizer, text: str) -> list[int]:
    """The tokens of one text under the scoring semantics."""
    return list(tokenizer(text)["input_ids"])


CHECKED_PER_BATCH = 4  # texts of every batch also tokenized by the transformers wrapper, to compare


def encode_batch(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """The tokens of many texts, as :func:`encode` gives them.

    transformers' wrapper spends more time converting than the Rust backend
    spends tokenizing, so the backend is called directly when it is set to
    neither truncate nor pad, and only if it agrees with the wrapper on the
    batch's first texts; otherwise (or for slow tokenizers) the wrapper is used.
    """
    texts = list(texts)
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        head = [list(ids) for ids in tokenizer(texts[:CHECKED_PER_BATCH])["input_ids"]]
        rows = [e.ids for e in backend.encode_batch(texts, add_special_tokens=True)]
        if rows[:CHECKED_PER_BATCH] == head:
            return rows
    return [list(ids) for ids in tokenizer(texts)["input_ids"]]


def spellable(tokenizer, char: str, vocab_size: int, must_remain: bool = False) -> bool:
    """Whether the tokenizer spells ``char`` without its unknown token and with ids the model has."""
    ids = tokenizer(char, add_special_tokens=False)["input_ids"]
    unk = getattr(tokenizer, "unk_token_id", None)
    return (bool(ids) or not must_remain) and unk not in ids and all(0 <= i < vocab_size for i in ids)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table, inverted (the alphabet of byte-level vocabularies)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _decoder_types(spec) -> set[str]:
    if not spec:
        return set()
    out = {spec.get("type")}
    for sub in spec.get("decoders") or []:
        out |= _decoder_types(sub)
    return out


def _backend_json(tokenizer) -> dict | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    try:
        return json.loads(backend.to_str())
    except Exception:  # a backend that cannot serialize itself: treat as opaque
        return None


def token_texts(tokenizer) -> list[str | None]:
    """The text every token id spells on its own (None: special, control or partial-character tokens).

    Read from the vocabulary, not by decoding ids one at a time: a SentencePiece
    decoder drops a lone token's leading space, which would hide ``"▁4"``'s.
    """
    try:
        cached = _TEXTS.get(tokenizer)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    spec = _backend_json(tokenizer)
    size = len(tokenizer)
    texts: list[str | None] = [None] * size
    if spec is not None and isinstance(spec.get("model", {}).get("vocab"), dict):
        kinds = _decoder_types(spec.get("decoder"))
        table = _byte_decoder() if "ByteLevel" in kinds else None
        added = {t["id"]: t for t in spec.get("added_tokens") or []}
        for piece, i in spec["model"]["vocab"].items():
            if not 0 <= i < size or i in special:
                continue
            texts[i] = _piece_text(piece, table, "ByteFallback" in kinds or spec["model"].get("byte_fallback"))
        for i, t in added.items():
            if 0 <= i < size:
                texts[i] = None if t.get("special") or i in special else t["content"]
    else:
        for i in range(size):
            if i not in special:
                texts[i] = tokenizer.decode([i], clean_up_tokenization_spaces=False) or None
    try:
        _TEXTS[tokenizer] = texts
    except TypeError:
        pass
    return texts


def _piece_text(piece: str, byte_table: dict | None, byte_fallback: bool) -> str | None:
    if byte_table is not None:
        try:
            return bytes(byte_table[c] for c in piece).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            return None  # part of a multi-byte character: spells no whole character
    if byte_fallback and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        b = int(piece[3:5], 16)
        return chr(b) if b < 0x80 else None
    return piece.replace("\u2581", " ")


# --- what the fast path may assume, read from the tokenizer's own definition ---------------
ASCII_DIGITS = frozenset("0123456789")
# character-local normalizers that leave ASCII digits as they are and never join text across one
_SAFE_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "StripAccents", "Strip", "BertNormalizer", "Prepend",
                     "Replace"}
# pre-tokenizers that split by character class: every ASCII digit is treated alike
_SAFE_PRE_TOKENIZERS = {"ByteLevel", "Digits", "Whitespace", "WhitespaceSplit", "Metaspace", "Punctuation",
                        "BertPreTokenizer", "UnicodeScripts", "CharDelimiterSplit", "Split"}
_SAFE_POST_PROCESSORS = {"TemplateProcessing", "BertProcessing", "RobertaProcessing", "ByteLevel"}


def _has_digit(text) -> bool:
    return isinstance(text, str) and not ASCII_DIGITS.isdisjoint(text)


def _literal_without_digits(pattern) -> bool:
    """A Replace or Split pattern that is a plain string holding no digit (a regex may single one out)."""
    string = pattern.get("String") if isinstance(pattern, dict) and set(pattern) == {"String"} else None
    return bool(string) and not _has_digit(string)


def _component_safe(spec, children: str, safe: set, check) -> bool:
    """A tokenizer component of its JSON definition (absent, a Sequence of them under ``children``, or one of
    the ``safe`` kinds that also passes its own ``check(kind, spec)``)."""
    if spec is None:
        return True
    if not isinstance(spec, dict):
        return False
    kind = spec.get("type")
    if kind == "Sequence":
        return all(_component_safe(s, children, safe, check) for s in spec.get(children) or [])
    return kind in safe and check(kind, spec)


def _normalizer_check(kind: str, spec: dict) -> bool:
    if kind == "Prepend":
        return isinstance(spec.get("prepend"), str) and not _has_digit(spec["prepend"])
    if kind == "Replace":  # a literal string without digits matches only in the literal text, alike for every filler
        return _literal_without_digits(spec.get("pattern")) and isinstance(spec.get("content"), str) \
            and not _has_digit(spec["content"])
    return True  # Precompiled (SentencePiece's char map) and unknown kinds are not in the safe set


def _pre_tokenizer_check(kind: str, spec: dict) -> bool:
    if kind == "Split":
        return _literal_without_digits(spec.get("pattern"))
    if kind == "CharDelimiterSplit":
        return not _has_digit(spec.get("delimiter"))
    return True


def _post_processor_check(kind: str, spec: dict) -> bool:
    if kind == "TemplateProcessing":  # fixed special tokens around the text, which appears exactly once
        single = spec.get("single")
        if not isinstance(single, list):
            return False
        seqs = [p for p in single if isinstance(p, dict) and "Sequence" in p]
        specials = [p for p in single if isinstance(p, dict) and "SpecialToken" in p]
        return (len(seqs) == 1 and len(seqs) + len(specials) == len(single)
                and (seqs[0]["Sequence"] or {}).get("id") == "A")
    return True


def _normalizer_safe(spec) -> bool:
    return _component_safe(spec, "normalizers", _SAFE_NORMALIZERS, _normalizer_check)


def _pre_tokenizer_safe(spec) -> bool:
    return _component_safe(spec, "pretokenizers", _SAFE_PRE_TOKENIZERS, _pre_tokenizer_check)


def _post_processor_safe(spec) -> bool:
    return _component_safe(spec, "processors", _SAFE_POST_PROCESSORS, _post_processor_check)


def regime_proven(spec, slot_chars) -> bool:
    """Whether a tokenizer's definition (its backend JSON) guarantees one token per slot character.

    Proven from the components, never from samples: slot characters are ASCII
    digits; the model is BPE (deterministic, no word prefixes or suffixes) or
    Unigram; the normalizer, pre-tokenizer and post-processor are all of kinds
    that treat every ASCII digit alike and never rewrite one; no added token (special
    or not) contains a digit; neither truncation nor padding is set. Anything else
    (a normalizer that replaces digits, a regex split, an unknown component)
    takes the general path, which tokenizes every text exactly.
    """
    if not isinstance(spec, dict) or not slot_chars or not set(slot_chars) <= ASCII_DIGITS:
        return False
    if spec.get("truncation") is not None or spec.get("padding") is not None:
        return False
    model = spec.get("model")
    if not isinstance(model, dict):
        return False
    if model.get("type") == "BPE":
        if model.get("dropout") not in (None, 0, 0.0) or model.get("continuing_subword_prefix") \
                or model.get("end_of_word_suffix"):
            return False
    elif model.get("type") != "Unigram":
        return False
    added = spec.get("added_tokens") or []
    if not isinstance(added, list) or any(not isinstance(t, dict) or not isinstance(t.get("content"), str)
                                          or _has_digit(t["content"]) for t in added):
        return False
    return (_normalizer_safe(spec.get("normalizer")) and _pre_tokenizer_safe(spec.get("pre_tokenizer"))
            and _post_processor_safe(spec.get("post_processor")))


class TokenTemplate(TemplateUnits):
    """A template read through a transformer's tokenizer: the fast path only where it is proven."""

    def __init__(self, template: Template, model):
        super().__init__(template, model)
        self.tokenizer = model.tokenizer

    def check(self) -> None:
        """Raise a clear error if the tokenizer cannot spell some text of this template."""
        slot_chars = set("".join(self.template.filler_alphabets))
        # a literal space a whitespace pre-tokenizer drops is fine; a slot character that vanishes is not
        bad = [c for c in self.template.characters
               if not spellable(self.tokenizer, c, self.vocab_size, must_remain=c in slot_chars)]
        if bad:
            raise TemplateError(f"the tokenizer cannot spell {len(bad)} character(s) this template needs: "
                                f"{''.join(bad)[:40]!r}")

    @cached_property
    def special_ids(self) -> frozenset[int]:
        """The tokenizer's special tokens (BOS, EOS, ...): a text's tokens may start with one."""
        return frozenset(int(i) for i in getattr(self.tokenizer, "all_special_ids", None) or ())

    @cached_property
    def composition(self) -> Composition | None:
        """The skeleton-and-slots form of every filler's tokens, or None where tokens can merge.

        Taken only when (0) :func:`regime_proven` holds for the tokenizer's own
        definition (its normalizer, pre-tokenizer, added tokens and post-processor),
        (1) no vocabulary token that contains a slot character is
        more than that character, so BPE never merges a slot character with
        anything and literal text is tokenized the same around every filler, and
        (2) it reproduces the tokenizer on every single-character variant and on
        sampled fillers. Digit-splitting tokenizers (Llama, Mistral, Qwen, Gemma)
        pass; GPT-2-style ones, which merge digit runs, are tokenized text by text.
        """
        t = self.template
        slot_chars = set("".join(t.filler_alphabets))
        if not regime_proven(_backend_json(self.tokenizer), slot_chars):
            return None
        for text in token_texts(self.tokenizer):
            if text and len(text) > 1 and not slot_chars.isdisjoint(text):
                return None
        try:
            first = self.texts(np.zeros((1, t.filler_length), dtype=np.int64))[0]
            enc = self.tokenizer(first, return_offsets_mapping=True)
        except (NotImplementedError, ValueError, TypeError):
            return None  # no offsets (not a fast tokenizer): tokenize every text
        except BaseException as e:  # a Rust panic in the tokenizers library is a BaseException
            if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                raise
            raise TemplateError(f"the tokenizer fails on this template's text ({type(e).__name__}: "
                                f"{str(e).strip()[:100]})") from None
        skeleton = np.array(enc["input_ids"], dtype=np.int64)
        where = {tuple(span): i for i, span in enumerate(enc["offset_mapping"])
                 if span[1] - span[0] == 1 and skeleton[i] not in self.special_ids}
        idx = [where.get((p, p + 1)) for p in self.slot_chars]
        if None in idx or len(set(idx)) != len(idx) or idx != sorted(idx):
            return None
        slot_index = np.array(idx, dtype=np.int64)
        width = max(len(a) for a in t.filler_alphabets)
        variants = np.array([[v % len(a) for a in t.filler_alphabets] for v in range(width)], dtype=np.int64)
        rows = encode_batch(self.tokenizer, self.texts(variants))
        luts = [np.full(len(a), -1, dtype=np.int64) for a in t.filler_alphabets]
        for v, row in zip(variants, rows):
            row = np.array(row, dtype=np.int64)
            if len(row) != len(skeleton):
                return None
            for k, i in enumerate(slot_index):
                luts[k][v[k]] = row[i]
        if any((lut < 0).any() for lut in luts):
            return None
        comp = Composition(skeleton, slot_index, tuple(luts))
        rng = np.random.default_rng(0)
        sample = np.concatenate([variants, t.random_digits(VERIFY_SAMPLES, rng)])
        got = comp.rows(sample)
        want = encode_batch(self.tokenizer, self.texts(sample))
        if any(len(w) != got.shape[1] or (got[i] != w).any() for i, w in enumerate(want)):
            return None
        return comp
