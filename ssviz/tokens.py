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
token per slot character, and no text needs tokenizing (the fast path of
:mod:`ssviz.token_scoring`). Otherwise every text is tokenized, always exactly.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ssviz.errors import TemplateError
from ssviz.templates import Template

PAD = -1  # fills token rows past a text's end; sorts before every token id
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


def pad_rows(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> ``(tokens [n, L] int64 padded with PAD, lengths [n])``."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if len(rows) and (lengths == lengths[0]).all():
        return np.array(rows, dtype=np.int64).reshape(len(rows), int(lengths[0])), lengths
    out = np.full((len(rows), int(lengths.max()) if len(rows) else 0), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out, lengths


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


@dataclass(frozen=True)
class Composition:
    """Every filler's tokens: ``skeleton`` with ``luts[k][offset]`` at index ``slot_index[k]``."""

    skeleton: np.ndarray         # [L] token ids of the first filler's text
    slot_index: np.ndarray       # [F] token index of each slot character
    luts: tuple[np.ndarray, ...]  # per slot character: token id of each alphabet offset

    def rows(self, digits: np.ndarray) -> np.ndarray:
        out = np.broadcast_to(self.skeleton, (len(digits), len(self.skeleton))).copy()
        for k, idx in enumerate(self.slot_index):
            out[:, idx] = self.luts[k][digits[:, k]]
        return out


class TokenTemplate:
    """A template read through a tokenizer: its texts' tokens, and which tokens can spell which positions."""

    def __init__(self, template: Template, tokenizer, vocab_size: int | None = None):
        self.template = template
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size or len(tokenizer)
        self.text_length = len(template.prefix) + len(template.positions)
        # every character position of the full text: the allowed characters there
        self.allowed: tuple[str, ...] = tuple(template.prefix) + template.positions
        self.slot_chars = [len(template.prefix) + p for p in template.slot_positions]

    def check(self) -> None:
        """Raise a clear error if the tokenizer cannot spell some text of this template."""
        slot_chars = set("".join(self.template.filler_alphabets))
        # a literal space a whitespace pre-tokenizer drops is fine; a slot character that vanishes is not
        bad = [c for c in self.template.characters
               if not spellable(self.tokenizer, c, self.vocab_size, must_remain=c in slot_chars)]
        if bad:
            raise TemplateError(f"the tokenizer cannot spell {len(bad)} character(s) this template needs: "
                                f"{''.join(bad)[:40]!r}")

    # --- texts and their tokens ------------------------------------------------------
    def texts(self, digits: np.ndarray) -> list[str]:
        """Full texts of fillers given as alphabet offsets ``[N, F]`` (vectorized formatting)."""
        digits = np.asarray(digits)
        if "\x00" in self.template.characters:  # numpy strings drop trailing NULs: format one by one
            return [self.template.format(f) for f in self.template.digits_to_fillers(digits)]
        cols = np.empty((len(digits), self.text_length), dtype="<U1")
        slot_of = {p: k for k, p in enumerate(self.slot_chars)}
        for p, chars in enumerate(self.allowed):
            if p in slot_of:
                cols[:, p] = np.array(list(chars))[digits[:, slot_of[p]]]
            else:
                cols[:, p] = chars
        return np.ascontiguousarray(cols).view(f"<U{self.text_length}")[:, 0].tolist() if len(digits) else []

    def tokens(self, filler: str) -> list[int]:
        return encode(self.tokenizer, self.template.format(filler))

    def rows(self, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token rows ``[N, L]`` (PAD after each text's end) and lengths of fillers ``[N, F]``: always exact."""
        digits = np.asarray(digits, dtype=np.int64)
        comp = self.composition
        if comp is not None:
            return comp.rows(digits), np.full(len(digits), len(comp.skeleton), dtype=np.int64)
        return pad_rows(encode_batch(self.tokenizer, self.texts(digits)))

    def spell(self, text: str) -> list[tuple[int, str]]:
        """``(id, text)`` of each token of ``text``, for showing how a secret is tokenized."""
        texts = token_texts(self.tokenizer)
        out = []
        for i in encode(self.tokenizer, text):
            t = texts[i] if 0 <= i < len(texts) else None
            out.append((i, t if t is not None else self.tokenizer.convert_ids_to_tokens(i)))
        return out

    # --- the fast path: fillers spelled one token per slot character -----------------
    @cached_property
    def composition(self) -> Composition | None:
        """The skeleton-and-slots form of every filler's tokens, or None where tokens can merge.

        Taken only when (1) no vocabulary token that contains a slot character is
        more than that character, so BPE never merges a slot character with
        anything and literal text is tokenized the same around every filler, and
        (2) it reproduces the tokenizer on every single-character variant and on
        sampled fillers. Digit-splitting tokenizers (Llama, Mistral, Qwen, Gemma)
        pass; GPT-2-style ones, which merge digit runs, are tokenized text by text.
        """
        t = self.template
        slot_chars = set("".join(t.filler_alphabets))
        for text in token_texts(self.tokenizer):
            if text and len(text) > 1 and not slot_chars.isdisjoint(text):
                return None
        try:
            first = self.texts(np.zeros((1, t.filler_length), dtype=np.int64))[0]
            enc = self.tokenizer(first, return_offsets_mapping=True)
        except (NotImplementedError, ValueError, TypeError):
            return None  # no offsets (not a fast tokenizer): tokenize every text
        skeleton = np.array(enc["input_ids"], dtype=np.int64)
        where = {tuple(span): i for i, span in enumerate(enc["offset_mapping"])
                 if span[1] - span[0] == 1 and skeleton[i] not in set(self.tokenizer.all_special_ids)}
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

    @property
    def exact_search(self) -> bool:
        """Whether token paths and fillers correspond one to one (search over tokens is then exact)."""
        return self.composition is not None

    # --- which tokens can spell which positions (search edges) ------------------------
    def edges(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids whose text fits the template from character ``pos`` of the full text, and their lengths.

        A token fits when each of its characters is allowed where it lands: literal
        characters exactly, slot characters from the slot's alphabet; it may span a
        literal and a slot, or several slot characters, but not run past the end.
        """
        return self._edges[pos] if 0 <= pos < self.text_length else (np.zeros(0, np.int64), np.zeros(0, np.int64))

    @cached_property
    def _edges(self) -> list[tuple[np.ndarray, np.ndarray]]:
        by_first: dict[str, list[tuple[int, str]]] = {}
        for i, text in enumerate(token_texts(self.tokenizer)):
            if text and i < self.vocab_size:
                by_first.setdefault(text[0], []).append((i, text))
        allowed = [set(a) for a in self.allowed]
        out = []
        for pos in range(self.text_length):
            ids, lens = [], []
            for c in allowed[pos]:
                for i, text in by_first.get(c, ()):
                    end = pos + len(text)
                    if end <= self.text_length and all(ch in allowed[q] for q, ch in enumerate(text[1:], pos + 1)):
                        ids.append(i)
                        lens.append(len(text))
            order = np.argsort(ids, kind="stable")
            out.append((np.array(ids, dtype=np.int64)[order], np.array(lens, dtype=np.int64)[order]))
        return out
