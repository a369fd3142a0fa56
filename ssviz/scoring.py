"""Log-perplexity of texts and of template fillers, in bits, for every model kind.

Definition (the paper's Px, in bits): for a text of units u_1..u_n (characters
or tokens, as ``model.encode`` gives them),
``Px = -sum_{i=2..n} log2 P(u_i | u_1..u_{i-1})``: the first unit is context.

The fast path for many fillers of one template is a trie walk over their unit
rows (``model.template_units(template).rows``), sorted lexicographically:

1. the chunk's common unit prefix is read once, and its state reused by every
   chunk that shares it (contexts are memoized);
2. below it, level by level, every trie node is stepped once, in blocks of the
   model's stepper size, a child from its parent's block (the model's own
   :meth:`~ssviz.models.LanguageModel.trie_stepper` may share work between the
   children of one node, as the LSTM's does);
3. once every row is its own node and the rows have the same length, the rest
   of each text runs as one fused multi-step call per block.

Chunks are sized from the model's per-row memory (``row_bytes``), or, for a stepper
that keeps only each node's own units over a shared prefix (a transformer's), from
the nodes a chunk's trie holds, so memory is bounded by the chunk, not by the number
of fillers. Results equal naive
full-sequence scoring (:func:`score_texts`) to float rounding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ssviz.errors import SpaceTooLargeError, TemplateError
from ssviz.memory import ensure_memory
from ssviz.messages import clip
from ssviz.models.base import LanguageModel, State, check_finite
from ssviz.progress import Progress, StopFlag, check_stop
from ssviz.templates import Template

LN2 = math.log(2.0)
DEFAULT_CHUNK = 1 << 15
EXHAUSTIVE_LIMIT = 10 ** 7
# fillers per chunk when a whole space (or a shard of it) is enumerated: bigger chunks share more of
# the trie's upper levels; every enumeration cuts the space at multiples of it, so a filler is always
# scored in the same batch (sharded and plain enumeration agree value for value)
SPACE_CHUNK = 1 << 16
DEFAULT_MEMORY = 512 << 20  # bytes of states and log-probabilities one chunk may hold (a bound: tries share most)
MIN_CHUNK = 64
RATE_SECONDS = 1.0           # how long a rate probe may take: small probes share little of the trie, so they
                             # undercount a whole enumeration's rate (a quarter second said 5 minutes for 8 s)
MEMO = 4                    # prefix contexts kept (chunks of one template share one or two)

def check_exhaustive(template: Template, limit: int = EXHAUSTIVE_LIMIT, rate: float = 1e6,
                     hint: str = "use sampling / skew-normal or search instead") -> None:
    if template.space_size > limit:
        seconds = template.space_size / rate
        raise SpaceTooLargeError(
            f"the space of {clip(template.text, 80)!r} has {template.space_size:.3g} fillers, more than the "
            f"limit of {limit:.3g} for exhaustive enumeration (about {human_seconds(seconds)} on this CPU); {hint}")


def human_seconds(s: float) -> str:
    for unit, size in (("years", 3.15e7), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.2g} seconds"


@dataclass
class Context:
    """The model after reading ``units``: shared by every row that starts with them."""

    units: tuple[int, ...]
    state: State                    # batch of 1
    log_probs: torch.Tensor | None  # [1, V], distribution of the next unit (None before any unit)
    bits: float                     # log-perplexity of ``units`` themselves


@dataclass
class _Block:
    """Nodes ``lo..hi`` of one trie level: their stepper state and next-unit log-probabilities."""

    lo: int
    hi: int
    state: object
    log_probs: torch.Tensor | None


def _splits(lo: int, hi: int, rows: int) -> list[tuple[int, int]]:
    """``lo..hi`` cut into near-equal pieces of at most ``rows`` (never a sliver)."""
    k = max(1, -(-(hi - lo) // rows))
    cuts = [lo + (hi - lo) * i // k for i in range(k + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def node_starts(units: np.ndarray) -> np.ndarray:
    """``new[i, p]``: sorted row ``i`` starts a trie node at position ``p`` (its units up to ``p`` differ
    from the row before's)."""
    new = np.ones(units.shape, dtype=bool)
    if len(units) > 1:
        new[1:] = np.logical_or.accumulate(units[1:] != units[:-1], axis=1)
    return new


def chunk_memory(model: LanguageModel) -> int:
    """Bytes one chunk's states and log-probabilities may hold on ``model``'s device: a share of its free
    memory (a GPU's from ``mem_get_info``), at most :data:`DEFAULT_MEMORY` on the CPU, where larger
    chunks only leave the caches."""
    from ssviz.memory import device_budget
    device = model.device
    budget = device_budget(device) // 2  # half the budget: the weights' activations and the caller's arrays
    if device.type == "cpu":
        return int(max(32 << 20, min(DEFAULT_MEMORY, budget)))
    return int(max(32 << 20, budget))


class TrieScorer:
    """One template on one model: its unit rows, a stepper, and prefix contexts memoized across chunks."""

    def __init__(self, model: LanguageModel, template: Template, *, chunk_size: int | None = None,
                 memory: int | None = None):
        self.model = model
        self.template = template
        self.units = model.template_units(template)
        self.units.check()
        self.stepper = model.trie_stepper()
        self.memory = chunk_memory(model) if memory is None else memory
        self.memo: list[Context] = []
        comp = self.units.composition
        if comp is not None:
            self.length = len(comp.skeleton)
            self.base = tuple(int(x) for x in comp.skeleton[:int(comp.slot_index[0])]) if len(comp.slot_index) \
                else tuple(int(x) for x in comp.skeleton)
        else:
            t = template
            sample = np.concatenate([np.zeros((1, t.filler_length), dtype=np.int64),
                                     np.array([[len(a) - 1 for a in t.filler_alphabets]], dtype=np.int64),
                                     t.random_digits(30, np.random.default_rng(0))])
            rows, lengths = self.units.rows(sample)
            self.length = int(lengths.max())
            same = np.flatnonzero((rows != rows[0]).any(axis=0))
            # the unit prefix every sampled text shares: its context is computed once and kept
            self.base = tuple(int(x) for x in rows[0, :min(int(same[0]) if len(same) else rows.shape[1],
                                                             int(lengths.min()))])
        self.check_length(self.length)
        self.chunk = self.trie_rows(chunk_size or DEFAULT_CHUNK)
        self.step_rows = min(self.stepper.rows or self.chunk, self.chunk)

    # --- sizes ---------------------------------------------------------------------------
    def rows_for(self, steps: int, cap: int) -> int:
        """Rows whose states and ``steps`` rows of log-probabilities fit the memory budget (at most ``cap``)."""
        per_row = max(1, self.model.row_bytes(self.length + 8, steps))  # slack for texts a few units longer
        return int(max(MIN_CHUNK, min(cap, self.memory // per_row)))

    def trie_rows(self, cap: int) -> int:
        """Rows per chunk. A stepper that keeps only each node's own units (``node_bytes``) is sized by the
        trie it will hold: nodes at each level of a chunk of the space times their bytes, summed over the
        levels whose states are kept; others by every row's full state (:meth:`rows_for`)."""
        node_bytes = getattr(self.stepper, "node_bytes", None)
        if node_bytes is None:
            return self.rows_for(1, cap)
        comp = self.units.composition
        if comp is None:
            per_row = node_bytes(self.length + 8 - len(self.base))
            return int(max(MIN_CHUNK, min(cap, self.memory // max(per_row, 1))))
        k0 = int(comp.slot_index[0]) if len(comp.slot_index) else len(comp.skeleton)
        width = len(comp.skeleton) - k0
        fan = np.ones(width)
        for k, i in enumerate(comp.slot_index):
            fan[int(i) - k0] = len(comp.luts[k])
        prefixes = np.cumprod(fan)

        def need(rows: int) -> float:
            nodes = np.minimum(prefixes, rows)
            kept = np.arange(width) + 2 < width
            return float(sum(n * (node_bytes(p + 1) if keep else node_bytes(0))
                             for p, (n, keep) in enumerate(zip(nodes, kept))))

        rows = int(cap)
        while rows > MIN_CHUNK and need(rows) > self.memory:
            rows //= 2
        return max(MIN_CHUNK, rows)

    def check_length(self, length: int) -> None:
        limit = self.model.max_positions
        if limit and length > limit:
            raise TemplateError(f"the template's texts are up to {length} {self.model.unit_name}s, longer than the "
                                f"model's context of {limit}")

    # --- the common prefix ---------------------------------------------------------------
    @torch.inference_mode()
    def context(self, units: tuple[int, ...]) -> Context:
        """The context after ``units``: the part they share with the template's common prefix is read
        once (and memoized), the rest continues from it.

        Always computed the same way for the same units, whatever was scored before, so
        a filler gets the same bits in a shard as in the whole space.
        """
        if not units:
            return Context((), self.model.initial_state(1), None, 0.0)
        for ctx in self.memo:
            if ctx.units == units:
                self.memo = [ctx] + [c for c in self.memo if c is not ctx]
                return ctx
        shared = 0
        while shared < min(len(units), len(self.base)) and units[shared] == self.base[shared]:
            shared += 1
        best = self.context(units[:shared]) if 0 < shared < len(units) else None
        model = self.model
        if best is None:
            ids = torch.tensor([units], device=model.device)
            lp, state = model.run(ids, model.initial_state(1))
            check_finite(lp, model)
            bits = -float(lp[0, :-1].gather(1, ids[0, 1:, None].to(lp.device)).double().sum()) / LN2
        else:
            rest = torch.tensor([units[len(best.units):]], device=model.device)
            lp, state = model.run(rest, best.state)
            check_finite(lp, model)
            seen = torch.cat([best.log_probs[:, None], lp[:, :-1]], dim=1)
            bits = best.bits - float(seen[0].gather(1, rest[0, :, None].to(seen.device)).double().sum()) / LN2
        ctx = Context(units, state, lp[:, -1], bits)
        self.memo = [ctx] + self.memo[:MEMO - 1]
        return ctx

    # --- one chunk -----------------------------------------------------------------------
    @torch.inference_mode()
    def score_rows(self, units: np.ndarray, lengths: np.ndarray, new: np.ndarray | None = None,
                   head: tuple[int, ...] = ()) -> np.ndarray:
        """Bits of each row of lexicographically sorted ``units [n, L]`` (PAD after a row's end).

        ``new`` (optional, :func:`node_starts` when absent) marks where rows start trie nodes; ``head``
        are units every row starts with, left out of ``units`` (``lengths`` count the rest).
        """
        n = len(units)
        if n == 0:
            return np.zeros(0)
        self.check_length(len(head) + int(lengths.max()))
        first, last = units[0], units[-1]
        diff = np.flatnonzero(first != last)
        c = min(int(diff[0]) if len(diff) else int(lengths[0]), int(lengths.min()))
        ctx = self.context(head + tuple(int(t) for t in first[:c]))
        out = np.full(n, ctx.bits, dtype=np.float64)
        if new is None:
            new = node_starts(units)
        stepper, step_rows = self.stepper, self.step_rows
        all_units = torch.from_numpy(units)
        cost = np.array([ctx.bits])
        blocks = [_Block(0, 1, stepper.root(ctx.state), ctx.log_probs)]
        node_of_row = np.zeros(n, dtype=np.int64)
        width = int(lengths[0])
        longest = int(lengths.max())
        # rows with a unit at the current position: None while that is every row (all the same length)
        act = None if bool((lengths == width).all()) else np.flatnonzero(lengths > c)
        for d in range(c, units.shape[1]):
            if act is None:
                fresh = new[:, d]
                starts = np.flatnonzero(fresh)
                fused = len(starts) == n and d + 1 < width  # every row is its own node: the rest runs fused
                stepping = d + 1 < width
            else:
                if not len(act):
                    break
                fresh = new[act, d]
                starts = act[fresh]
                child_lengths = lengths[starts]
                fused = len(starts) == len(act) and d + 1 < child_lengths[0] and \
                    bool((child_lengths == child_lengths[0]).all())
                stepping = bool((lengths[act] > d + 1).any())
            keep = d + 2 < longest  # the children's states are stepped again (or read on, fused) below
            parents = node_of_row[starts]
            tok = all_units[starts, d]
            end = int(lengths[starts[0]])
            child_cost = np.empty(len(starts))
            next_blocks = []
            edges = np.searchsorted(parents, [b.lo for b in blocks[1:]]).tolist()
            for b, c0, c1 in zip(blocks, [0, *edges], [*edges, len(starts)]):
                if c0 == c1:
                    continue
                local = torch.from_numpy(parents[c0:c1] - b.lo)
                child_cost[c0:c1] = cost[b.lo:b.hi][local.numpy()]
                if b.log_probs is not None:  # a text's first unit is context: it costs nothing
                    child_cost[c0:c1] -= _pick(b.log_probs, local, tok[c0:c1]) / LN2
                if not stepping:
                    continue
                for s0, s1 in _splits(c0, c1, step_rows):
                    # None: every parent has one child, in order
                    sel = None if s0 == c0 and s1 == c1 and c1 - c0 == b.hi - b.lo \
                        and bool((local == torch.arange(c1 - c0)).all()) else local[s0 - c0:s1 - c0]
                    if fused:  # rows s0..s1 of ``starts`` are the last nodes: read the rest of their texts at once
                        self._fused(b.state, sel, all_units[starts[s0:s1], d:end], child_cost, s0, s1)
                    else:
                        log_probs, state = stepper.children(b.state, sel, tok[s0:s1], keep)
                        next_blocks.append(_Block(s0, s1, state, log_probs))
            node_here = np.cumsum(fresh) - 1
            if act is None:
                node_of_row = node_here
                if fused or not stepping:
                    return child_cost[node_here]
            else:
                node_of_row[act] = node_here
                if fused or not stepping:
                    out[act] = child_cost[node_here]
                    break
                ends = lengths[act] == d + 1
                if ends.any():
                    out[act[ends]] = child_cost[node_here[ends]]
                    act = act[~ends]
            cost, blocks = child_cost, next_blocks
        return out

    def _fused(self, state, sel, rest: torch.Tensor, cost: np.ndarray, s0: int, s1: int) -> None:
        """``rest [k, T]``: each node's unit at the current level and after; adds its cost beyond the current
        level to ``cost[s0:s1]``, in pieces sized so the ``T - 1`` steps of log-probabilities fit memory."""
        steps = rest.shape[1] - 1
        sub = self.rows_for(steps, s1 - s0)
        for lo in range(0, s1 - s0, sub):
            hi = min(lo + sub, s1 - s0)
            part = None if sel is None and lo == 0 and hi == s1 - s0 else \
                (torch.arange(lo, hi) if sel is None else sel[lo:hi])
            lp = self.stepper.run(state, part, rest[lo:hi, :-1])
            check_finite(lp, self.model)
            got = lp.gather(2, rest[lo:hi, 1:, None].to(lp.device))[..., 0].double().sum(1)
            cost[s0 + lo:s0 + hi] -= got.cpu().numpy() / LN2

    # --- fillers ---------------------------------------------------------------------------
    def score_digits(self, digits: np.ndarray) -> np.ndarray:
        """Bits of fillers ``[n, F]`` (any order): unit rows sorted into a trie, scored, put back in order."""
        units, lengths = self.units.rows(np.asarray(digits, dtype=np.int64))
        if len(units) > 1:
            order = np.lexsort(units.T[::-1])
            out = np.empty(len(units), dtype=np.float64)
            out[order] = _finite_bits(self.model, self.score_rows(units[order], lengths[order]))
            return out
        return _finite_bits(self.model, self.score_rows(units, lengths))

    @torch.inference_mode()
    def score_range(self, lo: int, hi: int) -> np.ndarray:
        """Bits of fillers ``lo..hi-1`` (consecutive filler numbers), in pieces of :attr:`chunk` rows.

        Where every filler is the skeleton with one unit per slot character, the
        rows in filler order are grouped as a trie and need no comparisons: row
        ``i`` starts a node at slot ``k`` when every later slot of its filler is
        at its first character.
        """
        out = np.empty(hi - lo, dtype=np.float64)
        for a in range(lo, hi, self.chunk):
            b = min(hi, a + self.chunk)
            out[a - lo:b - lo] = self._score_consecutive(a, b)
        return out

    def rate(self, seconds: float = RATE_SECONDS) -> float:
        """Fillers enumerated per second on this machine: probes of doubling size from the start of the
        space until one takes ``seconds`` (or is a whole chunk), so the trie shares about as much as a
        full enumeration does; the first probe only warms up."""
        size = self.template.space_size
        n, rate = min(256, size), 0.0
        self.score_range(0, n)  # first calls pay for lazy initialization, not for scoring
        while True:
            t0 = time.perf_counter()
            self.score_range(0, n)
            elapsed = max(time.perf_counter() - t0, 1e-9)
            rate = n / elapsed
            if elapsed >= seconds or n >= min(size, SPACE_CHUNK):
                return rate
            n = min(2 * n, size, SPACE_CHUNK)

    def _score_consecutive(self, lo: int, hi: int) -> np.ndarray:
        t = self.template
        digits = t.digits_of_indices(np.arange(lo, hi, dtype=np.int64))
        comp = self.units.composition
        if comp is None or not len(digits) or not digits.shape[1] \
                or any(len(np.unique(lut)) != len(lut) for lut in comp.luts):
            return self.score_digits(digits)
        k0 = int(comp.slot_index[0])  # the literal units before the first slot: one context for every row
        units = comp.rows(digits, start=k0)
        n, f = digits.shape
        at_start = np.ones((n, f), dtype=bool)  # at_start[:, k]: slots k+1.. are all at their first character
        for k in range(f - 2, -1, -1):
            at_start[:, k] = at_start[:, k + 1] & (digits[:, k + 1] == 0)
        new = np.empty(units.shape, dtype=bool)
        slots = [int(i) - k0 for i in comp.slot_index] + [units.shape[1]]
        for k in range(f):
            new[:, slots[k]:slots[k + 1]] = at_start[:, k:k + 1]
        new[0] = True
        head = tuple(int(t) for t in comp.skeleton[:k0])
        return _finite_bits(self.model, self.score_rows(units, np.full(n, units.shape[1], dtype=np.int64), new, head))


def _pick(log_probs, rows: torch.Tensor, units: torch.Tensor) -> np.ndarray:
    """``log_probs[rows[i], units[i]]`` as float64 on the CPU, wherever the log-probabilities live (a tensor
    on any device, or a stepper's lazy :class:`~ssviz.models.tree.NodeLogProbs`)."""
    if isinstance(log_probs, torch.Tensor):
        dev = log_probs.device
        return log_probs[rows.to(dev), units.to(dev)].double().cpu().numpy()
    return log_probs[rows, units].double().numpy()


def _finite_bits(model: LanguageModel, bits: np.ndarray) -> np.ndarray:
    """One check per chunk (cheap) instead of per step: NaN or inf anywhere along a path ends up in its sum."""
    if not np.isfinite(bits).all():
        check_finite(torch.tensor([float("nan")]), model)
    return bits


# --- public API --------------------------------------------------------------------------------------
def score_digits(model: LanguageModel, template: Template, digits: np.ndarray, *, chunk_size: int | None = None,
                 memory: int | None = None, scorer: TrieScorer | None = None, progress: Progress | None = None,
                 stop: StopFlag | None = None) -> np.ndarray:
    """Log-perplexity (bits) of the full text of each filler given as alphabet offsets ``[N, F]``."""
    digits = np.asarray(digits, dtype=np.int64)
    ensure_memory(digits.size * 8 + len(digits) * 24 + (memory or DEFAULT_MEMORY), f"scoring {len(digits):,} fillers")
    scorer = scorer or TrieScorer(model, template, chunk_size=chunk_size, memory=memory)
    n = len(digits)
    order = np.lexsort(digits.T[::-1]) if n > 1 and digits.shape[1] else np.arange(n)
    out = np.empty(n, dtype=np.float64)
    with torch.inference_mode():
        for lo in range(0, n, scorer.chunk):
            check_stop(stop)
            idx = order[lo:lo + scorer.chunk]
            out[idx] = scorer.score_digits(digits[idx])
            if progress:
                progress(min(lo + scorer.chunk, n), n)
    return out


def score_fillers(model: LanguageModel, template: Template, fillers: Sequence[str], **kw) -> np.ndarray:
    """Log-perplexity (bits) of the full text of each filler (bare or formatted)."""
    return score_digits(model, template, template.fillers_to_digits(list(fillers)), **kw)


def score_range(model: LanguageModel, template: Template, lo: int, hi: int, *, chunk_size: int = SPACE_CHUNK,
                scorer: TrieScorer | None = None, stop: StopFlag | None = None) -> Iterable[tuple[int, np.ndarray]]:
    """Log-perplexities of fillers ``lo..hi-1`` as ``(first_index, bits)`` chunks, cut at multiples of
    ``chunk_size`` (so any range, a shard or the whole space, scores each filler in the same batch)."""
    chunk_size = chunk_size or SPACE_CHUNK
    scorer = scorer or TrieScorer(model, template, chunk_size=chunk_size)
    with torch.inference_mode():
        start = lo
        while start < hi:
            check_stop(stop)
            end = min(hi, (start // chunk_size + 1) * chunk_size)
            yield start, scorer.score_range(start, end)
            start = end


def score_space(model: LanguageModel, template: Template, *, limit: int = EXHAUSTIVE_LIMIT,
                chunk_size: int = SPACE_CHUNK, memory: int | None = None, progress: Progress | None = None,
                stop: StopFlag | None = None) -> np.ndarray:
    """Log-perplexity of every filler, indexed by filler number (refuses spaces beyond ``limit``)."""
    check_exhaustive(template, limit)
    chunk_size = chunk_size or SPACE_CHUNK
    total = template.space_size
    ensure_memory(total * 8 + (memory or DEFAULT_MEMORY), f"scoring all {total:,} fillers", "use sampling / skew-normal or search instead")
    scorer = TrieScorer(model, template, chunk_size=chunk_size, memory=memory)
    out = np.empty(total, dtype=np.float64)
    for lo, bits in score_range(model, template, 0, total, chunk_size=chunk_size, scorer=scorer, stop=stop):
        out[lo:lo + len(bits)] = bits
        if progress:
            progress(lo + len(bits), total)
    return out


@dataclass
class Reading:
    """How a model reads one text, unit by unit: what per-text attacks, verbatim checks and
    counterfactual metrics are computed from (natural logs; the first unit is context).

    ``logp[i]``, ``correct[i]``, ``mu[i]`` and ``sigma[i]`` describe the prediction of unit ``i + 1``:
    its log-probability, whether it is the model's top choice, and the mean and standard deviation of
    ``log p(v)`` under the model's own next-unit distribution (with ``stats``). ``last`` is the log-
    distribution of the unit after the whole text (with ``last``)."""

    ids: np.ndarray
    logp: np.ndarray
    correct: np.ndarray
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None
    last: np.ndarray | None = None

    @property
    def bits(self) -> float:
        """Log-perplexity in bits (the paper's Px)."""
        return float(-self.logp.sum() / LN2)


def read_ids(model: LanguageModel, rows: Sequence[Sequence[int]], *, stats: bool = False, last: bool = False,
             batch_size: int | None = None, progress: Progress | None = None,
             stop: StopFlag | None = None) -> list[Reading]:
    """Read rows of unit ids in full from the initial state, batched by length (no cache, no sharing).

    The one per-text reader: naive scoring, membership attacks, verbatim and counterfactual metrics
    all take their numbers from it. ``batch_size`` (default: as many rows as a chunk's memory holds on the
    model's device, from its bytes per row at that length, at most :data:`READ_ROWS`) bounds each run."""
    out: list[Reading | None] = [None] * len(rows)
    done = 0
    with torch.inference_mode():
        for length, part in batches_by_length(rows, lambda n: batch_size or _read_rows(model, n), stop):
            ids = torch.tensor([list(rows[i]) for i in part], dtype=torch.long).reshape(len(part), length)
            if length == 0 or (length == 1 and not last):
                for j, i in enumerate(part):
                    out[i] = Reading(ids[j].numpy(), np.zeros(0),
                                     np.zeros(0, bool), np.zeros(0) if stats else None,
                                     np.zeros(0) if stats else None)
                continue
            steps = ids if last else ids[:, :-1]
            lp, _ = model.run(steps, model.initial_state(len(part)))
            check_finite(lp, model)
            lp = lp.float()
            pred = lp[:, :length - 1]
            on = ids.to(lp.device)
            target = on[:, 1:, None]
            got = pred.gather(2, target)[..., 0].double()
            correct = (pred.argmax(2) == on[:, 1:]).cpu()
            got, lp = got.cpu(), lp.cpu() if last else lp
            if stats:
                mu, sigma = _moments(pred)
            for j, i in enumerate(part):
                out[i] = Reading(ids[j].numpy(), got[j].numpy(), correct[j].numpy(),
                                 mu[j].double().numpy() if stats else None,
                                 sigma[j].double().numpy() if stats else None,
                                 lp[j, -1].double().numpy() if last else None)
            done += len(part)
            if progress:
                progress(done, len(rows))
    return out  # type: ignore[return-value]


def batches_by_length(rows: Sequence[Sequence[int]], batch_size, stop: StopFlag | None = None):
    """``(length, indices)`` of ``rows`` in batches of one length, shortest first, at most ``batch_size(length)``
    rows each: every batch is one run from the initial state, with no padding. Stops between batches."""
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(len(r), []).append(i)
    for length, idx in sorted(groups.items()):
        size = batch_size(length)
        for lo in range(0, len(idx), size):
            check_stop(stop)
            yield length, idx[lo:lo + size]


READ_ROWS = 256  # texts per forward pass at most, when memory allows


def _read_rows(model: LanguageModel, length: int) -> int:
    """Texts of ``length`` units one forward pass may read: their states and ``length`` rows of
    log-probabilities within a chunk's memory (a 50k-token vocabulary costs 200 KB per position)."""
    per_row = max(1, model.row_bytes(length, max(length, 1)))
    return int(max(1, min(READ_ROWS, chunk_memory(model) // per_row)))


def _moments(pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of ``log p(v)`` under each row's own distribution, on the CPU."""
    p = pred.exp()
    mu = (p * pred).sum(2)
    sigma = ((p * pred.square()).sum(2) - mu.square()).clamp_min(0).sqrt()
    return mu.cpu(), sigma.cpu()


def read_texts(model: LanguageModel, texts: Sequence[str], **kw) -> list[Reading]:
    """:func:`read_ids` over texts encoded as the model encodes them."""
    return read_ids(model, model.encode_batch(list(texts)), **kw)


def score_texts(model: LanguageModel, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
    """Naive reference: every text encoded and run in full from the initial state, batched by length.

    What a user writes by hand (run, log-softmax, gather, sum from the second
    unit): no cache, no sharing.
    """
    return np.array([r.bits for r in read_texts(model, texts, batch_size=batch_size)], dtype=np.float64)


def log_perplexity(model: LanguageModel, text: str) -> float:
    """Log-perplexity of one text, in bits."""
    return float(score_texts(model, [text])[0])


def unit_costs(model: LanguageModel, text: str) -> list[tuple[int, str, float | None]]:
    """``(id, text, bits)`` of each unit of ``text``; the first unit is context (bits None).

    The per-unit strip: where along the secret the model "knows" it.
    """
    ids = model.encode(text)
    if not ids:
        return []
    with torch.inference_mode():
        t = torch.tensor([ids], device=model.device)
        lp, _ = model.run(t, model.initial_state(1))
        check_finite(lp, model)
        bits = (-lp[0, :-1].gather(1, t[0, 1:, None].to(lp.device))[:, 0].double() / LN2).tolist()
    return list(zip(ids, [model.unit_text(i) for i in ids], [None] + bits))
