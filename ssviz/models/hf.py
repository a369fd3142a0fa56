"""A Hugging Face causal language model behind the one :class:`LanguageModel` interface.

The state is the key/value cache (a transformers ``DynamicCache``) of a batch
whose rows all hold the same number of tokens. ``step`` appends one token per
row; ``select_state`` picks rows (repeats allowed) the way transformers'
generation reorders a cache per beam. States are never changed in place: every
call returns a new cache sharing only immutable tensors with its input, so a
search may step the same parent state twice.

Texts are tokenized as :mod:`ssviz.tokens` defines (``tokenizer(text)["input_ids"]``,
default special tokens); loading directories and zips is :mod:`ssviz.models.hf_loading`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ssviz.errors import CheckpointError, TemplateError, VocabularyError
from ssviz.models.base import LanguageModel, State

# Cache layers that grow by concatenation (never in place): the only ones a shallow copy can branch.
_BRANCHABLE = ("DynamicLayer", "DynamicSlidingWindowLayer")


class TokenVocab:
    """A tokenizer's vocabulary in the role :class:`~ssviz.models.base.Vocab` plays for characters.

    ``len`` is the model's output size (logit columns, which may exceed the
    tokenizer's length); :meth:`tokens` is the scoring semantics' tokenization,
    and the character-wise ``encode`` is refused.
    """

    def __init__(self, tokenizer, size: int):
        self.tokenizer = tokenizer
        self.size = int(size)
        self._known: dict[str, bool] = {}

    def __len__(self) -> int:
        return self.size

    def __contains__(self, char: str) -> bool:
        """Whether the tokenizer spells ``char`` without its unknown token (as :class:`Vocab` answers for characters)."""
        if char not in self._known:
            from ssviz.tokens import spellable
            self._known[char] = spellable(self.tokenizer, char, self.size)
        return self._known[char]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenVocab) and other.tokenizer is self.tokenizer and other.size == self.size

    def missing(self, text: str) -> list[str]:
        return [c for c in dict.fromkeys(text) if c not in self]

    def tokens(self, text: str) -> list[int]:
        """``tokenizer(text)["input_ids"]``: the scoring semantics' tokens (special tokens included)."""
        return list(self.tokenizer(text)["input_ids"])

    def encode(self, text: str) -> list[int]:
        """Refused: code written for characters (one id per character) would silently score the wrong tokens."""
        raise VocabularyError("a transformer reads tokens, not characters: score it with ssviz.token_scoring "
                              "(texts are tokenized as a whole)")

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], clean_up_tokenization_spaces=False)


@dataclass(frozen=True)
class KVState:
    """The cache of ``batch`` sequences that have each read ``length`` tokens (``cache`` is None before any)."""

    cache: Any
    batch: int
    length: int

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached keys and values (grows with ``length``: see ``HFLanguageModel.row_bytes``)."""
        if self.cache is None:
            return 0
        return sum(t.numel() * t.element_size() for layer in self.cache.layers
                   for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None)


def _branch(cache):
    """A new cache object over the same (immutable) tensors: updating it leaves ``cache`` as it was."""
    new = copy.copy(cache)
    new.layers = [copy.copy(layer) for layer in cache.layers]
    return new


class HFLanguageModel(LanguageModel):
    """A transformers ``*ForCausalLM`` and its tokenizer, stepped one token at a time with a KV cache."""

    token_level = True  # texts are tokenized, not split into characters

    def __init__(self, model, tokenizer, name: str = "model"):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.config = model.config
        size = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None \
            else model.config.vocab_size
        self.vocab = TokenVocab(tokenizer, size)
        self.max_positions = _max_positions(model.config)
        kinds = {type(layer).__name__ for layer in self._new_cache().layers}
        odd = sorted(kinds - set(_BRANCHABLE))
        if odd:
            raise CheckpointError(f"{name}: model type {model.config.model_type!r} keeps a cache ssviz cannot branch "
                                  f"({', '.join(odd)}); supported are attention-only decoders such as GPT-2 and Llama")

    # --- LanguageModel -------------------------------------------------------------
    def initial_state(self, batch_size: int) -> State:
        return KVState(None, int(batch_size), 0)

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        lp, state = self.run(tokens[:, None], state)
        return lp[:, 0], state

    def run(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Read ``tokens [B, T]`` in one forward pass over the cached context."""
        if tokens.shape[0] != state.batch:
            # a caller's bug, not a user's
            raise ValueError(f"{tokens.shape[0]} rows of tokens for a state of {state.batch}")
        length = state.length + tokens.shape[1]
        if self.max_positions and length > self.max_positions:
            raise TemplateError(f"a text of {length} tokens is longer than the context of {self.name} "
                                f"({self.max_positions} positions)")
        cache = self._new_cache() if state.cache is None else _branch(state.cache)
        out = self.model(input_ids=tokens.long(), cache=cache, use_cache=True)
        lp = torch.log_softmax(out.logits.float(), dim=-1)
        return lp, KVState(out.cache, tokens.shape[0], length)

    def select_state(self, state: State, index: torch.Tensor) -> State:
        if state.cache is None:
            return KVState(None, len(index), 0)
        cache = _branch(state.cache)
        cache.batch_select_indices(index.long())
        return KVState(cache, len(index), state.length)

    # --- building and saving ---------------------------------------------------------------
    @classmethod
    def build(cls, arch: str, tokenizer, *, layers: int = 2, heads: int = 4, hidden: int = 64,
              context: int = 256, seed: int = 0, init_range: float = 0.02) -> HFLanguageModel:
        """A fresh (untrained) GPT-2- or Llama-style model sized for ``tokenizer``, from a config: no download."""
        from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig
        common = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, initializer_range=init_range)
        if arch == "gpt2":
            config = GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=context, **common)
        elif arch == "llama":
            config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                 num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                                 max_position_embeddings=context, **common)
        else:
            raise CheckpointError(f"unknown transformer arch {arch!r}: expected 'gpt2' or 'llama'")
        with torch.random.fork_rng():  # seeded here; the caller's random state is left as it was
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config)
        return cls(model, tokenizer, name=f"new {arch}")

    def save(self, folder) -> None:
        """The directory ``load_model`` (and plain transformers) reads back: safetensors weights, tokenizer files."""
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    # --- helpers ----------------------------------------------------------------------
    def _new_cache(self):
        from transformers import DynamicCache
        return DynamicCache(config=self.config)

    def row_bytes(self, length: int, steps: int = 1) -> int:
        """Rough bytes one row needs: its KV cache at ``length`` tokens plus ``steps`` rows of log-probabilities.

        Scorers size their chunks with it, so memory stays bounded whatever the vocabulary or depth.
        """
        cfg = self.config.get_text_config(decoder=True)
        layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 1)
        heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 1)
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        width = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 64)
        head_dim = getattr(cfg, "head_dim", None) or width // heads
        cache = 2 * layers * kv_heads * head_dim * length * 4
        activations = 8 * width * 4 * steps
        return cache + activations + 3 * len(self.vocab) * 4 * steps

    @property
    def parameters_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def description(self) -> dict:
        cfg = self.config.get_text_config(decoder=True)
        return {"arch": str(cfg.model_type).upper(),
                "layers": getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None),
                "hidden_size": getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None),
                "heads": getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None),
                "vocab_size": len(self.vocab), "tokenizer_size": len(self.tokenizer),
                "context": self.max_positions, "parameters": self.parameters_count}


def _max_positions(config) -> int | None:
    cfg = config.get_text_config(decoder=True)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
