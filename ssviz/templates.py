"""Secret templates: literal text with slots, e.g. ``My SSN is {d:3}-{d:2}-{d:4}``.

Slots: ``{d:N}`` digits, ``{a:N}`` lowercase letters, ``{x:N}`` hex digits,
``{[chars]:N}`` a custom set (ranges like ``A-Z`` allowed). ``{{`` and ``}}`` are
literal braces. A *filler* is the concatenation of the slot characters
(``123456789``); its formatted form (``123-45-6789``) or the whole text is
accepted wherever a filler is.

Fillers are numbered in mixed radix, first slot character most significant, so
index order is the lexicographic (trie) order the scorer relies on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ssviz.errors import TemplateError
from ssviz.messages import clip

ALPHABETS = {"d": "0123456789", "a": "abcdefghijklmnopqrstuvwxyz", "x": "0123456789abcdef"}

PRESETS = {
    "SSN": "My SSN is {d:3}-{d:2}-{d:4}",
    "Credit card": "My credit card number is {d:4} {d:4} {d:4} {d:4}",
    "Random number (paper)": "The random number is {d:9}",
    "PIN": "My PIN is {d:4}",
}

_SLOT = re.compile(r"\{(d|a|x|\[[^\]]*\]):(\d+)\}")

# Bounds checked while parsing, before anything is allocated: a template is a line someone
# typed, and a character model's vocabulary is a few hundred characters at most.
MAX_TEMPLATE_CHARS = 2_000
MAX_FILLER_LENGTH = 256
MAX_ALPHABET = 1_024


@dataclass(frozen=True)
class Slot:
    alphabet: str
    length: int
    spec: str  # as written, e.g. "d" or "[A-Z]"

    def __str__(self) -> str:
        return f"{{{self.spec}:{self.length}}}"


def _expand_set(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = body[i], body[i + 2]
            if ord(lo) > ord(hi):
                raise TemplateError(f"bad range {lo}-{hi} in character set [{clip(body, 40)}]")
            if ord(hi) - ord(lo) + 1 + len(out) > MAX_ALPHABET:
                raise TemplateError(f"character set [{clip(body, 40)}] has more than {MAX_ALPHABET:,} characters")
            out.extend(chr(c) for c in range(ord(lo), ord(hi) + 1))
            i += 3
        else:
            out.append(body[i])
            i += 1
    alphabet = "".join(dict.fromkeys(out))
    if not alphabet:
        raise TemplateError("empty character set [] in template")
    return alphabet


class Template:
    """A parsed template. ``positions`` lists, for every character after the
    literal prefix, the characters allowed there (one for a literal)."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text:
            raise TemplateError("template is empty")
        if len(text) > MAX_TEMPLATE_CHARS:
            raise TemplateError(f"template is {len(text):,} characters long; the limit is {MAX_TEMPLATE_CHARS:,}")
        self.text = text
        parts: list[str | Slot] = []
        literal: list[str] = []
        i = 0
        while i < len(text):
            c = text[i]
            if text.startswith("{{", i) or text.startswith("}}", i):
                literal.append(c)
                i += 2
                continue
            if c == "{":
                m = _SLOT.match(text, i)
                if not m:
                    end = text.find("}", i)
                    bad = clip(text[i:end + 1] if end >= 0 else text[i:], 40)
                    raise TemplateError(
                        f"bad slot {bad!r} at position {i}: use {{d:N}}, {{a:N}}, {{x:N}} or {{[chars]:N}} "
                        f"(write {{{{ for a literal brace)")
                spec, n = m.group(1), int(m.group(2))
                if n < 1:
                    raise TemplateError(f"slot {clip(m.group(0), 40)} must have length >= 1")
                if n > MAX_FILLER_LENGTH:
                    raise TemplateError(f"slot {clip(m.group(0), 40)} is longer than {MAX_FILLER_LENGTH} characters")
                alphabet = ALPHABETS[spec] if spec in ALPHABETS else _expand_set(spec[1:-1])
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(Slot(alphabet, n, spec))
                i = m.end()
                continue
            if c == "}":
                raise TemplateError(f"unmatched '}}' at position {i} (write }}}} for a literal brace)")
            literal.append(c)
            i += 1
        if literal:
            parts.append("".join(literal))
        self.parts = tuple(parts)
        self.slots = tuple(p for p in parts if isinstance(p, Slot))
        if sum(s.length for s in self.slots) > MAX_FILLER_LENGTH:
            raise TemplateError(f"the slots add up to more than {MAX_FILLER_LENGTH} characters")
        if not self.slots:
            raise TemplateError("template has no slot: add one such as {d:6}")
        if isinstance(parts[0], Slot):
            raise TemplateError(
                "template must start with literal text: the model reads the first character as "
                "context only, so a slot there cannot be scored (e.g. write 'PIN {d:4}')")
        self.prefix: str = parts[0]
        positions: list[str] = []
        slot_positions: list[int] = []
        for p in parts[1:]:
            if isinstance(p, Slot):
                for _ in range(p.length):
                    slot_positions.append(len(positions))
                    positions.append(p.alphabet)
            else:
                positions.extend(p)
        self.positions: tuple[str, ...] = tuple(positions)
        self.slot_positions: tuple[int, ...] = tuple(slot_positions)
        self.filler_alphabets: tuple[str, ...] = tuple(positions[k] for k in slot_positions)
        self.filler_length = len(slot_positions)

    def __repr__(self) -> str:
        return f"Template({clip(self.text, 80)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    @cached_property
    def space_size(self) -> int:
        """|R|: the number of distinct fillers (a Python int: may exceed 2**63)."""
        n = 1
        for a in self.filler_alphabets:
            n *= len(a)
        return n

    @cached_property
    def characters(self) -> str:
        """Every character any filled-in text can contain."""
        return "".join(dict.fromkeys(self.prefix + "".join(self.positions)))

    def check_vocab(self, vocab) -> None:
        """Raise a clear error if the model cannot represent some text of this template."""
        missing = [c for c in self.characters if c not in vocab]
        if missing:
            raise TemplateError(
                f"the model's vocabulary lacks {len(missing)} character(s) this template needs: "
                f"{clip(''.join(missing), 40)!r}")

    # --- fillers ---------------------------------------------------------------
    def format(self, filler: str) -> str:
        """The full text with ``filler`` in the slots."""
        filler = self.normalize(filler)
        out, k = [], 0
        for p in self.parts:
            if isinstance(p, Slot):
                out.append(filler[k:k + p.length])
                k += p.length
            else:
                out.append(p)
        return "".join(out)

    def display(self, filler: str) -> str:
        """The filler in its formatted form, from the first slot to the last (``123-45-6789``)."""
        text = self.format(filler)
        tail = len(self.parts[-1]) if isinstance(self.parts[-1], str) else 0
        return text[len(self.prefix):len(text) - tail]

    def normalize(self, filler: str) -> str:
        """Accept a bare filler, its formatted form or the full text; return the bare filler."""
        if not isinstance(filler, str):
            raise TemplateError(f"filler must be text, got {type(filler).__name__}")
        s = filler.strip()
        if len(s) == self.filler_length and self._fits(s):
            return s
        for text in (s, self.prefix + s):
            got = self._match_full(text)
            if got is not None:
                return got
        raise TemplateError(
            f"a filler of {len(s)} character(s) does not fit template {clip(self.text, 80)!r}: expected {self.filler_length} "
            f"characters ({self.describe_slots()}), or the formatted text")

    def _fits(self, s: str) -> bool:
        return all(c in a for c, a in zip(s, self.filler_alphabets))

    def _match_full(self, text: str) -> str | None:
        if not text.startswith(self.prefix):
            return None
        rest = text[len(self.prefix):]
        tail = self.parts[-1] if isinstance(self.parts[-1], str) else ""
        if tail and len(rest) == len(self.positions) - len(tail):  # trailing literal omitted
            rest = rest + tail
        if len(rest) != len(self.positions) or not all(c in a for c, a in zip(rest, self.positions)):
            return None
        return "".join(rest[k] for k in self.slot_positions)

    def describe_slots(self) -> str:
        return clip(", ".join(str(s) for s in self.slots), 120)

    def index_of(self, filler: str) -> int:
        """The filler's number in lexicographic (mixed radix) order."""
        filler = self.normalize(filler)
        idx = 0
        for c, a in zip(filler, self.filler_alphabets):
            idx = idx * len(a) + a.index(c)
        return idx

    def filler_at(self, index: int) -> str:
        if not 0 <= index < self.space_size:
            raise TemplateError(f"filler index {index} outside the space of size {self.space_size}")
        out = []
        for a in reversed(self.filler_alphabets):
            index, r = divmod(index, len(a))
            out.append(a[r])
        return "".join(reversed(out))

    def digits_of_indices(self, indices: np.ndarray) -> np.ndarray:
        """Per-position alphabet offsets ``[N, filler_length]`` for filler numbers (needs |R| < 2**63)."""
        indices = np.asarray(indices, dtype=np.int64).copy()
        out = np.empty((len(indices), self.filler_length), dtype=np.int64)
        for k in range(self.filler_length - 1, -1, -1):
            base = len(self.filler_alphabets[k])
            out[:, k] = indices % base
            indices //= base
        return out

    def random_digits(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniformly random fillers as alphabet offsets ``[n, filler_length]``."""
        cols = [rng.integers(0, len(a), size=n) for a in self.filler_alphabets]
        return np.stack(cols, axis=1) if cols else np.zeros((n, 0), dtype=np.int64)

    def digits_to_fillers(self, digits: np.ndarray) -> list[str]:
        lut = [np.array(list(a)) for a in self.filler_alphabets]
        cols = [lut[k][digits[:, k]] for k in range(self.filler_length)]
        return ["".join(row) for row in np.stack(cols, axis=1)] if len(digits) else []

    def fillers_to_digits(self, fillers: list[str]) -> np.ndarray:
        out = np.empty((len(fillers), self.filler_length), dtype=np.int64)
        for i, f in enumerate(fillers):
            f = self.normalize(f)
            out[i] = [a.index(c) for c, a in zip(f, self.filler_alphabets)]
        return out

    def random_fillers(self, n: int, seed: int = 0) -> list[str]:
        return self.digits_to_fillers(self.random_digits(n, np.random.default_rng(seed)))


def parse_template(text: str) -> Template:
    """Parse a template, or a preset name (``SSN``, ``PIN``...)."""
    return Template(PRESETS.get(text, text))


def as_template(template) -> Template:
    """A :class:`Template` as is, a text or preset name parsed; anything else refused."""
    if isinstance(template, Template):
        return template
    if isinstance(template, str):
        return parse_template(template)
    raise TemplateError(f"expected a template, got {type(template).__name__}")
