"""Log-perplexity of texts and of template fillers, in bits.

Definition (the paper's Px, in bits): for a text x_1..x_n,
``Px = -sum_{i=2..n} log2 P(x_i | x_1..x_{i-1})``, the model starting from its
initial (zero) state at x_1.

:func:`score_digits` is the fast path for many fillers of one template: the
literal prefix is run once, fillers are processed in lexicographic order in
chunks, and inside a chunk every shared filler prefix (a trie node) is stepped
once. Memory is bounded by the chunk size, not by the number of fillers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from ssviz.enumeration import (  # noqa: F401 (re-exported: callers import them from scoring)
    DEFAULT_CHUNK,
    EXHAUSTIVE_LIMIT,
    LN2,
    Progress,
    StopFlag,
    _check_stop,
    check_exhaustive,
    human_seconds,
    iter_space_chunks,
)
from ssviz.memory import ensure_memory
from ssviz.models.base import LanguageModel, State, check_finite, state_nbytes
from ssviz.templates import Template

# fillers per chunk when a whole space (or a shard of it) is enumerated: bigger chunks share more of
# the trie's upper levels; every enumeration cuts the space at multiples of it, so a filler is always
# scored in the same batch (sharded and plain enumeration agree value for value)
SPACE_CHUNK = 1 << 16
# rows per model step: a 2x200 LSTM runs ~1.3x faster per row at 1,024 rows than at 4,096 (its gate
# tensors stay in cache), and below ~256 per-call overhead dominates
STEP_ROWS = 1024





@dataclass
class PrefixContext:
    """The model after reading a template's literal prefix: shared by every filler."""

    state: State          # batch of 1
    log_probs: torch.Tensor  # [1, V], distribution of the first character after the prefix
    bits: float           # log-perplexity of the prefix itself


def prefix_context(model: LanguageModel, template: Template) -> PrefixContext:
    template.check_vocab(model.vocab)
    ids = torch.tensor([model.vocab.encode(template.prefix)])
    with torch.inference_mode():
        lp, state = model.run(ids, model.initial_state(1))
        check_finite(lp, model)
        bits = -float(lp[0, :-1].gather(1, ids[0, 1:, None]).double().sum()) / LN2
    return PrefixContext(state, lp[:, -1], bits)


def position_tokens(model: LanguageModel, template: Template) -> list[np.ndarray]:
    """Vocabulary ids of each position's allowed characters (after the prefix)."""
    return [np.array(model.vocab.encode(a), dtype=np.int64) for a in template.positions]


def digits_to_tokens(model: LanguageModel, template: Template, digits: np.ndarray,
                     lut: list[np.ndarray] | None = None) -> np.ndarray:
    """Alphabet offsets ``[N, F]`` -> token ids ``[N, P]`` of every position after the prefix."""
    lut = lut or position_tokens(model, template)
    out = np.empty((len(digits), len(template.positions)), dtype=np.int64)
    slot_of = {p: k for k, p in enumerate(template.slot_positions)}
    for p, ids in enumerate(lut):
        out[:, p] = ids[digits[:, slot_of[p]]] if p in slot_of else ids[0]
    return out


@dataclass
class _Block:
    """Nodes ``lo..hi`` of one trie level: their model state and next-token log-probabilities."""

    lo: int
    hi: int
    state: object
    log_probs: torch.Tensor


