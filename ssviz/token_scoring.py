"""Log-perplexity of template fillers over tokens (transformers), exact and fast.

Semantics as in :mod:`ssviz.tokens`: the tokens of each filler's full text, the
first token context, ``-sum_{i>=2} log2 P(t_i | t_<i)``. Results equal naive
full-sequence scoring (:func:`score_texts`) to float rounding.

The fast path shares work across fillers, as :mod:`ssviz.scoring` does for characters:

1. each filler's tokens: one checked skeleton with a token per slot character
   where the tokenizer cannot merge them (:attr:`TokenTemplate.composition`),
   else the tokenizer's own tokens of every text (GPT-2 merges ``" 4"`` and
   digit runs: nothing is assumed about how a filler's text splits);
2. token rows sorted lexicographically (a trie); the chunk's common token
   prefix is read once, and its KV cache reused by every chunk that shares it;
3. below it, level by level, every trie node with children is stepped once, all
   of a level in one batched cache (``select_state`` copies parents' rows);
   once every row is its own node and the rows have the same length, the rest
   of each text runs in one fused forward pass.

Chunks (and fused passes) are sized from the model's per-row memory
(``row_bytes``), so memory stays bounded whatever the vocabulary, depth or count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssviz.errors import StoppedError, TemplateError, stop_requested
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel, State, check_finite
from ssviz.enumeration import DEFAULT_CHUNK, EXHAUSTIVE_LIMIT, LN2, Progress, StopFlag, check_exhaustive, iter_space_chunks
from ssviz.templates import Template
from ssviz.tokens import TokenTemplate, encode, encode_batch

DEFAULT_MEMORY = 256 << 20  # bytes of KV cache and log-probabilities one chunk may hold
MIN_CHUNK = 64
MEMO = 4                    # prefix contexts kept (chunks of one template share one or two)


@dataclass
class TokenContext:
    """The model after reading ``tokens``: shared by every row that starts with them."""

    tokens: tuple[int, ...]
    state: State             # batch of 1
    log_probs: torch.Tensor  # [1, V], distribution of the next token
    bits: float              # log-perplexity of ``tokens`` themselves


def _check_stop(stop) -> None:
    if stop_requested(stop):
        raise StoppedError("stopped by the user")


def _token_template(model: LanguageModel, template: Template) -> TokenTemplate:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TemplateError("token scoring needs a model with a tokenizer (a transformer); character models are "
                            "scored by ssviz.scoring")
    tt = TokenTemplate(template, tokenizer, len(model.vocab))
    tt.check()
    return tt


class _Scorer:
    """One template on one model: prefix contexts memoized across chunks."""

    def __init__(self, model: LanguageModel, tt: TokenTemplate, chunk_size: int | None, memory: int):
        self.model = model
        self.tt = tt
        self.memory = memory
        self.memo: list[TokenContext] = []
        t = tt.template
        sample = np.concatenate([np.zeros((1, t.filler_length), dtype=np.int64),
                                 np.array([[len(a) - 1 for a in t.filler_alphabets]], dtype=np.int64),
                                 t.random_digits(30, np.random.default_rng(0))])
        rows, lengths = tt.rows(sample)
        self.length = int(lengths.max())
        self._check_length(self.length)
        same = np.flatnonzero((rows != rows[0]).any(axis=0))
        # the token prefix every sampled text shares: its context is computed once and kept
        self.base = tuple(int(x) for x in rows[0, :min(int(same[0]) if len(same) else rows.shape[1],
                                                         int(lengths.min()))])
        self.chunk = self._rows_for(1, chunk_size or DEFAULT_CHUNK)

    def _row_bytes(self, steps: int) -> int:
        est = getattr(self.model, "row_bytes", None)
        # slack for texts a few tokens longer than the first filler's
        return est(self.length + 8, steps) if est else 4 * len(self.model.vocab) * steps + 4096

    def _rows_for(self, steps: int, cap: int) -> int:
        return int(max(MIN_CHUNK, min(cap, self.memory // max(1, self._row_bytes(steps)))))

    def _check_length(self, length: int) -> None:
        limit = getattr(self.model, "max_positions", None)
        if limit and length > limit:
            raise TemplateError(f"the template's texts are up to {length} tokens, longer than the model's context "
                                f"of {limit}")

    # --- the common prefix -------------------------------------------------------------
    def context(self, tokens: tuple[int, ...]) -> TokenContext:
        """The context after ``tokens``, continuing the longest memoized prefix of them.

        A request that shares only part of the template's common prefix goes
        through that part first, so the common prefix is read once however the
        chunks' own prefixes differ.
        """
        shared = 0
        while shared < min(len(tokens), len(self.base)) and tokens[shared] == self.base[shared]:
            shared += 1
        best = None
        for ctx in self.memo:
            if len(ctx.tokens) <= len(tokens) and tokens[:len(ctx.tokens)] == ctx.tokens:
                if best is None or len(ctx.tokens) > len(best.tokens):
                    best = ctx
        if best is not None and best.tokens == tokens:
            self.memo = [best] + [c for c in self.memo if c is not best]
            return best
        if 0 < shared < len(tokens) and (best is None or len(best.tokens) < shared):
            best = self.context(tokens[:shared])
        model = self.model
        if best is None:
            ids = torch.tensor([tokens])
            lp, state = model.run(ids, model.initial_state(1))
            check_finite(lp, model)
            bits = -float(lp[0, :-1].gather(1, ids[0, 1:, None]).double().sum()) / LN2
        else:
            rest = torch.tensor([tokens[len(best.tokens):]])
            lp, state = model.run(rest, best.state)
            check_finite(lp, model)
            seen = torch.cat([best.log_probs[:, None], lp[:, :-1]], dim=1)
            bits = best.bits - float(seen[0].gather(1, rest[0, :, None]).double().sum()) / LN2
        ctx = TokenContext(tokens, state, lp[:, -1], bits)
        self.memo = [ctx] + self.memo[:MEMO - 1]
        return ctx

    # --- one chunk ---------------------------------------------------------------------
    def score_rows(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Bits of each row of lexicographically sorted ``tokens [n, L]`` (PAD-padded)."""
        n = len(tokens)
        if n == 0:
            return np.zeros(0)
        self._check_length(int(lengths.max()))
        first, last = tokens[0], tokens[-1]
        diff = np.flatnonzero(first != last)
        c = min(int(diff[0]) if len(diff) else int(lengths[0]), int(lengths.min()))
        if c > 0:
            ctx = self.context(tuple(int(t) for t in first[:c]))
            cost = np.full(n, ctx.bits, dtype=np.float64)
            state, log_probs = ctx.state, ctx.log_probs
        else:  # the texts' first tokens differ (a literal merged with a slot): the root is the empty text
            cost = np.zeros(n, dtype=np.float64)
            state, log_probs = self.model.initial_state(1), None
        node = np.zeros(n, dtype=np.int64)
        nodes = 1                           # rows of ``state``: the trie nodes of the current level
        rows = np.flatnonzero(lengths > c)  # rows with a token at position j (sorted: same prefixes adjacent)
        j = c
        while len(rows):
            tok_j = tokens[rows, j]
            if log_probs is not None:  # a first token is context: it has no cost
                picked = log_probs[torch.from_numpy(node[rows]), torch.from_numpy(tok_j)]
                cost[rows] -= picked.double().numpy() / LN2
            cont = lengths[rows] > j + 1
            rows, tok_j, parents_of = rows[cont], tok_j[cont], node[rows[cont]]
            if not len(rows):
                break
            new = np.ones(len(rows), dtype=bool)
            new[1:] = (parents_of[1:] != parents_of[:-1]) | (tok_j[1:] != tok_j[:-1])
            starts = np.flatnonzero(new)
            parents = torch.from_numpy(parents_of[starts])
            if len(starts) == len(rows) and (lengths[rows] == lengths[rows[0]]).all():
                # every row is its own node from here on: read the rest of each text in one fused pass
                self._fused_tail(state, parents, tokens[rows, j:int(lengths[rows[0]])], rows, cost)
                break
            if len(parents) != nodes or not bool((parents == torch.arange(nodes)).all()):
                state = self.model.select_state(state, parents)
            nodes = len(parents)
            log_probs, state = self.model.step(torch.from_numpy(tok_j[starts]), state)
            check_finite(log_probs, self.model)
            node[rows] = np.cumsum(new) - 1
            j += 1
        return cost

    def _fused_tail(self, state: State, parents: torch.Tensor, rest: np.ndarray, rows: np.ndarray,
                    cost: np.ndarray) -> None:
        """``rest [k, T]``: each row's token at the current level and after; its cost beyond the current level."""
        steps = rest.shape[1] - 1
        sub = self._rows_for(steps, len(rows))
        for lo in range(0, len(rows), sub):
            part = slice(lo, lo + sub)
            st = self.model.select_state(state, parents[part])
            ids = torch.from_numpy(np.ascontiguousarray(rest[part]))
            lp, _ = self.model.run(ids[:, :-1], st)
            check_finite(lp, self.model)
            cost[rows[part]] -= lp.gather(2, ids[:, 1:, None])[..., 0].double().sum(1).numpy() / LN2

    def score_digits_sorted(self, digits: np.ndarray) -> np.ndarray:
        """Bits of fillers ``[n, F]`` (any order): token rows sorted into a trie, scored, put back in order."""
        tokens, lengths = self.tt.rows(digits)
        if len(tokens) > 1:
            order = np.lexsort(tokens.T[::-1])
            out = np.empty(len(tokens), dtype=np.float64)
            out[order] = self.score_rows(tokens[order], lengths[order])
            return out
        return self.score_rows(tokens, lengths)


