"""A growing pool of model-state rows, so best-first search can batch nodes from any iteration.

Dijkstra pops nodes created in many different iterations and must step them
together in one call. The model interface can select rows of one batch state
but cannot join states, so the pool learns the state's layout once: it compares
``initial_state(1)`` with ``initial_state(2)`` to find each tensor's batch
dimension, then keeps every tensor in a preallocated buffer (doubling when
full). ``append`` copies a batch state in and returns its row numbers;
``gather`` builds one batch state from any rows with one ``index_select`` per
tensor. Only *expanded* nodes own a row (children are (parent row, character)
pairs), so state memory grows with nodes expanded, not with the frontier;
``max_bytes`` bounds it and :class:`PoolFullError` tells the search to stop with
a partial result (the search also counts its frontier against the same budget).

Transformer states (key/value caches) live in a :class:`KVStatePool` instead,
one set of buffers per token length (``make_pool`` picks the pool).

Why not recompute each popped node from the prefix? That reads ~depth
characters per node instead of one (5-10x more model work on a 9-digit slot),
and keeping states costs only a few KB per expanded node.
"""

from __future__ import annotations

import torch

from ssviz.errors import SsvizError
from ssviz.models.base import LanguageModel, State


class PoolFullError(SsvizError):
    """The state pool reached its memory budget."""


def _flatten(state) -> tuple[list[torch.Tensor], object]:
    if isinstance(state, torch.Tensor):
        return [state], "t"
    if isinstance(state, (tuple, list)):
        leaves, specs = [], []
        for s in state:
            sub, spec = _flatten(s)
            leaves.extend(sub)
            specs.append((len(sub), spec))
        return leaves, (type(state), specs)
    raise SsvizError(f"search needs model states made of tensors, got {type(state).__name__}")


def _unflatten(leaves: list[torch.Tensor], spec):
    if spec == "t":
        return leaves[0]
    kind, specs = spec
    out, i = [], 0
    for n, sub in specs:
        out.append(_unflatten(leaves[i:i + n], sub))
        i += n
    return kind(out)


def _batch_dims(model: LanguageModel) -> tuple[list[int], object]:
    one, spec = _flatten(model.initial_state(1))
    two, _ = _flatten(model.initial_state(2))
    dims = []
    for a, b in zip(one, two):
        diff = [d for d in range(a.dim()) if a.shape[d] != b.shape[d]]
        if a.dim() != b.dim() or len(diff) != 1 or (a.shape[diff[0]], b.shape[diff[0]]) != (1, 2):
            raise SsvizError("search cannot find the batch dimension of this model's state")
        dims.append(diff[0])
    return dims, spec


