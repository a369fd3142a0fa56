"""A Hugging Face causal language model behind the one :class:`LanguageModel` interface.

The state is the key/value cache (a transformers ``DynamicCache``) of a batch
whose rows all hold the same number of tokens. ``step`` appends one token per
row; ``select_state`` picks rows (repeats allowed) the way transformers'
generation reorders a cache per beam. States are never changed in place: every
call returns a new cache sharing only immutable tensors with its input, so a
search may step the same parent state twice.

Texts are tokenized as :mod:`ssviz.models.tokenizers` defines (``tokenizer(text)["input_ids"]``,
default special tokens); loading directories and zips is :mod:`ssviz.models.hf_loading`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssviz.errors import CheckpointError, SsvizError, TemplateError, VocabularyError
from ssviz.models.base import LanguageModel, State, TrieStepper
from ssviz.models.pool import PoolFullError

# Cache layers that grow by concatenation (never in place): the only ones a shallow copy can branch.
_BRANCHABLE = ("DynamicLayer", "DynamicSlidingWindowLayer")
# Training metadata (config, epochs, canary, test loss) saved beside the weights; plain transformers ignores it.
TRAINING_FILE = "ssviz_training.json"
MAX_TRAINING_BYTES = 4 << 20
# The files save_pretrained writes for these models: a folder holding only these is a model folder to replace.
MODEL_FILES = frozenset({"config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
                         "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                         "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", TRAINING_FILE})
_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


class TokenVocab:
    """A tokenizer's vocabulary in the role :class:`~ssviz.models.base.Vocab` plays for characters.

    ``len`` is the model's output size (logit columns, which may exceed the
    tokenizer's length); 
    and ``encode`` is the scoring semantics' tokenization of a whole text.
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
            from ssviz.models.tokenizers import spellable
            self._known[char] = spellable(self.tokenizer, char, self.size)
        return self._known[char]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenVocab) and other.tokenizer is self.tokenizer and other.size == self.size

    def missing(self, text: str) -> list[str]:
        return [c for c in dict.fromkeys(text) if c not in self]

    def encode(self, text: str) -> list[int]:
        """``tokenizer(text)["input_ids"]``: the scoring semantics' tokens (special tokens included)."""
        return list(self.tokenizer(text)["input_ids"])

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


class KVStatePool:
    """Rows of :class:`KVState` for best-first search, kept per token length (``HFLanguageModel.state_pool``).

    A key/value cache grows with every token read, so two rows that read different
    numbers of tokens hold tensors of different shapes. Batching them would need
    padding plus attention masks and shifted positions, which are not bit-exact
    across rows; instead the pool keeps one set of buffers per token length and
    ``gather`` only joins rows of one length (:meth:`groups` says which). In a
    digit-splitting template all nodes at one character depth have one length, so
    little batching is lost. Cached tensors of a row are copied in once (``append``)
    and out with one ``index_select`` per layer (``gather``), as
    :class:`~ssviz.models.pool.StatePool` does. ``max_bytes`` bounds the buffers
    of all lengths together.
    """

    def __init__(self, model, max_bytes: int, capacity: int = 256):
        self.max_bytes = int(max_bytes)
        self.capacity = int(capacity)
        self.groups_by_length: dict[int, dict] = {}  # token length -> proto, buffers, size, cap, row_bytes
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
        return sum(g["size"] * g["row_bytes"] for g in self.groups_by_length.values())

    @property
    def bytes_allocated(self) -> int:
        return sum(g["cap"] * g["row_bytes"] for g in self.groups_by_length.values())

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

    def append(self, state: KVState) -> torch.Tensor:
        """Copy a batch state in; returns its rows' numbers."""
        n, length = int(state.batch), int(state.length)
        group = self.groups_by_length.get(length)
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
            self.groups_by_length[length] = group
        self._reserve(group, group["size"] + n)
        if state.cache is not None:
            for buf, leaf in zip(group["buffers"], self._leaves(state.cache)):
                buf[group["size"]:group["size"] + n].copy_(leaf)
        rows = torch.arange(self.size, self.size + n)
        self.row_length.extend([length] * n)
        self.row_local.extend(range(group["size"], group["size"] + n))
        group["size"] += n
        return rows

    def gather(self, rows: torch.Tensor) -> KVState:
        """One batch state made of ``rows`` (repeats allowed), which must all have read the same number of tokens."""
        rows_l = rows.tolist()
        lengths = {self.row_length[r] for r in rows_l}
        if len(lengths) != 1:
            raise ValueError(f"rows of {len(lengths)} different token lengths cannot share a batch")  # a caller's bug
        length = lengths.pop()
        group = self.groups_by_length[length]
        if group["proto"] is None:
            return KVState(None, len(rows_l), length)
        local = torch.tensor([self.row_local[r] for r in rows_l], dtype=torch.long,
                             device=group["buffers"][0].device if group["buffers"] else None)
        cache = _branch(group["proto"])
        tensors = iter([buf.index_select(0, local) for buf in group["buffers"]])
        for layer in cache.layers:
            layer.keys, layer.values = next(tensors), next(tensors)
        return KVState(cache, len(rows_l), length)

    def groups(self, rows: list[int]) -> list[list[int]]:
        """Indices into ``rows`` of the rows that may share one :meth:`gather`: one group per token length."""
        by_length: dict[int, list[int]] = {}
        for i, r in enumerate(rows):
            by_length.setdefault(self.row_length[r], []).append(i)
        return [by_length[n] for n in sorted(by_length)]