# --- public API (mirrors ssviz.scoring) -------------------------------------------------------
def score_digits(model: LanguageModel, template: Template, digits: np.ndarray, *, chunk_size: int | None = None,
                 memory: int = DEFAULT_MEMORY, progress: Progress | None = None,
                 stop: StopFlag | None = None) -> np.ndarray:
    """Log-perplexity (bits) of the full text of each filler given as alphabet offsets ``[N, F]``."""
    digits = np.asarray(digits, dtype=np.int64)
    ensure_memory(digits.size * 8 + len(digits) * 24 + memory, f"scoring {len(digits):,} fillers")
    scorer = _Scorer(model, _token_template(model, template), chunk_size, memory)
    n = len(digits)
    order = np.lexsort(digits.T[::-1]) if n > 1 and digits.shape[1] else np.arange(n)
    out = np.empty(n, dtype=np.float64)
    with torch.inference_mode():
        for lo in range(0, n, scorer.chunk):
            _check_stop(stop)
            idx = order[lo:lo + scorer.chunk]
            out[idx] = scorer.score_digits_sorted(digits[idx])
            if progress:
                progress(min(lo + scorer.chunk, n), n)
    return out


def score_fillers(model: LanguageModel, template: Template, fillers: Sequence[str], **kw) -> np.ndarray:
    """Log-perplexity (bits) of the full text of each filler (bare or formatted)."""
    return score_digits(model, template, template.fillers_to_digits(list(fillers)), **kw)


