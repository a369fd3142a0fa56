"""The transformer trie stepper: whole trie levels as large batched matrix products over a shared prefix.

Every node of a template's trie shares the template's literal prefix (tens of tokens) and differs only
in the few tokens after it. The generic stepper copies the prefix's keys and values into every child's
cache (and Hugging Face's cache concatenates them again at every layer), so memory, not arithmetic,
bounds how many nodes one call can hold. Here the prefix's keys and values are kept once (batch 1)
and every node keeps only its own tokens' (``private``); attention splits into a scores product
against the shared prefix, computed as one matrix product for all nodes of a block, and a small one
against each node's own tokens. Projections, norms, rotary embeddings and MLPs are the model's own
modules (only the attention function is swapped in, through transformers' attention registry), so
any decoder that dispatches attention through that registry (GPT-2, Llama, Mistral, Qwen, ...) is
stepped exactly as its own forward would.

The output head is applied lazily: a node keeps its last hidden state and the log-normalizer of its
next-token distribution (:class:`NodeLogProbs`), not the full ``[V]`` log-probabilities, which for a
50,257-token vocabulary would otherwise be the largest thing a level holds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from ssviz.models.base import TrieStepper

ATTENTION = "ssviz_shared_prefix"
HEAD_ELEMENTS = 1 << 25      # logits computed at once for a block's log-normalizers (128 MB in float32): big products
_LOCAL = threading.local()   # the shared prefix of the call running in this thread (None: attend as usual)
_SWAP = threading.Lock()
_ACTIVE: dict[int, list] = {}  # id(config) -> [calls in flight, the implementation to restore]


def _fallback(module, query, key, value, attention_mask, **kw):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kw)


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
    """Attention of ``query [n, H, T, hd]`` over the shared prefix plus each row's own ``key/value [n, Hkv, A, hd]``
    (its earlier private tokens and the ``T`` new ones, causal among the new). Calls outside a tree step
    (another thread using the model meanwhile) attend as the model normally does."""
    shared = getattr(_LOCAL, "shared", None)
    if shared is None:
        return _fallback(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kw)
    n, heads, t, hd = query.shape
    kv = key.shape[1]
    g = heads // kv
    scale = hd ** -0.5 if scaling is None else scaling
    q = query.reshape(n, kv, g * t, hd)                   # query head kv*g + j reads key head kv (GQA)
    own = torch.matmul(q, key.transpose(-1, -2)) * scale  # [n, kv, g*t, A]
    a = key.shape[2]
    if t > 1:  # the new tokens see each other causally: new token i sees new tokens 0..i
        i = torch.arange(t, device=q.device)
        blocked = (i[None, :] > i[:, None])               # [t (query), t (key)]
        mask = torch.zeros(g * t, a, dtype=torch.bool, device=q.device)
        mask[:, a - t:] = blocked.repeat(g, 1)
        own = own.masked_fill(mask, float("-inf"))
    layer = shared[module.layer_idx]
    if layer is None:  # no shared prefix (the text starts here)
        p = torch.softmax(own.float(), dim=-1).to(value.dtype)
        out = torch.matmul(p, value)
    else:
        k0, v0 = layer                                     # [kv, P, hd]: one copy for every row
        qs = q.transpose(0, 1).reshape(kv, n * g * t, hd)
        common = torch.bmm(qs, k0.transpose(1, 2)).mul_(scale).reshape(kv, n, g * t, -1).transpose(0, 1)
        p = torch.softmax(torch.cat([common, own], dim=-1).float(), dim=-1).to(value.dtype)
        plen = k0.shape[1]
        out = torch.matmul(p[..., plen:], value)
        pc = p[..., :plen].transpose(0, 1).reshape(kv, n * g * t, plen)
        out = out + torch.bmm(pc, v0).reshape(kv, n, g * t, hd).transpose(0, 1)
    return out.reshape(n, heads, t, hd).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    if ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION, _attention)


def fused_activations(model) -> list[tuple[torch.nn.Module, str, torch.nn.Module]]:
    """``(parent, attribute, fused)`` for every tanh-approximated GELU written out in Python ops (GPT-2's
    ``gelu_new``): the same function as torch's one-kernel ``gelu(approximate="tanh")`` up to float rounding,
    which on a CPU costs a sixth of a step's time in six passes over the MLP's activations."""
    try:
        from transformers.activations import GELUTanh, NewGELUActivation
    except ImportError:  # pragma: no cover - an older transformers: nothing is swapped
        return []
    return [(parent, name, GELUTanh()) for parent in model.modules() for name, child in parent.named_children()
            if type(child) is NewGELUActivation]


class _Swapped:
    """The model's attention implementation set to the shared-prefix one (and ``acts``, from
    :func:`fused_activations`, swapped in) for the duration of a call; counted, so overlapping calls from
    several threads restore them once, after the last."""

    def __init__(self, config, shared, acts=()):
        self.config, self.shared, self.acts = config, shared, acts

    def __enter__(self):
        with _SWAP:
            entry = _ACTIVE.setdefault(id(self.config), [0, None, []])
            if entry[0] == 0:
                entry[1] = self.config._attn_implementation
                self.config._attn_implementation = ATTENTION
                entry[2] = [(parent, name, getattr(parent, name)) for parent, name, _ in self.acts]
                for parent, name, fused in self.acts:
                    setattr(parent, name, fused)
            entry[0] += 1
        _LOCAL.shared = self.shared

    def __exit__(self, *exc):
        _LOCAL.shared = None
        with _SWAP:
            entry = _ACTIVE[id(self.config)]
            entry[0] -= 1
            if entry[0] == 0:
                self.config._attn_implementation = entry[1]
                for parent, name, original in entry[2]:
                    setattr(parent, name, original)
                del _ACTIVE[id(self.config)]


class _TreeCache:
    """What the model's attention layers update: each layer's private keys/values, the new tokens appended."""

    is_compileable = False

    def __init__(self, private, length: int, keep: bool):
        self.private = private  # per layer (keys, values) [n, Hkv, A, hd], or None before any private token
        self.length = length
        self.keep = keep
        self.new: list = [None] * (len(private) if private is not None else 0)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        if self.private is not None and self.private[layer_idx] is not None:
            k0, v0 = self.private[layer_idx]
            key_states = torch.cat([k0, key_states], dim=2)
            value_states = torch.cat([v0, value_states], dim=2)
        if self.keep:
            if layer_idx >= len(self.new):
                self.new.extend([None] * (layer_idx + 1 - len(self.new)))
            self.new[layer_idx] = (key_states, value_states)
        return key_states, value_states


@dataclass
class TreeNodes:
    """A block of trie nodes: the shared prefix (per layer ``(keys, values)`` of batch 1, or None), each node's
    private keys/values, and how many tokens precede a node's next one."""

    shared: list | None
    private: list | None
    length: int
    batch: int

    @property
    def nbytes(self) -> int:
        return 0 if self.private is None else sum(t.numel() * t.element_size() for kv in self.private for t in kv)


