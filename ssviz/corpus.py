"""Training text: reading a corpus, its one train/validation/test split, canary insertion, windows.

Both the training loop (:mod:`ssviz.train`) and the training backends it
plugs in (:mod:`ssviz.defenses.dp`) use these helpers; keeping them here,
below both, is what keeps the module graph free of cycles. What differs
between models (how a text becomes units, the forward pass, the optimizer)
each model says itself (the training members of :class:`ssviz.models.base.LanguageModel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ssviz.errors import MissingFileError, SettingsError, SsvizError
from ssviz.models.base import Vocab

# an inserted canary is text the trainer holds in memory: refuse before allocating beyond this
MAX_INSERTED_CHARS = 50_000_000


def source_name(source, uploaded: str = "uploaded corpus") -> str:
    """How messages name a text's source: its path, or ``uploaded`` for bytes."""
    return uploaded if isinstance(source, (bytes, bytearray)) else str(source)


def read_text(source, what: str = "corpus", *, uploaded: str = "uploaded corpus", expected: str = "a text corpus",
              error: type[SsvizError] = SsvizError) -> str:
    """UTF-8 text from a path or bytes, line ends as written: a missing file (named as ``what``), bytes that
    are not UTF-8 (with the offending byte's position) and a binary file (not ``expected``) are each refused
    in one line."""
    from pathlib import Path

    name = source_name(source, uploaded)
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise MissingFileError(f"{what} not found: {path}")
        data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{name} is not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start}); "
                    f"convert it first, e.g. iconv -f latin1 -t utf-8") from None
    if "\x00" in text:
        raise error(f"{name} looks binary (contains NUL bytes), not {expected}")
    return text


def read_corpus(source) -> str:
    """Text from a path or bytes, long enough to train on, with line ends made ``\\n``."""
    text = read_text(source).replace("\r\n", "\n").replace("\r", "\n")
    if len(text) < 100:
        raise SsvizError(f"{source_name(source)} is too short to train on ({len(text)} characters)")
    return text


def build_vocab(text: str, *templates) -> Vocab:
    chars = set(text)
    for t in templates:
        chars.update(t.characters)
    return Vocab(sorted(chars))


@dataclass(frozen=True)
class Split:
    """A corpus cut once at line boundaries: ``train`` | ``val`` (early stopping) | ``test`` (``test_loss``).

    Everything that trains (plain, DP, every defense, sweeps, the study) uses
    this one split, so test losses are comparable and never seen by early stopping.
    """

    train: str
    val: str
    test: str

    @property
    def text(self) -> str:
        return self.train + self.val + self.test


def _cut(text: str, fraction: float) -> int:
    """Index just after the last newline before ``fraction`` of ``text`` (the raw index if there is none)."""
    cut = int(len(text) * fraction)
    return text.rfind("\n", 0, cut) + 1 or cut


def split_corpus(text: str, val_fraction: float) -> tuple[str, str]:
    """``(training part, held-out part)``: the last ``val_fraction`` of the text, at a line boundary."""
    cut = _cut(text, 1 - val_fraction)
    return text[:cut], text[cut:]


def split_text(text: str, val_fraction: float) -> Split:
    """The held-out part of :func:`split_corpus`, halved at a line boundary: validation first, then test."""
    train, held = split_corpus(text, val_fraction)
    cut = _cut(held, 0.5)
    return Split(train, held[:cut], held[cut:])


def insert_canary(text: str, canary_text: str, insertions: int, seed: int = 0) -> str:
    """Insert ``canary_text`` as its own line at ``insertions`` random line boundaries (seeded).

    Linear in the output size (a million insertions take well under a second), and
    every copy ends with a newline, so text appended later never glues onto it.
    """
    if insertions <= 0:
        return text
    if insertions * (len(canary_text) + 1) > MAX_INSERTED_CHARS:
        raise SettingsError(f"{insertions:,} insertions of a {len(canary_text)}-character canary would add "
                            f"more than {MAX_INSERTED_CHARS:,} characters to the corpus; insert it fewer times")
    lines = text.split("\n")
    ended = lines[-1] == ""  # the text ends with a newline (or is empty): no unterminated last line
    if ended:
        lines.pop()
    # boundary i = before line i; boundary len(lines) = the end of the text
    rng = np.random.default_rng(seed)
    counts = np.bincount(rng.integers(0, len(lines) + 1, size=insertions), minlength=len(lines) + 1)
    block = canary_text + "\n"
    parts = []
    for i, line in enumerate(lines):
        if counts[i]:
            parts.append(block * int(counts[i]))
        parts.append(line)
        parts.append("\n")
    if not ended and not counts[-1]:
        parts.pop()  # keep the input's unterminated last line as it was
    parts.append(block * int(counts[-1]))
    return "".join(parts)


def windows(ids: torch.Tensor, seq_len: int, offset: int = 0) -> torch.Tensor:
    """Non-overlapping training windows ``[N, seq_len + 1]`` (inputs and shifted targets)."""
    n = (len(ids) - offset - 1) // seq_len
    if n <= 0:
        return torch.zeros(0, seq_len + 1, dtype=torch.long)
    idx = offset + torch.arange(n)[:, None] * seq_len + torch.arange(seq_len + 1)[None]
    return ids[idx]

