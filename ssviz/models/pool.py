"""A growing pool of model-state rows, so best-first search can batch nodes from any iteration.

Dijkstra pops nodes created in many different iterations and must step them
together in one call. The model interface can select rows of one batch state
but cannot join states, so the pool learns the state's layout once: it compares
``initial_state(1)`` with ``initial_state(2)`` to find each tensor's batch
dimension, then keeps every tensor in a preallocated buffer (doubling when
full). ``append`` copies a batch state in and returns its row numbers;
``gather`` builds one batch state from any rows with one ``index_select`` per
tensor. Only *expanded* nodes own a row (children are (parent row, edge)
pairs), so state memory grows with nodes expanded, not with the frontier;
``max_bytes`` bounds it and :class:`PoolFullError` tells the search to stop with
a partial result (the search also counts its frontier against the same budget).

A model whose states cannot all be joined keeps them in its own pool
(:meth:`~ssviz.models.LanguageModel.state_pool`; a transformer's key/value
caches: :class:`~ssviz.models.hf.KVStatePool`), with the same interface.

Why not recompute each popped node from the prefix? That reads ~depth
units per node instead of one (5-10x more model work on a 9-digit slot),
and keeping states costs only a few KB per expanded node.
"""

from __future__ import annotations

import torch

from ssviz.errors import SsvizError


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


def _batch_dims(model) -> tuple[list[int], object]:
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
    """Rows of batch states (tensors, or tuples and lists of them), addressable by integer row number."""

    def __init__(self, model, max_bytes: int, capacity: int = 1024):
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

    def append(self, state) -> torch.Tensor:
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

    def gather(self, rows: torch.Tensor):
        """One batch state made of ``rows`` (repeats allowed)."""
        return _unflatten([buf.index_select(d, rows) for buf, d in zip(self.buffers, self.dims)], self.spec)

    def groups(self, rows: list[int]) -> list[list[int]]:
        """Indices into ``rows`` of the rows that may share one :meth:`gather` (here: all of them)."""
        return [list(range(len(rows)))]