class HFLanguageModel(LanguageModel):
    """A transformers ``*ForCausalLM`` and its tokenizer, stepped one token at a time with a KV cache."""

    unit_name = "token"

    def __init__(self, model, tokenizer, name: str = "model", *, freeze: bool = True):
        # freeze=False wraps a model that is being trained (its mode and gradients stay the trainer's)
        self.model = model.eval().requires_grad_(False) if freeze else model
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
        out = self.model(input_ids=tokens.long().to(self.device), cache=cache, use_cache=True)
        lp = torch.log_softmax(out.logits.float(), dim=-1)
        return lp, KVState(out.cache, tokens.shape[0], length)

    # --- units: a text is its tokens under the scoring semantics ------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        from ssviz.models.tokenizers import encode_batch
        return encode_batch(self.tokenizer, texts)

    def unit_texts(self) -> list[str | None]:
        texts = self.__dict__.get("_unit_texts")
        if texts is None:
            from ssviz.models.tokenizers import token_texts
            texts = token_texts(self.tokenizer)
            texts = self.__dict__["_unit_texts"] = texts[:len(self.vocab)] + [None] * (len(self.vocab) - len(texts))
        return texts

    def unit_text(self, unit: int) -> str:
        texts = self.unit_texts()
        t = texts[unit] if 0 <= unit < len(texts) else None
        return t if t is not None else str(self.tokenizer.convert_ids_to_tokens(int(unit)))

    def template_units(self, template):
        from ssviz.models.tokenizers import TokenTemplate
        return TokenTemplate(template, self)

    def trie_stepper(self) -> TrieStepper:
        """Whole levels as batched matrix products over the template's shared prefix (``models/tree.py``);
        the generic stepper (one cache per node) for a model that stepper cannot drive."""
        from ssviz.models.tree import TransformerTrieStepper, usable
        if usable(self):
            return TransformerTrieStepper(self)
        return TrieStepper(self, rows=None)

    def select_state(self, state: State, index: torch.Tensor) -> State:
        if state.cache is None:
            return KVState(None, len(index), 0)
        cache = _branch(state.cache)
        cache.batch_select_indices(index.long().to(self.device))
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
            # no built-in dropout: it would draw from torch's global RNG (training adds its own, seeded)
            config = GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=context, resid_pdrop=0.0,
                                embd_pdrop=0.0, attn_pdrop=0.0, **common)
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

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Every weight drawn again from ``generator`` with transformers' own init for these models.

        Normal(0, ``initializer_range``) for embeddings and projections (GPT-2's residual
        projections scaled by 1/sqrt(2 layers)), zero biases, unit norms: a training run
        seeded this way is reproducible even while other threads use torch's global RNG.
        """
        std = self.config.initializer_range
        cfg = self.config.get_text_config(decoder=True)
        layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 1)
        gpt2 = cfg.model_type == "gpt2"
        seen: set[int] = set()
        for name, module in self.model.named_modules():
            for pname, p in module.named_parameters(recurse=False):
                if id(p) in seen:  # tied weights (GPT-2's head is its embedding) are drawn once
                    continue
                seen.add(id(p))
                if isinstance(module, nn.Embedding) or (pname == "weight" and p.dim() >= 2):
                    scale = math.sqrt(2 * layers) if gpt2 and name.endswith("c_proj") else 1.0
                    p.normal_(0.0, std / scale, generator=generator)
                elif pname == "bias":
                    p.zero_()
                else:
                    p.fill_(1.0)

    def encode_text(self, text: str) -> list[int]:
        """Token ids of a training text: every line tokenized as the scoring semantics tokenize a text.

        ``tokenizer(line + "\\n")["input_ids"]`` per line, concatenated, so a Llama-style BOS
        starts every line and a canary inserted as a line is trained in exactly the context
        it is scored in (``<s>The secret code is ...``).
        """
        from ssviz.models.tokenizers import encode_batch
        lines = text.split("\n")
        pieces = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
        return [i for row in encode_batch(self.tokenizer, pieces) for i in row]

    def save(self, folder, extra: dict | None = None) -> Path:
        """The directory ``load_model`` (and plain transformers) reads back: safetensors weights, tokenizer
        files, and ``extra`` (training metadata) as :data:`TRAINING_FILE`.

        Written into a new folder beside ``folder`` and swapped in, so an interrupted save leaves the
        old model or none, never half of one. A ``folder`` that holds other files than a model's is
        never removed: the model's files are moved into it one by one (stale model files replaced).
        """
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        import transformers.utils.logging as tlog
        bars = tlog.is_progress_bar_enabled()
        tlog.disable_progress_bar()  # a CLI's output is its summary or its JSON, no progress bars
        try:
            os.chmod(tmp, 0o755)
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            if extra is not None:
                (tmp / TRAINING_FILE).write_text(json.dumps(extra, allow_nan=False, default=str), encoding="utf-8")
            for p in tmp.iterdir():
                os.chmod(p, 0o644)  # as other files are made: safetensors writes its file private
            if not folder.exists():
                os.rename(tmp, folder)
            elif folder.is_dir() and is_model_folder(folder):
                old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
                os.rename(folder, old / "model")
                os.rename(tmp, folder)
                shutil.rmtree(old, ignore_errors=True)
            elif folder.is_dir():
                written = {p.name for p in tmp.iterdir()}
                for p in folder.iterdir():
                    if p.is_file() and p.name not in written and is_model_file(p.name):
                        p.unlink()
                for p in tmp.iterdir():
                    os.replace(p, folder / p.name)
            else:
                raise SsvizError(f"cannot save a model folder at {folder}: a file is there")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if bars:
                tlog.enable_progress_bar()
        return folder

    # --- helpers ----------------------------------------------------------------------
    def _new_cache(self):
        from transformers import DynamicCache
        return DynamicCache(config=self.config)

    def kv_layout(self) -> tuple[int, int, int, int]:
        """``(layers, key-value heads, head size, width)`` from the config, whatever its family names them."""
        cfg = self.config.get_text_config(decoder=True)
        layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 1)
        heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 1)
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        width = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 64)
        return layers, kv_heads, getattr(cfg, "head_dim", None) or width // heads, width

    def row_bytes(self, length: int, steps: int = 1) -> int:
        """Rough bytes one row needs: its KV cache at ``length`` tokens plus ``steps`` rows of log-probabilities.

        Scorers size their chunks with it, so memory stays bounded whatever the vocabulary or depth.
        """
        layers, kv_heads, head_dim, width = self.kv_layout()
        size = torch.finfo(self.dtype).bits // 8  # the cache and activations are in the weights' precision
        cache = 2 * layers * kv_heads * head_dim * length * size
        activations = 8 * width * size * steps
        return cache + activations + 3 * len(self.vocab) * 4 * steps

    @property
    def facts(self) -> list[tuple[str, str]]:
        d = self.description
        return [("Architecture", d["arch"]), ("Blocks x width", f"{d['layers']} x {d['hidden_size']}"),
                ("Attention heads", str(d["heads"])), ("Parameters", f"{d['parameters']:,}"),
                ("Vocabulary", f"{d['tokenizer_size']:,} tokens")]

    @property
    def reading(self) -> str:
        d = self.description
        return (f"**Tokenizer**: {d['tokenizer_size']:,} tokens ({d['vocab_size']:,} model outputs), a context of "
                f"{d['context'] or '?'} tokens. " + super().reading)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def description(self) -> dict:
        cfg = self.config.get_text_config(decoder=True)
        return {"arch": str(cfg.model_type).upper(),
                "layers": getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None),
                "hidden_size": getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None),
                "heads": getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None),
                "vocab_size": len(self.vocab), "tokenizer_size": len(self.tokenizer),
                "context": self.max_positions, "parameters": self.parameter_count}

    # --- training ---
    training_archs = ("gpt2", "llama")
    kind_name = "transformer"

    def training_module(self) -> nn.Module:
        return self.model

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def encode_corpus(self, text: str) -> list[int]:
        return self.encode_text(text)

    def training_forward(self, p: float, generator: torch.Generator, module: nn.Module | None = None) -> nn.Module:
        return TrainingForward(self.model if module is None else module, p, generator)

    def make_optimizer(self, params, config) -> torch.optim.Optimizer:
        """AdamW, as transformers are usually trained (its weight decay is decoupled from the gradient)."""
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens.to(self.device), use_cache=False).logits

    def begin_training(self) -> None:
        self.model.requires_grad_(True)  # loaded or built for inference: frozen

    def end_training(self, forward: nn.Module | None = None) -> None:
        if forward is not None:
            forward.close()  # the dropout hooks on the blocks
        self.model.requires_grad_(False)

    def dp_module(self) -> nn.Module:
        """A trainable copy as it is: Opacus' hooks (functorch where it has no rule) handle every layer."""
        return copy.deepcopy(self.model).requires_grad_(True).train()

    # --- search state pool -------------------------------------------------------------------
    def state_pool(self, max_bytes: int) -> KVStatePool:
        """Caches of different token lengths cannot share a batch: one set of buffers per length."""
        return KVStatePool(self, max_bytes)