class NodeLogProbs:
    """Next-token log-probabilities of a block of nodes, kept as last hidden states and log-normalizers:
    ``self[rows, tokens]`` is ``log p(tokens[i] | node rows[i])`` (float32, on the CPU)."""

    def __init__(self, hidden: torch.Tensor, lse: torch.Tensor, head: torch.nn.Module):
        self.hidden, self.lse, self.head = hidden, lse, head

    def __getitem__(self, key) -> torch.Tensor:
        rows, tokens = key
        dev = self.hidden.device
        rows = torch.as_tensor(rows, device=dev)
        tokens = torch.as_tensor(tokens, device=dev)
        h = self.hidden[rows].float()
        w = self.head.weight[tokens].float()
        logit = (h * w).sum(-1)
        if getattr(self.head, "bias", None) is not None:
            logit = logit + self.head.bias[tokens].float()
        return (logit - self.lse[rows]).cpu()

    def all_finite(self) -> bool:
        return bool(torch.isfinite(self.lse).all())

    def __len__(self) -> int:
        return len(self.lse)


def usable(lm) -> bool:
    """Whether ``lm`` (ssviz's wrapper of a transformers causal LM) can be stepped here: full attention at
    every layer (no sliding window: its cache drops old positions), a plain linear output head with no logit
    transform after it, and attention layers that dispatch through transformers' registry."""
    if {type(layer).__name__ for layer in lm._new_cache().layers} != {"DynamicLayer"}:
        return False
    model = lm.model
    cfg = model.config.get_text_config(decoder=True)
    if any(getattr(cfg, a, None) for a in ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")):
        return False
    head = model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear) or getattr(model, "base_model", None) is model:
        return False
    if getattr(cfg, "_attn_implementation", None) not in ("sdpa", "eager", None):
        return False
    return all(hasattr(m, "layer_idx") for m in model.modules() if type(m).__name__.endswith("Attention"))