def score_space(model: LanguageModel, template: Template, *, limit: int = EXHAUSTIVE_LIMIT,
                chunk_size: int | None = None, memory: int = DEFAULT_MEMORY, progress: Progress | None = None,
                stop: StopFlag | None = None) -> np.ndarray:
    """Log-perplexity of every filler, indexed by filler number (refuses spaces beyond ``limit``)."""
    check_exhaustive(template, limit)
    total = template.space_size
    ensure_memory(total * 8 + memory, f"scoring all {total:,} fillers", "use sampling / skew-normal or search instead")
    scorer = _Scorer(model, _token_template(model, template), chunk_size, memory)
    out = np.empty(total, dtype=np.float64)
    with torch.inference_mode():
        for lo, digits in iter_space_chunks(template, scorer.chunk):
            _check_stop(stop)
            out[lo:lo + len(digits)] = scorer.score_digits_sorted(digits)
            if progress:
                progress(lo + len(digits), total)
    return out


def score_texts(model: LanguageModel, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Naive reference: every text tokenized and run in full by the transformer, batched by token length.

    What a user writes with transformers (``model(ids).logits``, ``log_softmax``,
    gather, sum from the second token): no cache, no sharing.
    """
    hf = getattr(model, "model", None)
    if hf is None or getattr(model, "tokenizer", None) is None:
        raise TemplateError("naive token scoring needs a transformer with a tokenizer")
    out = np.zeros(len(texts), dtype=np.float64)
    rows = encode_batch(model.tokenizer, list(texts))
    by_len: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        by_len.setdefault(len(r), []).append(i)
    with torch.inference_mode():
        for length, idx in by_len.items():
            if length < 2:
                continue
            for lo in range(0, len(idx), batch_size):
                part = idx[lo:lo + batch_size]
                ids = torch.tensor([rows[i] for i in part])
                lp = torch.log_softmax(hf(input_ids=ids).logits.float(), dim=-1)
                check_finite(lp, model)
                out[part] = (-lp[:, :-1].gather(2, ids[:, 1:, None])[..., 0].double().sum(1) / LN2).numpy()
    return out


def log_perplexity(model: LanguageModel, text: str) -> float:
    """Log-perplexity of one text, in bits."""
    return float(score_texts(model, [text])[0])


def token_costs(model: LanguageModel, text: str) -> list[tuple[int, str, float | None]]:
    """``(id, text, bits)`` of each token of ``text``; the first token is context (bits None).

    The per-token strip: where along the secret the model "knows" it.
    """
    ids = encode(model.tokenizer, text)
    if not ids:
        return []
    with torch.inference_mode():
        t = torch.tensor([ids])
        lp, _ = model.run(t, model.initial_state(1))
        check_finite(lp, model)
        bits = (-lp[0, :-1].gather(1, t[0, 1:, None])[:, 0].double() / LN2).tolist()
    from ssviz.tokens import token_texts
    texts = token_texts(model.tokenizer)
    shown = [texts[i] if 0 <= i < len(texts) and texts[i] is not None else model.tokenizer.convert_ids_to_tokens(i)
             for i in ids]
    return list(zip(ids, shown, [None] + bits))


__all__ = ["log_perplexity", "score_digits", "score_fillers", "score_space", "score_texts", "token_costs"]