class StatePool:
    """Rows of batch states, addressable by integer row number."""

    def __init__(self, model: LanguageModel, max_bytes: int, capacity: int = 1024):
        self.dims, self.spec = _batch_dims(model)
        proto, _ = _flatten(model.initial_state(1))
        self.row_bytes = sum(t.numel() * t.element_size() for t in proto)
        self.max_rows = max(1, int(max_bytes // max(self.row_bytes, 1)))
        self.size = 0
        cap = min(capacity, self.max_rows)
        self.buffers = [self._alloc(t, d, cap) for t, d in zip(proto, self.dims)]
        self.capacity = cap

    @staticmethod
    def _alloc(proto: torch.Tensor, dim: int, rows: int) -> torch.Tensor:
        shape = list(proto.shape)
        shape[dim] = rows
        return torch.empty(shape, dtype=proto.dtype, device=proto.device)

    @property
    def bytes_used(self) -> int:
        return self.size * self.row_bytes

    def _grow(self, need: int) -> None:
        if need > self.max_rows:
            raise PoolFullError(f"state memory budget of {self.max_rows * self.row_bytes / 2**20:.0f} MB reached")
        cap = min(max(need, 2 * self.capacity), self.max_rows)
        new = []
        for buf, d in zip(self.buffers, self.dims):
            b = self._alloc(buf, d, cap)
            b.narrow(d, 0, self.size).copy_(buf.narrow(d, 0, self.size))
            new.append(b)
        self.buffers, self.capacity = new, cap

    def append(self, state: State) -> torch.Tensor:
        """Copy a batch state in; returns its rows' numbers."""
        leaves, _ = _flatten(state)
        n = leaves[0].shape[self.dims[0]]
        if self.size + n > self.capacity:
            self._grow(self.size + n)
        for buf, d, leaf in zip(self.buffers, self.dims, leaves):
            buf.narrow(d, self.size, n).copy_(leaf)
        rows = torch.arange(self.size, self.size + n)
        self.size += n
        return rows

    def gather(self, rows: torch.Tensor) -> State:
        """One batch state made of ``rows`` (repeats allowed)."""
        return _unflatten([buf.index_select(d, rows) for buf, d in zip(self.buffers, self.dims)], self.spec)


class KVStatePool:
    """Rows of transformer states (:class:`~ssviz.models.hf.KVState`), kept per token length.

    A key/value cache grows with every token read, so two rows that read different
    numbers of tokens hold tensors of different shapes. Batching them would need
    padding plus attention masks and shifted positions, which are not bit-exact
    across rows; instead the pool keeps one set of buffers per token length and
    ``gather`` only joins rows of one length. Token searches step each length's
    rows in their own model call (exact; in a digit-splitting template all nodes
    at one character depth have one length, so little batching is lost). Cached
    tensors of a row are copied in once (``append``) and out with one
    ``index_select`` per layer (``gather``), as :class:`StatePool` does.
    ``max_bytes`` bounds the buffers of all lengths together.
    """

    def __init__(self, model: LanguageModel, max_bytes: int, capacity: int = 256):
        self.max_bytes = int(max_bytes)
        self.capacity = int(capacity)
        self.groups: dict[int, dict] = {}   # token length -> {"proto", "buffers", "size", "cap", "row_bytes"}
        self.row_length: list[int] = []
        self.row_local: list[int] = []

    @staticmethod
    def _leaves(cache) -> list[torch.Tensor]:
        return [t for layer in cache.layers for t in (layer.keys, layer.values)]

    @property
    def size(self) -> int:
        return len(self.row_length)

    @property
    def bytes_used(self) -> int:
        return sum(g["size"] * g["row_bytes"] for g in self.groups.values())

    @property
    def bytes_allocated(self) -> int:
        return sum(g["cap"] * g["row_bytes"] for g in self.groups.values())

    def _reserve(self, group: dict, need: int) -> None:
        if need <= group["cap"]:
            return
        spare = (self.max_bytes - self.bytes_allocated) // max(group["row_bytes"], 1) + group["cap"]
        if need > spare and self.size:  # the first rows (the root) always fit, as in StatePool
            raise PoolFullError(f"state memory budget of {self.max_bytes / 2**20:.0f} MB reached")
        cap = int(max(need, min(max(2 * group["cap"], self.capacity), spare)))
        new = []
        for buf in group["buffers"]:
            b = torch.empty((cap, *buf.shape[1:]), dtype=buf.dtype, device=buf.device)
            b[:group["size"]].copy_(buf[:group["size"]])
            new.append(b)
        group["buffers"], group["cap"] = new, cap

    def append(self, state) -> torch.Tensor:
        """Copy a batch state in; returns its rows' numbers."""
        from ssviz.models.hf import _branch
        n, length = int(state.batch), int(state.length)
        group = self.groups.get(length)
        if group is None:
            leaves = [] if state.cache is None else self._leaves(state.cache)
            proto = None
            if state.cache is not None:  # the cache's layout and bookkeeping, without its rows
                proto = _branch(state.cache)
                for layer in proto.layers:
                    layer.keys, layer.values = layer.keys[:0].clone(), layer.values[:0].clone()
            group = {"proto": proto, "size": 0, "cap": 0,
                     "buffers": [t[:0].clone() for t in leaves],
                     "row_bytes": sum(t[:1].numel() * t.element_size() for t in leaves)}
            self.groups[length] = group
        self._reserve(group, group["size"] + n)
        if state.cache is not None:
            for buf, leaf in zip(group["buffers"], self._leaves(state.cache)):
                buf[group["size"]:group["size"] + n].copy_(leaf)
        rows = torch.arange(self.size, self.size + n)
        self.row_length.extend([length] * n)
        self.row_local.extend(range(group["size"], group["size"] + n))
        group["size"] += n
        return rows

    def gather(self, rows: torch.Tensor):
        """One batch state made of ``rows`` (repeats allowed), which must all have read the same number of tokens."""
        from ssviz.models.hf import KVState, _branch
        rows_l = rows.tolist()
        lengths = {self.row_length[r] for r in rows_l}
        if len(lengths) != 1:
            raise ValueError(f"rows of {len(lengths)} different token lengths cannot share a batch")  # a caller's bug
        length = lengths.pop()
        group = self.groups[length]
        if group["proto"] is None:
            return KVState(None, len(rows_l), length)
        local = torch.tensor([self.row_local[r] for r in rows_l], dtype=torch.long)
        cache = _branch(group["proto"])
        tensors = iter([buf.index_select(0, local) for buf in group["buffers"]])
        for layer in cache.layers:
            layer.keys, layer.values = next(tensors), next(tensors)
        return KVState(cache, len(rows_l), length)


def make_pool(model: LanguageModel, max_bytes: int):
    """The pool for this model's states: per token length for KV caches, else one set of buffers."""
    proto = model.initial_state(1)
    if hasattr(proto, "cache") and hasattr(proto, "length"):
        return KVStatePool(model, max_bytes)
    return StatePool(model, max_bytes)