class TransformerTrieStepper(TrieStepper):
    """Trie levels of a transformer in blocks of ``rows`` nodes, over the shared prefix (see the module)."""

    def __init__(self, lm, rows: int = 2048):
        super().__init__(lm, rows=rows)
        _register()
        self.hf = lm.model
        self.base = lm.model.base_model
        self.head = lm.model.get_output_embeddings()
        layers, kv_heads, head_dim, width = lm.kv_layout()
        size = self.head.weight.element_size()
        self.token_bytes = 2 * layers * kv_heads * head_dim * size  # keys and values of one token, all layers
        self.hidden_bytes = width * size + 4
        self.acts = fused_activations(lm.model)

    def node_bytes(self, private_tokens: int) -> int:
        """Bytes one node keeps: its private tokens' keys and values and its lazy log-probabilities."""
        return self.token_bytes * max(int(private_tokens), 0) + self.hidden_bytes

    def root(self, state) -> TreeNodes:
        if state.cache is None:
            return TreeNodes(None, None, 0, int(state.batch))
        shared = [(layer.keys[0], layer.values[0]) for layer in state.cache.layers]  # [Hkv, P, hd] each
        return TreeNodes(shared, None, int(state.length), int(state.batch))

    def _forward(self, state: TreeNodes, local, tokens: torch.Tensor, keep: bool):
        private = state.private
        if private is not None and local is not None:
            local = local.to(private[0][0].device)
            private = [(k.index_select(0, local), v.index_select(0, local)) for k, v in private]
        dev = self.head.weight.device
        tokens = tokens.long().to(dev)
        n, t = tokens.shape
        cache = _TreeCache(private, state.length, keep)
        pos = torch.arange(state.length, state.length + t, device=dev).expand(n, t)
        shared = state.shared if state.shared is not None else _Nones()
        with _Swapped(self.hf.config, shared, self.acts):
            out = self.base(input_ids=tokens, position_ids=pos, cache=cache, use_cache=True)
        hidden = out.last_hidden_state
        new = TreeNodes(state.shared, cache.new, state.length + t, n) if keep else None
        return hidden, new

    def children(self, state: TreeNodes, local, tok: torch.Tensor, keep: bool = True):
        hidden, new = self._forward(state, local, tok[:, None], keep)
        hidden = hidden[:, 0]
        lse = torch.empty(len(hidden), dtype=torch.float32, device=hidden.device)
        step = max(1, HEAD_ELEMENTS // max(self.head.weight.shape[0], 1))
        for lo in range(0, len(hidden), step):
            lse[lo:lo + step] = torch.logsumexp(self.head(hidden[lo:lo + step]).float(), dim=-1)
        return NodeLogProbs(hidden, lse, self.head), new

    def run(self, state: TreeNodes, local, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self._forward(state, local, tokens, False)
        return torch.log_softmax(self.head(hidden).float(), dim=-1)


class _Nones:
    """A shared prefix of nothing, at every layer."""

    def __getitem__(self, i):
        return None
