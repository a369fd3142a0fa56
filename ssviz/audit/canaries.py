"""Canary kinds of the one-run audit: what the canaries are made of, decided before any coin is flipped.

Every kind turns the user's template into the *canary template* the audit draws from, so drawing,
inserting, scoring (``ssviz.scoring.score_fillers``), ``canaries.csv`` and the bounds stay one code
path for all kinds; only the slots' characters and how fillers are drawn differ.

* ``random``: the template as given, fillers uniformly random (the Secret Sharer's canaries).
* ``new-token``: the slots filled with characters the training data never uses, whose units the
  model never sees outside the canaries (Panda et al., ICLR 2025: new-token canaries). For a
  character model the characters join its vocabulary; for a tokenizer, the characters whose tokens
  never occur in the tokenized corpus (byte-level tokens of characters absent from it). Which one is
  the model's answer, through ``encode``; no kind is assumed.
* ``bigram``: fillers sampled from a character bigram model of the training part, so each canary
  looks like the data locally but is still a fresh random draw (Panda et al.: bigram canaries).

Nothing here reads the coins: each kind depends on the clean corpus, the model built from it and
the seed only, so the one-run theorems still apply.
"""

from __future__ import annotations

import numpy as np

from ssviz.errors import SettingsError
from ssviz.templates import Slot, Template, parse_template

CANARY_KINDS = ("random", "new-token", "bigram")
# characters tried as new units, in order: Greek, then Cyrillic lower case (one code point each, and two
# UTF-8 bytes each, so a byte-level tokenizer reads them as bytes a plain-ASCII corpus never produces)
NEW_UNIT_POOL = "".join(chr(c) for c in range(0x3B1, 0x3CA) if c != 0x3C2) + \
    "".join(chr(c) for c in range(0x430, 0x450))
MIN_NEW_UNITS = 2
_MAX_DRAWS = 50  # rounds of bigram sampling before giving up on distinct canaries


def _char_set(alphabet: str) -> str:
    """``alphabet`` as a template character set: ']' cannot be written in one and '-' goes last (no range)."""
    chars = [c for c in dict.fromkeys(alphabet) if c not in "]-\n"]
    if "-" in alphabet:
        chars.append("-")
    return "[" + "".join(chars) + "]"


def with_alphabet(template: Template, alphabet: str) -> Template:
    """``template`` with every slot's characters replaced by ``alphabet`` (same lengths, same literals)."""
    out = []
    for p in template.parts:
        if isinstance(p, Slot):
            out.append(f"{{{_char_set(alphabet)}:{p.length}}}")
        else:
            out.append(p.replace("{", "{{").replace("}", "}}"))
    return parse_template("".join(out))


def new_unit_candidates(corpus: str) -> str:
    """Characters of :data:`NEW_UNIT_POOL` that the corpus never uses (the model then says which are new units)."""
    used = set(corpus)
    return "".join(c for c in NEW_UNIT_POOL if c not in used)


def new_units(model, corpus: str, candidates: str) -> str:
    """The candidates whose units the model can read and never produces on ``corpus``: asked of the model."""
    frame = set(model.encode(""))  # what every text gets (a BOS unit, say), not the character's own
    seen = set(model.encode(corpus))
    out = []
    for c in candidates:
        try:
            units = set(model.encode(c)) - frame
        except Exception:  # the model cannot represent it: not a unit this model kind allows
            continue
        if units and not seen.intersection(units):
            out.append(c)
    return "".join(out)


class BigramModel:
    """Character bigram counts of a text (only transitions seen; a character never followed by a
    usable one falls back to the unigram frequencies); line breaks, other whitespace than the
    space, and ']' (which a template character set cannot hold) excluded."""

    def __init__(self, text: str, exclude: str = "]\n"):
        chars = sorted(c for c in set(text) - set(exclude) if c == " " or not c.isspace())
        if len(chars) < 2:
            raise SettingsError("the training text has fewer than 2 characters to build a bigram model from")
        self.alphabet = "".join(chars)
        index = {c: i for i, c in enumerate(chars)}
        k = len(chars)
        ids = np.array([index.get(c, -1) for c in text], dtype=np.int64)
        prev, nxt = ids[:-1], ids[1:]
        ok = (prev >= 0) & (nxt >= 0)
        counts = np.bincount(prev[ok] * k + nxt[ok], minlength=k * k).reshape(k, k).astype(np.float64)
        unigram = np.bincount(ids[ids >= 0], minlength=k).astype(np.float64)
        self.unigram = unigram / unigram.sum()
        rows = counts.sum(axis=1, keepdims=True)
        self.probs = np.where(rows > 0, counts / np.maximum(rows, 1), self.unigram)  # unseen context: unigram
        self.index = index

    def sample(self, template: Template, n: int, rng: np.random.Generator) -> list[str]:
        """``n`` fillers: each slot character drawn given the character before it in the canary's text."""
        cdf = np.cumsum(self.probs, axis=1)
        cdf[:, -1] = 1.0
        prev = np.full(n, -1, dtype=np.int64)
        cols: list[np.ndarray] = []
        chars = np.array(list(self.alphabet))
        last_literal = template.prefix[-1]
        for k, allowed in enumerate(template.positions):
            if k in template.slot_positions:
                start = np.full(n, self.index.get(last_literal, -1), dtype=np.int64)
                ctx = np.where(prev >= 0, prev, start)
                table = np.where(ctx[:, None] >= 0, cdf[np.maximum(ctx, 0)], np.cumsum(self.unigram)[None, :])
                pick = (table < rng.random(n)[:, None]).sum(axis=1).clip(max=len(chars) - 1)
                cols.append(chars[pick])
                prev = pick
            else:
                last_literal = allowed
                prev = np.full(n, -1, dtype=np.int64)
        return ["".join(row) for row in np.stack(cols, axis=1)]


def bigram_canaries(template: Template, bigram: BigramModel, m: int, seed: int) -> list[str]:
    """``m`` distinct fillers sampled from the bigram model (seeded), in the order first drawn."""
    rng = np.random.default_rng([seed, 0xB16A])
    out: dict[str, None] = {}
    for _ in range(_MAX_DRAWS):
        for f in bigram.sample(template, 2 * (m - len(out)) + 16, rng):
            if f != f.strip():
                continue  # a filler is read back stripped: no space at either end
            out.setdefault(f, None)
            if len(out) == m:
                return list(out)
    raise SettingsError(f"the bigram model of the training text gives only {len(out):,} distinct canaries of "
                        f"{template.filler_length} characters, fewer than {m:,}: lengthen the template's slot")
