"""The search space of a transformer: the token paths that spell a template's texts.

A node has read some tokens and spelled the text up to a *position*; its edges
are the tokens that may come next. Scoring semantics (:mod:`ssviz.tokens`) only
score a filler's *canonical* tokens, ``tokenizer(text)["input_ids"]``, so the
lattice has two regimes, chosen by :attr:`~ssviz.tokens.TokenTemplate.exact_search`:

* **One token per slot character** (digit-splitting tokenizers: Llama, Mistral,
  Qwen, Gemma; :attr:`~ssviz.tokens.TokenTemplate.composition` holds and was
  verified). Every filler's canonical tokens are one skeleton with one token per
  slot character, so the lattice *is* that skeleton: positions are token
  indices, literal tokens are forced, a slot token branches over the slot's
  alphabet. Each filler is exactly one path and the path's cost is its
  canonical log-perplexity: search is exact, as for characters.
* **Merging tokenizers** (GPT-2 merges digit runs and ``" 4"``). Positions are
  characters of the full text; the edges at a position are every token that
  fits the template there (:meth:`~ssviz.tokens.TokenTemplate.edges`: literal
  characters exactly, slot characters from the slot's alphabet, spanning a
  literal and a slot or several slot characters). Many paths spell one filler.
  A path ends (is *terminal*) once its filler is determined, i.e. its last slot
  character is spelled, and the filler is then re-scored canonically with
  :mod:`ssviz.token_scoring`. Best-first search stays certified: a filler's
  canonical path starts at the root, and its part up to the last slot character
  costs at most the canonical log-perplexity (costs only grow), so a filler not
  yet found costs at least the cheapest frontier node. That holds *if* every
  filler's canonical tokens begin with the root's tokens and spell the text
  token by token (no normalizer rewriting it). This is checked on a sample of
  fillers (every alphabet value at every slot character, plus random ones), not
  proved, and :attr:`TokenLattice.checked` records the outcome: for merging
  tokenizers the top-k and rank are exact only under that sampled check, a
  heuristic. The price is work: non-canonical paths are explored too.

Beam search and sampling are heuristics in both regimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from ssviz.errors import TemplateError
from ssviz.models.base import LanguageModel
from ssviz.scoring import LN2
from ssviz.templates import as_template
from ssviz.token_scoring import DEFAULT_MEMORY, TokenContext, _Scorer
from ssviz.tokens import TokenTemplate, token_texts

ROOT_SAMPLE = 64          # random fillers whose canonical tokens fix and check the root
SEPARATORS = "|¦│/·"       # marks token boundaries in trace node names (the first not in the template)


@dataclass(frozen=True)
class Edges:
    """The tokens that may follow a node at one position, with where each one leads."""

    ids: np.ndarray       # [E] token ids
    nxt: np.ndarray       # [E] position after each token
    term: np.ndarray      # [E] bool: the token completes a filler (its path ends there)
    chars: tuple[str, ...]  # slot characters each token spells
    texts: tuple[str, ...]  # each token's text (for traces)

    def __len__(self) -> int:
        return len(self.ids)


def _empty_edges() -> Edges:
    return Edges(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), (), ())


class TokenLattice:
    """A template compiled against a transformer's tokenizer, with its root context already read.

    ``ctx`` is the model after the root tokens (the canonical tokens every filler
    shares; its ``log_probs`` are zeros when the root is empty, since a text's
    first token is context and costs nothing); ``root_pos`` the position they
    reach. ``edges(pos)``, ``terminal`` and ``canonical`` are what the searches use.
    """

    def __init__(self, model: LanguageModel, template):
        template = as_template(template)
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise TemplateError("token search needs a model with a tokenizer (a transformer)")
        template.check_vocab(model.vocab)
        self.template = template
        self.model = model
        self.tt = TokenTemplate(template, tokenizer, len(model.vocab))
        self.tt.check()
        self.texts = token_texts(tokenizer)
        self.exact = self.tt.exact_search
        self.scorer = _Scorer(model, self.tt, None, DEFAULT_MEMORY)
        self.separator = next((s for s in SEPARATORS if s not in template.characters), "\x1f")
        self._edge_cache: dict[int, Edges] = {}
        if self.exact:
            comp = self.tt.composition
            self._skeleton = comp.skeleton
            self._slot_of = {int(i): k for k, i in enumerate(comp.slot_index)}
            self._luts = comp.luts
            self.root_pos = int(comp.slot_index[0])
            self.end = len(comp.skeleton)
            root = tuple(int(t) for t in comp.skeleton[:self.root_pos])
            self.checked = True
        else:
            self._slot_chars = self.tt.slot_chars
            self.end = self.tt.text_length
            root, self.root_pos = self._merging_root()
        self.root_tokens = root
        self.ctx = self._context(root)
        if not self.exact:
            self.checked = self._check_sample()

    # --- the root ------------------------------------------------------------------------
    def _sample_digits(self) -> np.ndarray:
        t = self.template
        width = max(len(a) for a in t.filler_alphabets)
        variants = np.array([[v % len(a) for a in t.filler_alphabets] for v in range(width)], dtype=np.int64)
        last = np.array([[len(a) - 1 for a in t.filler_alphabets]], dtype=np.int64)
        return np.concatenate([variants, last, t.random_digits(ROOT_SAMPLE, np.random.default_rng(0))])

    @cached_property
    def _sample(self) -> tuple[np.ndarray, list[list[int]]]:
        digits = self._sample_digits()
        rows, lengths = self.tt.rows(digits)
        return digits, [list(map(int, r[:n])) for r, n in zip(rows, lengths)]

    def _merging_root(self) -> tuple[tuple[int, ...], int]:
        """The canonical tokens every sampled filler starts with, cut where they stop spelling the literal prefix."""
        _, rows = self._sample
        first = rows[0]
        common = min(len(r) for r in rows)
        for r in rows[1:]:
            common = min(common, next((i for i, (a, b) in enumerate(zip(first, r)) if a != b), common))
        text = self.tt.texts(np.zeros((1, self.template.filler_length), dtype=np.int64))[0]
        limit = self._slot_chars[0]  # the root spells only literal characters
        special = set(getattr(self.tt.tokenizer, "all_special_ids", []) or [])
        pos, keep = 0, 0
        for i in range(common):
            tok = first[i]
            piece = self.texts[tok] if 0 <= tok < len(self.texts) else None
            if piece is None:
                if tok in special and pos == 0:  # a BOS-like token before any text
                    keep = i + 1
                    continue
                break
            if pos + len(piece) > limit or text[pos:pos + len(piece)] != piece:
                break
            pos += len(piece)
            keep = i + 1
        pos = sum(len(self.texts[t] or "") for t in first[:keep])
        return tuple(first[:keep]), pos

    def _context(self, root: tuple[int, ...]) -> TokenContext:
        if root:
            with torch.inference_mode():
                return self.scorer.context(root)
        # an empty root: the first token is context, so every first token costs nothing
        return TokenContext((), self.model.initial_state(1), torch.zeros(1, len(self.model.vocab)), 0.0)

    def _check_sample(self) -> bool:
        """Whether every sampled filler's canonical tokens are a root-to-terminal path of this lattice."""
        _, rows = self._sample
        n = len(self.root_tokens)
        good = 0
        for row in rows:
            ok = row[:n] == list(self.root_tokens)
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
        return good == len(rows)

    # --- what searches use ------------------------------------------------------------------
    @property
    def prefix_bits(self) -> float:
        """Log-perplexity of the root tokens (the root node's cost)."""
        return float(self.ctx.bits)

    @property
    def max_tokens(self) -> int:
        """The most tokens a path can hold (root included): one per position at most."""
        return len(self.root_tokens) + self.end - self.root_pos

    def terminal(self, pos: int) -> bool:
        """Whether a path that reached ``pos`` is complete (exact: text read; merging: filler determined)."""
        return pos >= self.end if self.exact else pos > self._slot_chars[-1]

    def edges(self, pos: int) -> Edges:
        e = self._edge_cache.get(pos)
        if e is None:
            e = self._edges_exact(pos) if self.exact else self._edges_merging(pos)
            self._edge_cache[pos] = e
        return e

    def _text_of(self, tok: int) -> str:
        piece = self.texts[tok] if 0 <= tok < len(self.texts) else None
        return piece if piece is not None else str(self.tt.tokenizer.convert_ids_to_tokens(int(tok)))

    def _edges_exact(self, pos: int) -> Edges:
        if not self.root_pos <= pos < self.end:
            return _empty_edges()
        k = self._slot_of.get(pos)
        if k is None:
            ids = self._skeleton[pos:pos + 1].astype(np.int64)
            chars: tuple[str, ...] = ("",)
        else:
            ids = self._luts[k].astype(np.int64)
            chars = tuple(self.template.filler_alphabets[k])
        nxt = np.full(len(ids), pos + 1, dtype=np.int64)
        return Edges(ids, nxt, nxt >= self.end, chars, tuple(self._text_of(int(t)) for t in ids))

    def _edges_merging(self, pos: int) -> Edges:
        ids, lens = self.tt.edges(pos)
        if not len(ids):
            return _empty_edges()
        nxt = pos + lens
        slots = [q for q in self._slot_chars if pos <= q]
        texts = tuple(self.texts[int(i)] for i in ids)
        chars = tuple("".join(t[q - pos] for q in slots if q < pos + len(t)) for t in texts)
        term = nxt > self._slot_chars[-1]
        return Edges(ids.astype(np.int64), nxt.astype(np.int64), term, chars, texts)

    def edge_bits(self, log_probs: torch.Tensor, edges: Edges) -> torch.Tensor:
        """``[n, E]`` float64 edge weights -log2 P(token | node)."""
        return -log_probs[:, torch.from_numpy(edges.ids)].double() / LN2

    def score(self, model: LanguageModel, digits: np.ndarray) -> np.ndarray:
        """Canonical log-perplexity of fillers given as alphabet offsets (any order), by the token trie scorer.

        ``model`` is the model this lattice was built over (its counting wrapper).
        """
        digits = np.asarray(digits, dtype=np.int64)
        out = np.empty(len(digits), dtype=np.float64)
        step = self.scorer.chunk
        with torch.inference_mode():
            for lo in range(0, len(digits), step):
                out[lo:lo + step] = self.scorer.score_digits_sorted(digits[lo:lo + step])
        return out

    def canonical(self, fillers: list[str]) -> np.ndarray:
        """Canonical log-perplexity (bits) of bare fillers: what :mod:`ssviz.token_scoring` gives."""
        if not fillers:
            return np.zeros(0)
        return self.score(self.model, self.template.fillers_to_digits(list(fillers)))

    def node_name(self, parent: str, text: str) -> str:
        """A trace node: the token texts of its path after the root, joined by ``separator``."""
        return f"{parent}{self.separator}{text}" if parent else text


def canonical_top(space, ranked: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """``ranked`` (cost, filler) with each distinct filler once, at its canonical log-perplexity."""
    fillers = list(dict.fromkeys(f for _, f in ranked))
    return list(zip(space.canonical(fillers).tolist(), fillers))


__all__ = ["Edges", "TokenLattice", "canonical_top"]
