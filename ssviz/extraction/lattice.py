"""The one search space of every algorithm: the unit paths that spell a template's texts, on any model.

A node has read some units (characters or tokens) and spelled the text up to a
*position*; its edges are the units that may come next. Scoring semantics
(:mod:`ssviz.models.units`) only score a filler's *canonical* units,
``model.encode(text)``, so the lattice has two regimes, chosen by
:attr:`~ssviz.models.units.TemplateUnits.exact_search`:

* **One unit per slot character** (every character model; digit-splitting
  tokenizers: Llama, Mistral, Qwen, Gemma, where
  :attr:`~ssviz.models.units.TemplateUnits.composition` holds and was verified).
  Every filler's canonical units are one skeleton with one unit per slot
  character, so the lattice *is* that skeleton: positions are unit indices,
  literal units are *forced* (read without a choice), a slot unit branches over
  the slot's alphabet. Each filler is exactly one path and the path's cost is its
  canonical log-perplexity: search is exact.
* **Merging tokenizers** (GPT-2 merges digit runs and ``" 4"``). Positions are
  characters of the full text; the edges at a position are every token that
  fits the template there (:meth:`~ssviz.models.units.TemplateUnits.edges`:
  literal characters exactly, slot characters from the slot's alphabet,
  spanning a literal and a slot or several slot characters). Many paths spell
  one filler. A path ends (is *terminal*) once its filler is determined, i.e.
  its last slot character is spelled, and the filler is then re-scored
  canonically with :mod:`ssviz.scoring`. Best-first search stays certified: a
  filler's canonical path starts at the root, and its part up to the last slot
  character costs at most the canonical log-perplexity (costs only grow), so a
  filler not yet found costs at least the cheapest frontier node. That holds
  *if* every filler's canonical tokens begin with the root's tokens and spell
  the text token by token (no normalizer rewriting it). This is checked on a
  sample of fillers (every alphabet value at every slot character, plus random
  ones), not proved (:attr:`Lattice.checked`): for merging tokenizers the
  top-k and rank are exact only under that sampled check, a heuristic. The price
  is work: non-canonical paths are explored too.

Beam search and sampling are heuristics in both regimes. Traces name a node by
its filler so far on a character model (docs/trace.md) and by its tokens' texts,
joined by :attr:`Lattice.separator`, on a token model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from ssviz.errors import TemplateError
from ssviz.extraction.trace import child, token_child
from ssviz.models.base import LanguageModel
from ssviz.scoring import LN2, Context, TrieScorer
from ssviz.templates import as_template

ROOT_SAMPLE = 64          # random fillers whose canonical units fix and check the root
SEPARATORS = "|¦│/·"       # marks token boundaries in trace node names (the first not in the template)


@dataclass(frozen=True)
class Edges:
    """The units that may follow a node at one position, with where each one leads."""

    ids: np.ndarray         # [E] unit ids
    nxt: np.ndarray         # [E] position after each unit
    term: np.ndarray        # [E] bool: the unit completes a filler (its path ends there)
    chars: tuple[str, ...]  # slot characters each unit spells

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def forced(self) -> bool:
        """One possible unit, spelling no slot character: a literal, read without a choice."""
        return len(self.ids) == 1 and not self.chars[0]


NO_EDGES = Edges(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), ())


class Lattice:
    """A template's unit paths on one model, with the root context already read.

    ``ctx`` is the model after the root units (the canonical units every filler
    shares; its ``log_probs`` are zeros when the root is empty, since a text's
    first unit is context and costs nothing); ``root_pos`` the position they
    reach. ``edges(pos)`` (and the same as dense per-position tables for
    vectorized searches: ``edge_ids``, ``edge_next``, ``edge_chars``),
    ``forced``, ``terminal`` and ``canonical`` are what the searches use.
    """

    def __init__(self, model: LanguageModel, template, *, check: bool = True):
        template = as_template(template)
        self.template = template
        self.model = model
        self.scorer = TrieScorer(model, template)  # checks that the model can spell the template
        self.units = self.scorer.units
        self.exact = self.units.exact_search
        self.unit_name = model.unit_name
        # units of one character each (a character model) keep the character trace format: nodes are
        # fillers, no separator; longer units (tokens) are joined by a character the template does not use
        self.separator = None if all(len(t) <= 1 for t in model.unit_texts() if t) else \
            next((s for s in SEPARATORS if s not in template.characters), "\x1f")
        if self.exact:
            comp = self.units.composition
            self.root_pos = int(comp.slot_index[0])
            self.end = len(comp.skeleton)
            root = tuple(int(t) for t in comp.skeleton[:self.root_pos])
        else:
            self.end = self.units.text_length
            self.last_slot = self.units.slot_chars[-1]  # a path is complete once it spelled this character
            root, self.root_pos = self._merging_root()
        self.root_units = root
        self.ctx = self._context(root)
        # searches need the paths checked (see the module docstring); brute force scores canonical units
        # directly, so it works even for a tokenizer whose tokens the lattice cannot follow (None: not checked)
        self.checked: bool | None = self._check_paths() if check else None

    # --- edges at every position, built on first use (brute force needs none) ------------------
    @cached_property
    def _edges(self) -> list[Edges]:
        return [self._edges_at(p) for p in range(self.end)] + [NO_EDGES]

    @cached_property
    def forced(self) -> list[bool]:
        """Per position: one possible unit, a literal (:attr:`Edges.forced`)."""
        return [e.forced for e in self._edges]

    def _table(self, field: str, dtype, fill) -> np.ndarray:
        """``[positions + 1, widest]``: one field of every position's edges, for vectorized lookups."""
        width = max(1, max(len(e) for e in self._edges))
        out = np.full((self.end + 1, width), fill, dtype=dtype)
        for p, e in enumerate(self._edges):
            out[p, :len(e)] = getattr(e, field)
        return out

    @cached_property
    def edge_ids(self) -> np.ndarray:
        return self._table("ids", np.int64, 0)

    @cached_property
    def edge_next(self) -> np.ndarray:
        return self._table("nxt", np.int64, 0)

    @cached_property
    def edge_chars(self) -> np.ndarray:
        return self._table("chars", object, "")

    # the same as lists (per position, per edge): cheaper than numpy for the few entries of one pop
    @cached_property
    def ids_of(self) -> list[list[int]]:
        return [e.ids.tolist() for e in self._edges]

    @cached_property
    def next_of(self) -> list[list[int]]:
        return [e.nxt.tolist() for e in self._edges]

    @cached_property
    def chars_of(self) -> list[tuple[str, ...]]:
        return [e.chars for e in self._edges]

    # --- the root ------------------------------------------------------------------------
    @cached_property
    def _sample(self) -> list[list[int]]:
        """Canonical units of sampled fillers: every alphabet value at every slot, the last values, random ones."""
        t = self.template
        width = max(len(a) for a in t.filler_alphabets)
        variants = np.array([[v % len(a) for a in t.filler_alphabets] for v in range(width)], dtype=np.int64)
        last = np.array([[len(a) - 1 for a in t.filler_alphabets]], dtype=np.int64)
        digits = np.concatenate([variants, last, t.random_digits(ROOT_SAMPLE, np.random.default_rng(0))])
        rows, lengths = self.units.rows(digits)
        return [list(map(int, r[:n])) for r, n in zip(rows, lengths)]

    def _merging_root(self) -> tuple[tuple[int, ...], int]:
        """The canonical units every sampled filler starts with, cut where they stop spelling the literal prefix."""
        rows = self._sample
        first = rows[0]
        common = min(len(r) for r in rows)
        for r in rows[1:]:
            common = min(common, next((i for i, (a, b) in enumerate(zip(first, r)) if a != b), common))
        text = self.units.texts(np.zeros((1, self.template.filler_length), dtype=np.int64))[0]
        texts = self.model.unit_texts()
        special = self.units.special_ids
        limit = self.units.slot_chars[0]  # the root spells only literal characters
        pos, keep = 0, 0
        for i in range(common):
            tok = first[i]
            piece = texts[tok] if 0 <= tok < len(texts) else None
            if piece is None:
                if tok in special and pos == 0:  # a BOS-like unit before any text
                    keep = i + 1
                    continue
                break
            if pos + len(piece) > limit or text[pos:pos + len(piece)] != piece:
                break
            pos += len(piece)
            keep = i + 1
        pos = sum(len(texts[t] or "") for t in first[:keep])
        return tuple(first[:keep]), pos

    def _context(self, root: tuple[int, ...]) -> Context:
        if root:
            with torch.inference_mode():
                return self.scorer.context(root)
        # an empty root: the first unit is context, so every first unit costs nothing
        return Context((), self.model.initial_state(1), torch.zeros(1, len(self.model.vocab), device=self.model.device),
                       0.0)

    def _check_paths(self) -> bool:
        """Whether every sampled filler's canonical units are a root-to-terminal path of this lattice
        (always, one path per filler, in the exact regime); TemplateError when none is."""
        if self.exact:
            return True
        n = len(self.root_units)
        good = 0
        for row in self._sample:
            ok = row[:n] == list(self.root_units)
            pos = self.root_pos
            for tok in row[n:]:
                if not ok or self.terminal(pos):
                    break
                e = self.edges(pos)
                hit = np.flatnonzero(e.ids == tok)
                if not len(hit):
                    ok = False
                    break
                pos = int(e.nxt[hit[0]])
            good += ok and self.terminal(pos)
        if not good:
            raise TemplateError("search over tokens cannot follow this tokenizer: its tokens do not spell the "
                                "template's text character by character (a normalizer or unusual pre-tokenizer); "
                                "use brute force or the skew-normal estimate instead")
        return good == len(self._sample)

    # --- what searches use ------------------------------------------------------------------
    @property
    def prefix_bits(self) -> float:
        """Log-perplexity of the root units (the root node's cost)."""
        return float(self.ctx.bits)

    @property
    def max_units(self) -> int:
        """The most units a path can hold (root included): one per position at most."""
        return len(self.root_units) + self.end - self.root_pos

    @cached_property
    def choices(self) -> int:
        """Positions after the root where a path has a choice (a character model: the slot characters)."""
        return sum(not f for f in self.forced[self.root_pos:self.end])

    def terminal(self, pos: int) -> bool:
        """Whether a path that reached ``pos`` is complete (exact: text read; merging: filler determined)."""
        return pos >= self.end if self.exact else pos > self.last_slot

    def edges(self, pos: int) -> Edges:
        return self._edges[pos] if self.root_pos <= pos < self.end else NO_EDGES

    def _edges_at(self, pos: int) -> Edges:
        if pos < self.root_pos:
            return NO_EDGES
        return self._edges_exact(pos) if self.exact else self._edges_merging(pos)

    @cached_property
    def _slot_of(self) -> dict[int, int]:
        """Exact regime: the slot character (index into the filler) read at each slot position."""
        return {int(i): k for k, i in enumerate(self.units.composition.slot_index)}

    def _edges_exact(self, pos: int) -> Edges:
        comp = self.units.composition
        k = self._slot_of.get(pos)
        if k is None:
            ids = comp.skeleton[pos:pos + 1].astype(np.int64)
            chars: tuple[str, ...] = ("",)
        else:
            ids = comp.luts[k].astype(np.int64)
            chars = tuple(self.template.filler_alphabets[k])
        nxt = np.full(len(ids), pos + 1, dtype=np.int64)
        return Edges(ids, nxt, nxt >= self.end, chars)

    def _edges_merging(self, pos: int) -> Edges:
        ids, lens = self.units.edges(pos)
        if not len(ids):
            return NO_EDGES
        nxt = pos + lens
        slots = [q for q in self.units.slot_chars if pos <= q]
        all_texts = self.model.unit_texts()
        texts = tuple(all_texts[int(i)] for i in ids)
        chars = tuple("".join(t[q - pos] for q in slots if q < pos + len(t)) for t in texts)
        return Edges(ids.astype(np.int64), nxt.astype(np.int64), nxt > self.last_slot, chars)

    def edge_bits(self, log_probs: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
        """``[n, E]`` float64 edge weights -log2 P(unit | node) of units ``ids``, on the CPU (where searches keep
        their costs) whatever device the model runs on."""
        return -log_probs[:, torch.from_numpy(ids).to(log_probs.device)].double().cpu() / LN2

    # --- canonical scores -------------------------------------------------------------------
    def score(self, digits: np.ndarray) -> np.ndarray:
        """Canonical log-perplexity of fillers given as alphabet offsets (any order), by the trie scorer."""
        digits = np.asarray(digits, dtype=np.int64)
        out = np.empty(len(digits), dtype=np.float64)
        step = self.scorer.chunk
        with torch.inference_mode():
            for lo in range(0, len(digits), step):
                out[lo:lo + step] = self.scorer.score_digits(digits[lo:lo + step])
        return out

    def canonical(self, fillers: list[str]) -> np.ndarray:
        """Canonical log-perplexity (bits) of bare fillers: what :mod:`ssviz.scoring` gives."""
        if not fillers:
            return np.zeros(0)
        return self.score(self.template.fillers_to_digits(list(fillers)))

    # --- trace names ------------------------------------------------------------------------
    @cached_property
    def _texts(self) -> list[list[str]]:
        """Per position, each edge's unit as people read it (built only when a trace is recorded)."""
        return [[self.model.unit_text(i) for i in e.ids.tolist()] for e in self._edges]

    def name(self, parent: str, pos: int, a: int) -> str:
        """The trace name of ``parent``'s child through edge ``a`` at ``pos``: the filler so far (characters),
        or the token texts of the path after the root joined by ``separator`` (tokens)."""
        if self.separator is None:
            return parent + self._edges[pos].chars[a]
        text = self._texts[pos][a]
        return f"{parent}{self.separator}{text}" if parent else text

    def child(self, parent: str, pos: int, a: int, edge: float, cost: float, kept: bool = True) -> dict:
        """The trace entry of ``parent``'s child through edge ``a`` at ``pos``."""
        name = self.name(parent, pos, a)
        if self.separator is None:
            return child(name, edge, cost, kept)
        e = self._edges[pos]
        return token_child(name, parent, self._texts[pos][a], int(e.ids[a]), edge, cost, kept)


class Completions:
    """Complete fillers at the cost a result reports.

    Exact regime: a filler's one path costs its log-perplexity, so completions pass
    through as found (a sampler that draws a filler again keeps the cheaper of its
    equal-up-to-rounding costs). Merging: each filler once, at its canonical
    re-score (the same every time, and it costs model work).
    """

    def __init__(self, lattice: Lattice):
        self.lattice = lattice
        self.pending: list[tuple[float, str]] = []
        self.seen: set[str] = set()

    def add(self, cost: float, filler: str) -> None:
        if self.lattice.exact or filler not in self.seen:
            self.pending.append((cost, filler))

    def extend(self, costs: list[float], fillers: list[str]) -> None:
        if self.lattice.exact:
            self.pending.extend(zip(costs, fillers))
        else:
            for c, f in zip(costs, fillers):
                self.add(c, f)

    def flush(self) -> list[tuple[float, str]]:
        """The completions since the last flush, with their reported cost."""
        out, self.pending = self.pending, []
        if self.lattice.exact or not out:
            return out
        fillers = [f for f in dict.fromkeys(f for _, f in out) if f not in self.seen]
        self.seen.update(fillers)
        return list(zip(self.lattice.canonical(fillers).tolist(), fillers))


__all__ = ["Completions", "Edges", "Lattice"]
