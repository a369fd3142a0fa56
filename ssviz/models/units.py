"""A template read in a model's units: every filler's unit ids, and which units can spell which positions.

Scoring semantics (docs/checkpoints.md): a text's units are ``model.encode(text)``
(characters for a character model, ``tokenizer(text)["input_ids"]`` for a
transformer); its log-perplexity in bits is ``-sum_{i>=2} log2 P(u_i | u_<i)``.

:attr:`TemplateUnits.composition` is the fast, exact regime: every filler's units
are one skeleton with one unit per slot character. A character model is always
in it; a tokenizer is in it only where it provably cannot merge a slot character
with anything (:class:`~ssviz.models.tokenizers.TokenTemplate` decides). Outside
it every text is encoded as a whole, always exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from ssviz.templates import Template

PAD = -1  # fills unit rows past a text's end; sorts before every unit id


@dataclass(frozen=True)
class Composition:
    """Every filler's units: ``skeleton`` with ``luts[k][offset]`` at index ``slot_index[k]``."""

    skeleton: np.ndarray         # [L] unit ids of the first filler's text
    slot_index: np.ndarray       # [F] unit index of each slot character
    luts: tuple[np.ndarray, ...]  # per slot character: unit id of each alphabet offset

    def rows(self, digits: np.ndarray, start: int = 0) -> np.ndarray:
        """Every filler's units from index ``start`` on (units before it are literal: the same in every row)."""
        out = np.broadcast_to(self.skeleton[start:], (len(digits), len(self.skeleton) - start)).copy()
        for k, idx in enumerate(self.slot_index):
            if idx >= start:
                out[:, idx - start] = self.luts[k][digits[:, k]]
        return out


def pad_rows(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Unit lists -> ``(units [n, L] int64 padded with PAD, lengths [n])``."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if len(rows) and (lengths == lengths[0]).all():
        return np.array(rows, dtype=np.int64).reshape(len(rows), int(lengths[0])), lengths
    out = np.full((len(rows), int(lengths.max()) if len(rows) else 0), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out, lengths


class TemplateUnits:
    """A template read through a model: its texts' units, and which units can spell which positions.

    This base class is the character semantics (one unit per character of the
    vocabulary), which every model gets unless it says otherwise.
    """

    def __init__(self, template: Template, model):
        self.template = template
        self.model = model
        self.vocab_size = len(model.vocab)
        self.text_length = len(template.prefix) + len(template.positions)
        # every character position of the full text: the allowed characters there
        self.allowed: tuple[str, ...] = tuple(template.prefix) + template.positions
        self.slot_chars = [len(template.prefix) + p for p in template.slot_positions]

    def check(self) -> None:
        """Raise a clear error if the model cannot spell some text of this template."""
        self.template.check_vocab(self.model.vocab)

    @property
    def special_ids(self) -> frozenset[int]:
        """Units that spell no text but may open one (a tokenizer's BOS): characters have none."""
        return frozenset()

    # --- texts and their units -------------------------------------------------------
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

    def units(self, filler: str) -> list[int]:
        return self.model.encode(self.template.format(filler))

    def rows(self, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit rows ``[N, L]`` (PAD after each text's end) and lengths of fillers ``[N, F]``: always exact."""
        digits = np.asarray(digits, dtype=np.int64)
        comp = self.composition
        if comp is not None:
            return comp.rows(digits), np.full(len(digits), len(comp.skeleton), dtype=np.int64)
        return pad_rows(self.model.encode_batch(self.texts(digits)))

    def spell(self, text: str) -> list[tuple[int, str]]:
        """``(id, text)`` of each unit of ``text``, for showing how a secret is split."""
        return [(i, self.model.unit_text(i)) for i in self.model.encode(text)]

    # --- the fast path: fillers spelled one unit per slot character -------------------
    @cached_property
    def composition(self) -> Composition | None:
        """Characters: the literal text's ids with the slot characters' ids at their positions."""
        t = self.template
        enc = self.model.encode
        first = self.texts(np.zeros((1, t.filler_length), dtype=np.int64))[0]
        luts = tuple(np.array(enc(a), dtype=np.int64) for a in t.filler_alphabets)
        return Composition(np.array(enc(first), dtype=np.int64), np.array(self.slot_chars, dtype=np.int64), luts)

    @property
    def exact_search(self) -> bool:
        """Whether unit paths and fillers correspond one to one (search over units is then exact)."""
        return self.composition is not None

    # --- which units can spell which positions (search edges) --------------------------
    def edges(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """Unit ids whose text fits the template from character ``pos`` of the full text, and their lengths.

        A unit fits when each of its characters is allowed where it lands: literal
        characters exactly, slot characters from the slot's alphabet; it may span a
        literal and a slot, or several slot characters, but not run past the end.
        """
        return self._edges[pos] if 0 <= pos < self.text_length else (np.zeros(0, np.int64), np.zeros(0, np.int64))

    @cached_property
    def _edges(self) -> list[tuple[np.ndarray, np.ndarray]]:
        by_first: dict[str, list[tuple[int, str]]] = {}
        for i, text in enumerate(self.model.unit_texts()):
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
