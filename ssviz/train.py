"""Training language models with inserted canaries (the paper's section 4 setup).

A canary (template + filler) is inserted k times at random line boundaries of
the training split of a corpus, a char-LM is trained with the paper's Table 8
defaults, and after every epoch a callback receives train/validation loss and
the canary's exposure: the memorization curve of the paper's Figure 4.

``arch`` gpt2 or llama trains a small transformer through the same loop: a
model built from a config (no download) with a byte-level BPE tokenizer
trained on the corpus's training split (:func:`new_model`), AdamW instead of
RMSProp, windows of tokens instead of characters; it is saved as a folder
plain transformers loads.

One training core: every trainer (the CLI, the app, sweeps, the study, every
defense) calls :func:`train`. The corpus is split once (:func:`split_text`:
train | validation for early stopping | test for ``test_loss``); the optimizer
side is a *backend* chosen by name (:class:`PlainBackend`, or ``"dp"``: DP-SGD,
which :mod:`ssviz.defenses.dp` registers), and what happens to the trained model
afterwards (quantization) is a post-training hook, also by name
(:mod:`ssviz.training_plugins`); this module imports no defense. What differs
between a character RNN and a transformer, each model says itself (the training
members of :class:`~ssviz.models.base.LanguageModel`). Randomness comes from
generators seeded by ``config.seed``, never torch's global RNG, so trainings
running at once in threads stay reproducible.
"""

from __future__ import annotations

import copy
import functools
import math
import numbers
import time
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ssviz import exposure as exposure_mod
from ssviz import training_plugins
from ssviz.corpus import (  # noqa: F401  (re-exported: the training API's data helpers)
    MAX_INSERTED_CHARS,
    Split,
    build_vocab,
    insert_canary,
    read_corpus,
    split_corpus,
    split_text,
    windows,
)
from ssviz.errors import NonFiniteError, SettingsError, SsvizError
from ssviz.messages import clip
from ssviz.progress import stop_requested
from ssviz.models.base import LanguageModel, Vocab
from ssviz.models.rnn import ARCHS, CharRNN
from ssviz.templates import Template
from ssviz.training_plugins import BACKENDS, HOOKS, register_backend, register_hook  # noqa: F401  (re-exported)

SEED_LIMIT = 2 ** 63
TRANSFORMER_ARCHS = ("gpt2", "llama")
TRANSFORMER_OPTIONS = ("heads", "vocab_size", "merge_digits")
DEFAULT_HEADS = 4
DEFAULT_VOCAB_SIZE = 1024
DEFAULT_CONTEXT = 256  # a transformer's positions (at least seq_len): room to score texts longer than a window
# Bumped whenever training changes what a saved model or its test_loss means, so caches keyed by the
# settings (the study's) never reuse an older model: 2 = test_loss on a held-out test split (was validation).
TRAINING_VERSION = 2


# --- options: declared once, with help text and bounds; the CLI and sweeps derive from them ----------------
def option(default, help: str, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
           choices=None, cli: bool = True, grid: bool = True, group: str | None = None,
           metavar: str | None = None, cli_choices=None):
    """A :class:`TrainConfig` field carrying its help text and its valid values.

    ``low``/``high`` bound numbers (``*_open``: the bound itself is excluded);
    ``cli`` puts it in every training command's options, ``grid`` lets sweeps vary it.
    """
    return field(default=default, metadata={
        "help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
        "choices": tuple(choices) if choices else None, "cli": cli, "grid": grid, "group": group,
        "metavar": metavar, "cli_choices": tuple(cli_choices) if cli_choices else None})