def is_model_file(name: str) -> bool:
    return name in MODEL_FILES or bool(_SHARD.fullmatch(name))


def is_model_folder(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but a saved model's files (empty counts): safe to replace whole."""
    return all(p.is_file() and not p.is_symlink() and is_model_file(p.name) for p in Path(folder).iterdir())


def read_training(folder) -> dict:
    """The training metadata saved with a model folder (``{}`` when there is none or it is unreadable)."""
    path = Path(folder) / TRAINING_FILE
    try:
        if not path.is_file() or path.stat().st_size > MAX_TRAINING_BYTES:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


class TrainingForward(nn.Module):
    """A transformer's training-time forward: logits at every position, with dropout between blocks.

    Dropout (masks from ``generator``, never torch's global RNG) on the input of every
    block and on the last block's output: the embeddings and every block's output.
    Applied by hooks on the blocks, which hold no weights of their own, so Opacus'
    per-example gradients (recorded at the weight-bearing layers inside, from what
    they actually read) stay exact and its functorch fallback never re-runs a mask.
    The hooks act only while the model is in training mode; :meth:`close` removes them.
    """

    def __init__(self, model: nn.Module, p: float, generator: torch.Generator):
        super().__init__()
        self.model, self.p, self.generator = model, float(p), generator
        self.handles = []
        if self.p > 0:
            blocks = _blocks(model)
            for block in blocks:
                self.handles.append(block.register_forward_pre_hook(self._drop_input, with_kwargs=True))
            self.handles.append(blocks[-1].register_forward_hook(self._drop_output))

    def _drop_input(self, module, args, kwargs):
        if not module.training:
            return None
        if args:
            return (self._mask(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": self._mask(kwargs["hidden_states"])}

    def _drop_output(self, module, args, output):
        if not module.training:
            return None
        if isinstance(output, tuple):
            return (self._mask(output[0]), *output[1:])
        return self._mask(output)

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator)
        return x * keep / (1 - self.p)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # positions per row, not one row broadcast: Opacus' per-example gradient of GPT-2's position
        # embedding needs the batch dimension in the embedding's input
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand(tokens.shape[0], -1)
        return self.model(input_ids=tokens, position_ids=positions, use_cache=False).logits

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def _blocks(model: nn.Module) -> nn.ModuleList:
    """The blocks of a decoder (GPT-2: ``h``; Llama: ``layers``)."""
    base = model.base_model
    blocks = next((getattr(base, n) for n in ("h", "layers") if isinstance(getattr(base, n, None), nn.ModuleList)),
                  None)
    if not blocks:
        raise SsvizError(f"dropout for model type {model.config.model_type!r} is not supported (gpt2 and llama are)")
    return blocks


def _max_positions(config) -> int | None:
    cfg = config.get_text_config(decoder=True)
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