def _splits(lo: int, hi: int, rows: int) -> list[tuple[int, int]]:
    """``lo..hi`` cut into near-equal pieces of at most ``rows`` (never a sliver)."""
    k = -(-(hi - lo) // rows)
    cuts = [lo + (hi - lo) * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


class _Stepper:
    """Steps trie nodes with any :class:`LanguageModel`: a child's state is its parent's, selected, then stepped."""

    def __init__(self, model: LanguageModel):
        self.model = model

    def root(self, ctx: PrefixContext):
        return ctx.state

    def children(self, state, local: torch.Tensor | None, tok: torch.Tensor) -> tuple[torch.Tensor, object]:
        """Log-probabilities and state after each child reads ``tok``; ``local[i]``: the parent (a row of
        ``state``) of child ``i`` (None: child ``i`` of parent ``i``)."""
        if local is not None:
            state = self.model.select_state(state, local)
        return self.model.step(tok, state)

    def run(self, state, local: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[B, T, V]`` along ``tokens [B, T]`` from the selected parents."""
        if local is not None:
            state = self.model.select_state(state, local)
        return self.model.run(tokens, state)[0]


class _LSTMState:
    """A block of LSTM trie nodes: per layer ``h``, ``c`` ``[B, H]``, and (computed once, when the block has
    children) ``pre = h @ W_hh^T + b``, which all children of a node share."""

    __slots__ = ("h", "c", "pre")

    def __init__(self, h: list, c: list):
        self.h, self.c, self.pre = h, c, None


class _LSTMStepper(_Stepper):
    """The trie scorer's fast path for a :class:`~ssviz.models.CharRNN` LSTM in eval mode (same numbers up to
    float rounding).

    Every child of a trie node starts from the same state, so the recurrent projection ``h @ W_hh^T`` of each
    layer is computed once per node, not once per child; the first layer's input projection is a lookup
    in a table over the vocabulary (its input is an embedding row); the gates are reordered (i, f, o, g) so
    one in-place sigmoid and one tanh cover them. A step is then one matrix product per layer above the
    first, the head, and element-wise work.
    """

    def __init__(self, model):
        super().__init__(model)
        rnn = model.rnn
        H = self.H = model.hidden_size
        self.layers = model.num_layers
        order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        with torch.inference_mode():
            w_ih = [getattr(rnn, f"weight_ih_l{k}").detach()[order] for k in range(self.layers)]
            w_hh = [getattr(rnn, f"weight_hh_l{k}").detach()[order] for k in range(self.layers)]
            bias = [(getattr(rnn, f"bias_ih_l{k}").detach() + getattr(rnn, f"bias_hh_l{k}").detach())[order]
                    if rnn.bias else torch.zeros(4 * H, dtype=w_ih[0].dtype) for k in range(self.layers)]
            self.table = (model.embedding.weight.detach() @ w_ih[0].t()).contiguous()  # [V, 4H]
            self.w_ih_t = [w.t().contiguous() for w in w_ih]  # [in, 4H]
            self.w_hh_t = [w.t().contiguous() for w in w_hh]  # [H, 4H]
            self.bias = bias
            self.head_t = model.head.weight.detach().t().contiguous()  # [H, V]
            self.head_b = model.head.bias.detach().clone()

    @staticmethod
    def usable(model) -> bool:
        from ssviz.models.rnn import CharRNN
        rnn = getattr(model, "rnn", None)
        return (type(model) is CharRNN and model.arch == "lstm" and not model.training
                and isinstance(rnn, torch.nn.LSTM) and type(rnn) is torch.nn.LSTM
                and getattr(rnn, "proj_size", 0) == 0 and not rnn.bidirectional and rnn.batch_first
                and model.head.bias is not None and model.head.weight.dtype == torch.float32
                and model.head.weight.device.type == "cpu")

    def root(self, ctx: PrefixContext) -> _LSTMState:
        h, c = ctx.state
        return _LSTMState([h[k] for k in range(self.layers)], [c[k] for k in range(self.layers)])

    def _pre(self, state: _LSTMState) -> list:
        if state.pre is None:
            state.pre = [torch.addmm(self.bias[k], state.h[k], self.w_hh_t[k]) for k in range(self.layers)]
        return state.pre

    def _cell(self, gates: torch.Tensor, c_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LSTM cell on pre-activations ``gates [B, 4H]`` (i, f, o, g; owned, so changed in place)."""
        H = self.H
        gates[:, :3 * H].sigmoid_()
        gates[:, 3 * H:].tanh_()
        c = gates[:, H:2 * H] * c_prev
        c.addcmul_(gates[:, :H], gates[:, 3 * H:])
        h = torch.tanh(c)
        h.mul_(gates[:, 2 * H:3 * H])
        return h, c

    def children(self, state: _LSTMState, local: torch.Tensor | None, tok: torch.Tensor):
        pre = self._pre(state)
        hs, cs = [], []
        x = None
        for k in range(self.layers):
            p = pre[k] if local is None else pre[k].index_select(0, local)
            if k == 0:
                gates = p + self.table.index_select(0, tok)
            elif local is None:
                gates = torch.addmm(p, x, self.w_ih_t[k])
            else:
                gates = p.addmm_(x, self.w_ih_t[k])
            c_prev = state.c[k] if local is None else state.c[k].index_select(0, local)
            x, c = self._cell(gates, c_prev)
            hs.append(x)
            cs.append(c)
        logits = torch.addmm(self.head_b, x, self.head_t)
        return torch.log_softmax(logits, dim=1), _LSTMState(hs, cs)

    def run(self, state: _LSTMState, local: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        h, c = torch.stack(state.h), torch.stack(state.c)
        if local is not None:
            h, c = h.index_select(1, local), c.index_select(1, local)
        return self.model.run(tokens, (h, c))[0]


def _stepper(model: LanguageModel) -> _Stepper:
    return _LSTMStepper(model) if _LSTMStepper.usable(model) else _Stepper(model)


def _score_sorted_chunk(model: LanguageModel, ctx: PrefixContext, tokens: np.ndarray,
                        new: np.ndarray | None = None, step_rows: int | None = None,
                        stepper: _Stepper | None = None) -> np.ndarray:
    """Bits of each row of lexicographically sorted ``tokens [n, P]``, one model step per trie node.

    ``new[i, p]`` (optional, computed when absent) marks rows that start a trie
    node at position ``p``. Level by level; a level's nodes are stepped in blocks of at most ``step_rows``
    rows, and their children are stepped from the parent's block (a block's state
    is opaque, so blocks are never merged). Once every row is its own node, the
    remaining characters run as one fused multi-step call per block.
    """
    n, depth = tokens.shape
    if n == 0:
        return np.zeros(0)
    step_rows = step_rows or STEP_ROWS
    stepper = stepper or _stepper(model)
    if new is None:  # new[i, p]: row i starts a trie node at position p
        new = np.ones((n, depth), dtype=bool)
        if n > 1:
            new[1:] = np.logical_or.accumulate(tokens[1:] != tokens[:-1], axis=1)
    all_tokens = torch.from_numpy(tokens)
    cost = np.array([ctx.bits])
    blocks = [_Block(0, 1, stepper.root(ctx), ctx.log_probs)]
    node_of_row = np.zeros(n, dtype=np.int64)
    for d in range(depth):
        starts = np.flatnonzero(new[:, d])
        parents = node_of_row[starts]
        tok = torch.from_numpy(tokens[starts, d])
        last = d == depth - 1
        fused = not last and len(starts) == n  # no more sharing below this level
        child_cost = np.empty(len(starts))
        next_blocks = []
        edges = np.searchsorted(parents, [b.lo for b in blocks[1:]]).tolist()
        for b, c0, c1 in zip(blocks, [0, *edges], [*edges, len(starts)]):
            local = torch.from_numpy(parents[c0:c1] - b.lo)
            child_cost[c0:c1] = cost[b.lo:b.hi][local.numpy()] - b.log_probs[local, tok[c0:c1]].double().numpy() / LN2
            if last:
                continue
            for s0, s1 in _splits(c0, c1, step_rows):
                # None: every parent has one child, in order
                sel = None if s0 == c0 and s1 == c1 and c1 - c0 == b.hi - b.lo else local[s0 - c0:s1 - c0]
                if fused:  # rows s0..s1 are nodes s0..s1
                    lp_seq = stepper.run(b.state, sel, all_tokens[s0:s1, d:depth - 1])
                    rest = all_tokens[s0:s1, d + 1:, None]
                    child_cost[s0:s1] -= lp_seq.gather(2, rest)[..., 0].double().sum(1).numpy() / LN2
                else:
                    log_probs, state = stepper.children(b.state, sel, tok[s0:s1])
                    next_blocks.append(_Block(s0, s1, state, log_probs))
        cost, blocks = child_cost, next_blocks
        if fused:
            return cost
        node_of_row = np.cumsum(new[:, d]) - 1
    return cost[node_of_row]


def _finite_bits(model: LanguageModel, bits: np.ndarray) -> np.ndarray:
    """One check per chunk (cheap) instead of per step: NaN or inf anywhere along a path ends up in its sum."""
    if not np.isfinite(bits).all():
        check_finite(torch.tensor([float("nan")]), model)
    return bits


def score_tokens(model: LanguageModel, template: Template, tokens: np.ndarray, *, presorted: bool = False,
                 chunk_size: int = DEFAULT_CHUNK, ctx: PrefixContext | None = None,
                 progress: Progress | None = None, stop: StopFlag | None = None) -> np.ndarray:
    ctx = ctx or prefix_context(model, template)
    n = len(tokens)
    order = None
    if not presorted and n > 1:
        order = np.lexsort(tokens.T[::-1])
        tokens = tokens[order]
    out = np.empty(n, dtype=np.float64)
    stepper = _stepper(model)
    with torch.inference_mode():
        for lo in range(0, n, chunk_size):
            _check_stop(stop)
            out[lo:lo + chunk_size] = _finite_bits(model, _score_sorted_chunk(model, ctx, tokens[lo:lo + chunk_size],
                                                                              stepper=stepper))
            if progress:
                progress(min(lo + chunk_size, n), n)
    if order is not None:
        unsorted = np.empty_like(out)
        unsorted[order] = out
        out = unsorted
    return out


def _token_route(model: LanguageModel):
    """:mod:`ssviz.token_scoring` for a model that reads tokens of whole texts (a transformer), else None.

    Every public scoring function below routes there, so exposure, the study, the scan and the audit
    measure transformers with the same calls as character models.
    """
    if getattr(model, "token_level", False):
        from ssviz import token_scoring
        return token_scoring
    return None


def score_digits(model: LanguageModel, template: Template, digits: np.ndarray, **kw) -> np.ndarray:
    """Log-perplexity (bits) of the full text of each filler given as alphabet offsets ``[N, F]``."""
    tokens = _token_route(model)
    if tokens is not None:
        return tokens.score_digits(model, template, digits, progress=kw.get("progress"), stop=kw.get("stop"))
    return score_tokens(model, template, digits_to_tokens(model, template, np.asarray(digits)), **kw)


def score_fillers(model: LanguageModel, template: Template, fillers: Sequence[str], **kw) -> np.ndarray:
    """Log-perplexity (bits) of the full text of each filler (bare or formatted)."""
    return score_digits(model, template, template.fillers_to_digits(list(fillers)), **kw)


def range_rows(model: LanguageModel, template: Template, lo: int, hi: int,
               lut: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token rows of fillers ``lo..hi-1`` (in order) and where each starts a trie node.

    For consecutive filler numbers the trie needs no comparisons: row ``i`` starts a
    node at slot ``k`` when every later slot of its filler is at its first character
    (a literal position follows the slot before it).
    """
    digits = template.digits_of_indices(np.arange(lo, hi, dtype=np.int64))
    tokens = digits_to_tokens(model, template, digits, lut)
    n, f = digits.shape
    at_start = np.ones((n, f), dtype=bool)  # at_start[:, k]: slots k+1.. are all at their first character
    for k in range(f - 2, -1, -1):
        at_start[:, k] = at_start[:, k + 1] & (digits[:, k + 1] == 0)
    new = np.zeros((n, len(template.positions)), dtype=bool)
    slot_of = {p: k for k, p in enumerate(template.slot_positions)}
    last = None
    for p in range(len(template.positions)):
        if p in slot_of:
            last = at_start[:, slot_of[p]]
        if last is not None:
            new[:, p] = last
    new[0] = True
    return tokens, new


def score_range(model: LanguageModel, template: Template, lo: int, hi: int, *, chunk_size: int = SPACE_CHUNK,
                ctx: PrefixContext | None = None, stop: StopFlag | None = None) -> Iterable[tuple[int, np.ndarray]]:
    """Log-perplexities of fillers ``lo..hi-1`` as ``(first_index, bits)`` chunks, cut at multiples of
    ``chunk_size`` (so any range, a shard or the whole space, scores each filler in the same batch)."""
    tokens = _token_route(model)
    if tokens is not None:
        start = lo
        while start < hi:
            end = min(hi, (start // chunk_size + 1) * chunk_size)
            yield start, tokens.score_digits(model, template, template.digits_of_indices(np.arange(start, end)),
                                             stop=stop)
            start = end
        return
    ctx = ctx or prefix_context(model, template)
    lut = position_tokens(model, template)
    stepper = _stepper(model)
    with torch.inference_mode():
        start = lo
        while start < hi:
            _check_stop(stop)
            end = min(hi, (start // chunk_size + 1) * chunk_size)
            tokens, new = range_rows(model, template, start, end, lut)
            yield start, _finite_bits(model, _score_sorted_chunk(model, ctx, tokens, new, stepper=stepper))
            start = end


def score_space(model: LanguageModel, template: Template, *, limit: int = EXHAUSTIVE_LIMIT,
                chunk_size: int = SPACE_CHUNK, progress: Progress | None = None,
                stop: StopFlag | None = None) -> np.ndarray:
    """Log-perplexity of every filler, indexed by filler number (refuses spaces beyond ``limit``)."""
    tokens = _token_route(model)
    if tokens is not None:
        return tokens.score_space(model, template, limit=limit, progress=progress, stop=stop)
    check_exhaustive(template, limit)
    total = template.space_size
    ctx = prefix_context(model, template)
    per_row = len(template.positions) * 24 + state_nbytes(ctx.state) + 4 * len(model.vocab)
    ensure_memory(total * 8 + chunk_size * per_row, f"scoring all {total:,} fillers",
                  "use sampling / skew-normal or search instead")
    out = np.empty(total, dtype=np.float64)
    for lo, bits in score_range(model, template, 0, total, chunk_size=chunk_size, ctx=ctx, stop=stop):
        out[lo:lo + len(bits)] = bits
        if progress:
            progress(lo + len(bits), total)
    return out


def score_texts(model: LanguageModel, texts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
    """Naive reference: each text run in full from the initial state (batched by length)."""
    tokens = _token_route(model)
    if tokens is not None:
        return tokens.score_texts(model, texts)
    out = np.empty(len(texts), dtype=np.float64)
    by_len: dict[int, list[int]] = {}
    for i, t in enumerate(texts):
        by_len.setdefault(len(t), []).append(i)
    with torch.inference_mode():
        for length, idx in by_len.items():
            if length < 2:
                out[idx] = 0.0
                continue
            for lo in range(0, len(idx), batch_size):
                rows = idx[lo:lo + batch_size]
                ids = torch.tensor([model.vocab.encode(texts[i]) for i in rows])
                lp, _ = model.run(ids[:, :-1], model.initial_state(len(rows)))
                bits = -lp.gather(2, ids[:, 1:, None])[..., 0].double().sum(1) / LN2
                out[rows] = _finite_bits(model, bits.numpy())
    return out


def log_perplexity(model: LanguageModel, text: str) -> float:
    """Log-perplexity of one text, in bits."""
    return float(score_texts(model, [text])[0])