@dataclass
class TrainConfig:
    """Hyperparameters; defaults follow the paper's Table 8 (RMSProp, lr 0.001, batch 128, seq 20, 2x200 LSTM)."""

    arch: str = option("lstm", "model: a character RNN (lstm, gru) or a small transformer built from a config, "
                               "reading tokens of a BPE tokenizer trained on the corpus (gpt2, llama)",
                       choices=sorted(ARCHS) + list(TRANSFORMER_ARCHS))
    layers: int = option(2, "stacked RNN layers or transformer blocks", low=1, high=4)
    hidden: int = option(200, "hidden units per layer (a transformer's width)", low=1, high=4096)
    embedding_dim: int = option(64, "character embedding size (lstm, gru; a transformer's is --hidden)", low=1,
                                high=4096)
    heads: int | None = option(None, f"attention heads (default {DEFAULT_HEADS}; must divide --hidden)", low=1,
                               high=64, group="transformers (--arch gpt2 or llama)", metavar="N")
    vocab_size: int | None = option(None, f"tokens of the byte-level BPE tokenizer trained on the corpus's training "
                                          f"part (default {DEFAULT_VOCAB_SIZE})", low=260, high=65_536,
                                    group="transformers (--arch gpt2 or llama)", metavar="N")
    merge_digits: bool = option(False, "let the tokenizer merge digit runs as GPT-2's does (default: every digit "
                                       "its own token, as Llama's)", group="transformers (--arch gpt2 or llama)")
    epochs: int = option(10, "training epochs (fewer if early stopping ends it)", low=1, high=100_000)
    batch_size: int = option(128, "training windows per batch", low=1, high=65_536)
    seq_len: int = option(20, "characters (a transformer: tokens) per training window", low=1, high=10_000)
    lr: float = option(0.001, "learning rate of RMSProp (lstm, gru) or AdamW (transformers; try 3e-3 for small "
                              "ones)", low=0, low_open=True)
    seed: int = option(0, "seed of initial weights, batches, dropout and canary positions", low=0,
                       high=SEED_LIMIT, high_open=True, grid=False)
    val_fraction: float = option(0.1, "fraction of the corpus held out (its last lines): the first half is the "
                                      "validation split early stopping watches, the second half the test split "
                                      "test_loss reports", low=0, high=0.5, low_open=True, high_open=True,
                                 cli=False, grid=False)
    patience: int | None = option(3, "early stopping patience in epochs (0 disables early stopping)", low=0)
    dropout: float = option(0.0, "dropout probability on embeddings, RNN outputs and between layers (a "
                                    "transformer: on embeddings and every block's output)", low=0,
                            high=1, high_open=True, group="defenses", metavar="P")
    weight_decay: float = option(0.0, "L2 weight decay (a transformer: AdamW's decoupled decay)", low=0, group="defenses", metavar="W")
    grad_clip: float | None = option(5.0, "gradient norm clipping of plain training (None: off)", low=0,
                                     low_open=True, cli=False)
    exposure_method: str = option("auto", "per-epoch canary exposure", choices=exposure_mod.ESTIMATES,
                                  cli=False, grid=False)
    exposure_samples: int = option(5_000, "samples of a per-epoch skew-normal or sampled exposure", low=10,
                                   high=10 ** 8, cli=False, grid=False)
    exposure_limit: int = option(10 ** 6, "largest space enumerated exactly per epoch", low=1, cli=False,
                                 grid=False)
    # defenses (ssviz.defenses): 8-bit weight quantization after training; DP-SGD with Opacus
    quantize: int | None = option(None, "quantize the trained weights to this many bits (Appendix D); reports "
                                        "before/after", low=2, high=16, group="defenses", metavar="8",
                                  cli_choices=[8])
    dp_epsilon: float | None = option(None, "DP-SGD (Opacus) with this target epsilon over --epochs", low=0,
                                      low_open=True, group="defenses", metavar="E")
    dp_noise: float | None = option(None, "DP-SGD with this noise multiplier instead of a target epsilon "
                                          "(0 = clipping only)", low=0, group="defenses", metavar="SIGMA")
    dp_delta: float = option(1e-5, "DP delta", low=0, high=1, low_open=True, high_open=True, group="defenses",
                             metavar="D")
    dp_clip: float = option(1.0, "per-example clipping norm", low=0, low_open=True, group="defenses",
                            metavar="C")
    dp_accountant: str = option("rdp", "Opacus accountant: rdp (the moments accountant, as the paper) or prv",
                                choices=("rdp", "prv"), group="defenses", grid=False)

    @property
    def uses_dp(self) -> bool:
        return self.dp_epsilon is not None or self.dp_noise is not None

    @property
    def transformer(self) -> bool:
        return self.arch in TRANSFORMER_ARCHS

    @property
    def backend_name(self) -> str:
        """The training backend this config asks for (:mod:`ssviz.training_plugins`): DP-SGD or plain."""
        return "dp" if self.uses_dp else "plain"

    @property
    def post_training(self) -> tuple[str, ...]:
        """The post-training hooks this config asks for, in order (:mod:`ssviz.training_plugins`)."""
        return ("quantize",) if self.quantize else ()

    @property
    def early_stopping(self) -> bool:
        """Whether early stopping is on: ``patience`` None or 0 disables it, everywhere."""
        return bool(self.patience)

    def validate(self) -> "TrainConfig":
        """Check every option against its declaration (type, finiteness, bounds, choices), then the pairs."""
        for f in fields(self):
            check_option(f.name, getattr(self, f.name))
        if self.dp_epsilon is not None and self.dp_noise is not None:
            raise SettingsError("give either a DP target epsilon or a noise multiplier, not both")
        self._check_arch_options()
        return self

    def _check_arch_options(self) -> None:
        """Options that belong to one kind of model are refused for the other; a transformer's shape must work."""
        if not self.transformer:
            for name in TRANSFORMER_OPTIONS:
                if getattr(self, name) not in (None, False):
                    raise SettingsError(f"{name} applies to transformers (arch gpt2 or llama), not {self.arch}")
            return
        if self.embedding_dim != option_specs()["embedding_dim"]["default"]:
            raise SettingsError(f"embedding_dim applies to lstm and gru; a {self.arch} transformer's embeddings are "
                                f"hidden ({self.hidden}) wide")
        heads = self.heads or DEFAULT_HEADS
        if self.hidden % heads:
            raise SettingsError(f"hidden ({self.hidden}) must be a multiple of heads ({heads}) for a transformer")
        if self.arch == "llama" and (self.hidden // heads) % 2:
            raise SettingsError(f"llama needs an even width per head for its rotary positions: hidden / heads is "
                                f"{self.hidden // heads}")
        if self.arch == "llama" and heads % max(1, heads // 2):
            raise SettingsError(f"llama shares keys and values between pairs of heads: heads must be 1, 3 or even, "
                                f"got {heads}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@functools.cache
def option_specs() -> dict[str, dict]:
    """Every TrainConfig option: ``{name: {"kind", "optional", "default", "help", bounds, ...}}``."""
    hints = typing.get_type_hints(TrainConfig)
    specs = {}
    for f in fields(TrainConfig):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        kind = args[0] if args else hints[f.name]
        specs[f.name] = {**f.metadata, "kind": kind, "optional": bool(args), "default": f.default}
    return specs


def _describe(spec: dict) -> str:
    kind = spec["kind"]
    if kind is bool:
        return "true or false"
    if spec["choices"]:
        return "one of " + ", ".join(map(str, spec["choices"]))
    what = "a whole number" if kind is int else "a finite number"
    lo, hi = spec["low"], spec["high"]
    if lo is not None and hi is not None:
        left = ">" if spec["low_open"] else ">="
        right = "<" if spec["high_open"] else "<="
        bound = f" {left} {lo:g} and {right} {hi:g}" if kind is float else \
            (f" from {lo + spec['low_open']:,} to {hi - spec['high_open']:,}")
    elif lo is not None:
        bound = f" {'>' if spec['low_open'] else '>='} {lo:g}"
    elif hi is not None:
        bound = f" {'<' if spec['high_open'] else '<='} {hi:g}"
    else:
        bound = ""
    return what + bound + (" (or None)" if spec["optional"] else "")


def check_option(name: str, value):
    """``value`` if it is valid for option ``name``, else :class:`SettingsError` saying what is expected."""
    spec = option_specs()[name]
    if value is None and spec["optional"]:
        return value
    kind, ok = spec["kind"], True
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    elif spec["choices"]:
        ok = value in spec["choices"]
    if ok and kind in (int, float):
        lo, hi = spec["low"], spec["high"]
        ok = (lo is None or (value > lo if spec["low_open"] else value >= lo)) and \
             (hi is None or (value < hi if spec["high_open"] else value <= hi))
    if not ok:
        raise SettingsError(f"{name} must be {_describe(spec)}, got {clip(repr(value), 40)}")
    return value


def parse_option(name: str, text: str):
    """A value of option ``name`` from text (``none`` for an optional one), checked like :meth:`validate`."""
    spec = option_specs()[name]
    raw = str(text).strip()
    if spec["optional"] and raw.lower() == "none":
        return None
    kind = spec["kind"]
    if kind is bool:
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if raw.lower() not in words:
            raise SettingsError(f"{name} must be {_describe(spec)}, got {clip(repr(raw), 40)}")
        return words[raw.lower()]
    try:
        value = raw if kind is str else float(raw) if kind is float else whole_number(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {_describe(spec)}, got {clip(repr(raw), 40)}") from None
    return check_option(name, value)


def whole_number(raw: str) -> int:
    """An int from text, accepting exact float spellings such as ``1e3`` but not ``2.5``."""
    try:
        return int(raw, 10)
    except ValueError:
        value = float(raw)
        if not math.isfinite(value) or value != int(value):
            raise
        return int(value)


# --- canary ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Canary:
    """A secret (template + filler) inserted ``insertions`` times into the training split; never modified."""

    template: Template
    secret: str
    insertions: int = 1

    def __post_init__(self):
        if not isinstance(self.insertions, numbers.Integral) or isinstance(self.insertions, bool) \
                or self.insertions < 0:
            raise SettingsError(f"insertions must be a whole number >= 0, got {clip(repr(self.insertions), 40)}")

    @property
    def text(self) -> str:
        return self.template.format(self.secret)

    def normalized(self) -> "Canary":
        """A copy whose secret is the bare filler (the input may be its formatted form)."""
        return replace(self, secret=self.template.normalize(self.secret))

    def to_json(self) -> dict:
        return {"template": self.template.text, "secret": self.secret, "insertions": self.insertions}


# --- results -----------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: LanguageModel                  # a CharRNN, or a transformer (HFLanguageModel)
    config: TrainConfig
    epochs: list[dict] = field(default_factory=list)
    canary: Canary | None = None
    stopped: bool = False
    seconds: float = 0.0
    test_loss: float | None = None        # loss on the held-out test split (never seen by early stopping)
    epsilon: float | None = None          # DP guarantee spent (with config.dp_delta); None without DP
    dp_noise: float | None = None         # the noise multiplier DP training used (chosen by Opacus for a target)
    final: dict | None = None             # exposure of the returned model (best epoch when restored)
    quantization: dict | None = None      # before/after figures when config.quantize is set
    diverged: dict | None = None          # {"epoch", "batch", "loss", "kept_epoch"} when the loss stopped being finite
    device: str = "cpu"                   # where it trained
    dtype: str = "float32"                # the compute precision (autocast's in 16 bits; weights float32)

    @property
    def warning(self) -> str | None:
        """One line for a user when training diverged (None otherwise)."""
        if self.diverged is None:
            return None
        return (f"{divergence_text(self.diverged)}; kept the model of epoch {self.diverged['kept_epoch']}, the "
                f"last with finite weights (try a lower lr than {self.config.lr:g})")

    def metadata(self) -> dict:
        training = {"config": asdict(self.config), "epochs": self.epochs,
                    "canary": self.canary.to_json() if self.canary else None,
                    "epsilon": self.epsilon if self.epsilon is None or math.isfinite(self.epsilon) else None,
                    "dp_noise": self.dp_noise, "test_loss": self.test_loss, "quantization": self.quantization,
                    "device": self.device, "dtype": self.dtype}
        if self.diverged is not None:
            training["diverged"] = self.diverged
        return {"training": training}

    def save(self, path, extra: dict | None = None) -> Path:
        """A checkpoint file (character models) or a model folder plain transformers loads (transformers),
        carrying :meth:`metadata` and ``extra``."""
        return self.model.save(path, extra={**self.metadata(), **(extra or {})})


# --- evaluation --------------------------------------------------------------------------------------------
def evaluate_loss(model: LanguageModel, ids: torch.Tensor, seq_len: int, batch_size: int = 512) -> float:
    """Mean cross-entropy per predicted character or token (nats) over windows of a held-out text.

    A text shorter than one window is scored as one shorter window (NaN below 2 characters).
    """
    data = windows(ids, seq_len)
    if len(data) == 0:
        if len(ids) < 2:
            return float("nan")
        data = ids[None]
    total, count = 0.0, 0
    net = model.training_module()
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        for lo in range(0, len(data), batch_size):
            b = data[lo:lo + batch_size]
            logits = model.logits(b[:, :-1])
            total += float(nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1),
                                                        reduction="sum"))
            count += b[:, 1:].numel()
    net.train(was_training)
    return total / count


EpochCallback = Callable[[dict], None]
BatchCallback = Callable[[int, int, float], None]


def canary_exposure(model: LanguageModel, canary: Canary, config: TrainConfig) -> dict:
    res = exposure_mod.measure(model, canary.template, canary.secret, method=config.exposure_method,
                               samples=config.exposure_samples, seed=config.seed, limit=config.exposure_limit)
    return {"exposure": res.exposure, "exposure_method": res.method, "rank": res.rank,
            "log_perplexity": res.log_perplexity}


def new_model(config: TrainConfig, text: str | Split, *templates: Template, like: LanguageModel | None = None
              ) -> LanguageModel:
    """The untrained model ``config`` describes for a corpus, initialized from ``config.seed`` without torch's
    global RNG.

    lstm/gru: a CharRNN over the corpus's characters and the ``templates``'. gpt2/llama: a
    transformer built from a config (no download) with a byte-level BPE tokenizer trained on the
    corpus's training part (its held-out parts stay unseen; a canary inserted later does not shape
    the vocabulary), digits one token each unless ``merge_digits``, BOS prepended for llama as
    Llama's tokenizers do. ``like``: reuse its vocabulary or tokenizer (models compared text by
    text, e.g. the two halves of LPD sanitization).
    """
    config.validate()
    split = text if isinstance(text, Split) else split_text(text, config.val_fraction)
    if not config.transformer:
        return CharRNN.from_config(like.vocab if like is not None else build_vocab(split.text, *templates), config)
    from ssviz.models.hf import HFLanguageModel
    from ssviz.models.tokenizers import train_tokenizer
    if like is not None:
        tokenizer = like.tokenizer
    else:
        tokenizer = train_tokenizer(split.train.split("\n"), vocab_size=config.vocab_size or DEFAULT_VOCAB_SIZE,
                                    split_digits=not config.merge_digits, add_bos=config.arch == "llama")
    model = HFLanguageModel.build(config.arch, tokenizer, layers=config.layers, heads=config.heads or DEFAULT_HEADS,
                                  hidden=config.hidden, context=max(DEFAULT_CONTEXT, config.seq_len),
                                  seed=config.seed)
    model.reset_parameters(torch.Generator().manual_seed(config.seed))
    model.name = f"{config.arch} {config.layers}x{config.hidden}"
    return model


@dataclass
class Prepared:
    """What :func:`prepare` hands the loop: the model, token ids of the three splits, the canary."""

    model: LanguageModel
    train_ids: torch.Tensor
    val_ids: torch.Tensor
    test_ids: torch.Tensor
    canary: Canary | None

    @property
    def vocab(self):
        return self.model.vocab


def prepare(text: str | Split, config: TrainConfig, canary: Canary | None = None,
            vocab: Vocab | None = None, model: LanguageModel | None = None) -> Prepared:
    """Split (unless ``text`` is already a :class:`Split`), insert the canary into the training split,
    build the model (:func:`new_model`, or a CharRNN over ``vocab``) unless one is given, and the token
    tensors. ``canary`` is not modified (a normalized copy is returned)."""
    config.validate()
    split = text if isinstance(text, Split) else split_text(text, config.val_fraction)
    train_text = split.train
    if canary is not None:
        canary = canary.normalized()
        train_text = insert_canary(train_text, canary.text, canary.insertions, config.seed)
    templates = [canary.template] if canary else []
    if model is None:
        model = CharRNN.from_config(vocab, config) if vocab is not None else new_model(config, split, *templates)
    elif config.arch not in model.training_archs:
        raise SettingsError(f"the model given is a {model.kind_name} but arch is {config.arch}")
    if canary is not None:
        canary.template.check_vocab(model.vocab)
    for name, part in (("validation", split.val), ("test", split.test)):
        if len(part) < 2:
            raise SsvizError(f"the corpus is too short to hold out a {name} split ({len(part)} characters); "
                             f"use a longer corpus")
    return Prepared(model, *(torch.tensor(model.encode_corpus(t), dtype=torch.long)
                             for t in (train_text, split.val, split.test)), canary)


def _stream_seed(seed: int, stream: int) -> int:
    """An independent seed for one random stream (dropout, ...) of a training run."""
    return int(np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(1, dtype=np.uint64)[0] >> 1)


# --- backends ----------------------------------------------------------------------------------------------
class PlainBackend:
    """Ordinary training: the model's own optimizer (RMSProp; a transformer: AdamW) on its own weights,
    batches from a seeded permutation.

    A backend offers ``module`` (what ``.train()`` is called on), ``optimizer``, ``batches()`` ->
    ``(count, iterator of [B, seq_len + 1] windows)``, ``logits(tokens)``, ``clip()``, ``export()``
    -> the ordinary model, ``epoch_fields()`` (added to every epoch's record), ``result_fields()``
    (set on the :class:`TrainResult`), and optionally ``finish()`` (training is over: leave the model as
    inference expects it). Registered as ``"plain"`` (:mod:`ssviz.training_plugins`).
    """

    def __init__(self, model: LanguageModel, config: TrainConfig, train_ids: torch.Tensor, rng: np.random.Generator,
                 generator: torch.Generator):
        self.model, self.config, self.train_ids, self.rng = model, config, train_ids, rng
        self.net = model.training_module()
        model.begin_training()
        self.optimizer = model.make_optimizer(self.net.parameters(), config)
        self.module = model.training_forward(config.dropout, generator)

    def batches(self):
        cfg = self.config
        data = windows(self.train_ids, cfg.seq_len, offset=int(self.rng.integers(0, cfg.seq_len)))
        order = torch.from_numpy(self.rng.permutation(len(data)))
        n = math.ceil(len(data) / cfg.batch_size)
        return n, (data[order[b * cfg.batch_size:(b + 1) * cfg.batch_size]] for b in range(n))

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.module(tokens)

    def clip(self) -> None:
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)

    def export(self) -> LanguageModel:
        return self.model

    def epoch_fields(self) -> dict:
        return {}

    def result_fields(self) -> dict:
        return {}

    def finish(self) -> None:
        self.model.end_training(self.module)


register_backend("plain", PlainBackend)


def default_backend(config: TrainConfig):
    """The backend class a config asks for (``config.backend_name``; DP-SGD's module is imported only then)."""
    return training_plugins.backend(config.backend_name)


def divergence_text(d: dict) -> str:
    """"training diverged in epoch N (...)" for a ``TrainResult.diverged`` record."""
    what = f"loss became {d['loss']} at batch {d['batch']}" if d.get("batch") else \
        f"{d['loss']} after the epoch's updates"
    return f"training diverged in epoch {d['epoch']} ({what})"


def _finite_weights(model: LanguageModel) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.training_module().parameters())


# --- the loop ----------------------------------------------------------------------------------------------
def train(text: str | Split, config: TrainConfig | None = None, canary: Canary | None = None, *,
          on_epoch: EpochCallback | None = None, on_batch: BatchCallback | None = None,
          stop=None, model: LanguageModel | None = None, backend=None, device=None, dtype=None) -> TrainResult:
    """Train a language model on ``text`` (with ``canary`` inserted); stoppable via ``stop`` (Event or callable).

    The model is ``model`` or :func:`new_model` of ``config`` (a char RNN, or a transformer
    with a tokenizer trained on the corpus); both go through this one loop.

    ``text`` is a corpus, split here, or a :class:`Split` someone already made (the
    sanitization defenses clean only its training part). A stop request ends
    training after the current batch and returns the best model so far. A loss that
    stops being finite ends training too: the last finite model is kept and
    ``result.diverged`` / ``result.warning`` say so (:class:`NonFiniteError` if no
    epoch finished). With ``config.dp_epsilon``/``dp_noise`` training runs DP-SGD
    (``backend`` defaults to :func:`default_backend`) and ``result.epsilon`` reports the
    privacy spent; with ``config.quantize`` the returned model's weights are quantized
    (a post-training hook) and ``result.quantization`` holds test loss and exposure before
    and after.

    ``device`` and ``dtype`` (default: :func:`ssviz.models.placement.default_placement`) say where it
    trains: the weights stay float32 there (optimizer states need it) and a 16-bit ``dtype`` is the
    compute precision of ``torch.autocast``; ``result.device`` and ``result.dtype`` record them.
    """
    from ssviz.models.placement import autocast, default_placement, dtype_name, resolve
    config = (config or TrainConfig()).validate()
    dev, dt = resolve(*(default_placement() if device is None and dtype is None else
                        (device or "auto", dtype or "auto")))
    data = prepare(text, config, canary, model=model)
    canary, vocab, model = data.canary, data.vocab, data.model
    if len(windows(data.train_ids, config.seq_len)) == 0:
        raise SsvizError("corpus too short for the sequence length")
    model.place(dev, torch.float32)
    data.train_ids, data.val_ids, data.test_ids = (t.to(dev) for t in (data.train_ids, data.val_ids, data.test_ids))
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator(device=dev).manual_seed(_stream_seed(config.seed, 1))
    backend = (backend or default_backend(config))(model, config, data.train_ids, rng, generator)
    result = TrainResult(model=model, config=config, canary=canary, device=str(dev), dtype=dtype_name(dt))
    best_val, best_state, best_record, bad_epochs = math.inf, None, None, 0
    last_state, last_record = None, None
    t0 = time.perf_counter()

    for epoch in range(1, config.epochs + 1):
        backend.module.train()
        n_batches, batches = backend.batches()
        total, count = 0.0, 0
        for b, batch in enumerate(batches):
            if stop_requested(stop):
                result.stopped = True
                break
            if len(batch) == 0:  # Poisson sampling can draw an empty batch
                continue
            with autocast(dev, dt):
                logits = backend.logits(batch[:, :-1])
                loss = nn.functional.cross_entropy(logits.float().reshape(-1, len(vocab)), batch[:, 1:].reshape(-1))
            value = loss.item()
            if not math.isfinite(value):
                result.diverged = {"epoch": epoch, "batch": b + 1, "loss": str(value)}
                break
            backend.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            backend.clip()
            backend.optimizer.step()
            total += value * len(batch)
            count += len(batch)
            if on_batch:
                on_batch(b + 1, n_batches, value)
        if result.diverged or count == 0:
            break
        model = backend.export()
        model.training_module().eval()
        record = {"epoch": epoch, "train_loss": total / count,
                  "val_loss": evaluate_loss(model, data.val_ids, config.seq_len),
                  "exposure": None, "seconds": time.perf_counter() - t0}
        if not math.isfinite(record["val_loss"]) or not _finite_weights(model):
            result.diverged = {"epoch": epoch, "batch": None, "loss": f"validation loss {record['val_loss']}"
                               if not math.isfinite(record["val_loss"]) else "non-finite weights"}
            break
        record.update(backend.epoch_fields())
        if canary is not None:
            try:
                record.update(canary_exposure(model, canary, config))
            except NonFiniteError:  # finite but huge weights: as unusable as NaN ones
                result.diverged = {"epoch": epoch, "batch": None, "loss": "non-finite log-probabilities"}
                break
        result.epochs.append(record)
        last_state, last_record = copy.deepcopy(model.training_module().state_dict()), record
        if on_epoch:
            on_epoch(record)
        if record["val_loss"] < best_val:
            best_val, bad_epochs, best_record = record["val_loss"], 0, record
            best_state = last_state
        else:
            bad_epochs += 1
        if result.stopped or (config.early_stopping and bad_epochs >= config.patience):
            break
    getattr(backend, "finish", lambda: None)()
    if result.diverged is not None:
        if last_state is None:
            raise NonFiniteError(f"{divergence_text(result.diverged)} before any epoch finished: nothing finite "
                                 f"to keep; try a lower lr than {config.lr:g}")
        if not config.early_stopping:
            best_state, best_record = last_state, last_record
        result.diverged["kept_epoch"] = best_record["epoch"]
    if config.early_stopping or result.diverged is not None:
        if best_state is not None:
            model.training_module().load_state_dict(best_state)
    else:
        best_record = result.epochs[-1] if result.epochs else None
    model.training_module().eval()
    result.model = model
    for name, value in backend.result_fields().items():
        setattr(result, name, value)
    result.test_loss = evaluate_loss(model, data.test_ids, config.seq_len)
    if best_record is not None and canary is not None:
        result.final = {k: best_record[k] for k in ("epoch", "exposure", "exposure_method", "rank",
                                                    "log_perplexity")}

    def remeasure() -> None:
        """A hook changed the returned model's weights: its test loss and the canary's exposure again."""
        result.test_loss = evaluate_loss(model, data.test_ids, config.seq_len)
        if canary is not None:
            result.final = {"epoch": result.final["epoch"] if result.final else None,
                            **canary_exposure(model, canary, config)}

    for name in config.post_training:
        training_plugins.hook(name)(result, remeasure)
    result.seconds = time.perf_counter() - t0
    return result
