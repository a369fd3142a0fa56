"""Training character models with inserted canaries (the paper's section 4 setup).

A canary (template + filler) is inserted k times at random line boundaries of
the training part of a corpus, a char-LM is trained with the paper's Table 8
defaults, and after every epoch a callback receives train/validation loss and
the canary's exposure: the memorization curve of the paper's Figure 4.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ssviz import exposure as exposure_mod
from ssviz.errors import SsvizError, StoppedError
from ssviz.models.base import Vocab
from ssviz.models.checkpoint import save_checkpoint
from ssviz.models.rnn import ARCHS, CharRNN
from ssviz.templates import Template


@dataclass
class TrainConfig:
    """Hyperparameters; defaults follow the paper's Table 8 (RMSProp, lr 0.001, batch 128, seq 20, 2x200 LSTM)."""

    arch: str = "lstm"
    layers: int = 2
    hidden: int = 200
    embedding_dim: int = 64
    epochs: int = 10
    batch_size: int = 128
    seq_len: int = 20
    lr: float = 0.001
    seed: int = 0
    val_fraction: float = 0.1
    patience: int | None = 3      # early stopping on validation loss; None disables it
    dropout: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float | None = 5.0
    exposure_method: str = "auto"  # per-epoch canary exposure
    exposure_samples: int = 5_000
    exposure_limit: int = 10 ** 6  # largest space enumerated exactly per epoch

    def validate(self) -> "TrainConfig":
        if self.arch not in ARCHS:
            raise SsvizError(f"unknown arch {self.arch!r}: expected one of {sorted(ARCHS)}")
        for name in ("layers", "hidden", "embedding_dim", "epochs", "batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise SsvizError(f"{name} must be >= 1")
        if not 1 <= self.layers <= 4:
            raise SsvizError("layers must be between 1 and 4")
        if not 0 < self.val_fraction < 0.5:
            raise SsvizError("val_fraction must be in (0, 0.5)")
        if not 0 <= self.dropout < 1:
            raise SsvizError("dropout must be in [0, 1)")
        if self.lr <= 0:
            raise SsvizError("lr must be positive")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Canary:
    template: Template
    secret: str
    insertions: int = 1

    @property
    def text(self) -> str:
        return self.template.format(self.secret)

    def to_json(self) -> dict:
        return {"template": self.template.text, "secret": self.secret, "insertions": self.insertions}


@dataclass
class TrainResult:
    model: CharRNN
    config: TrainConfig
    epochs: list[dict] = field(default_factory=list)
    canary: Canary | None = None
    stopped: bool = False
    seconds: float = 0.0
    test_loss: float | None = None

    def metadata(self) -> dict:
        return {"training": {"config": asdict(self.config), "epochs": self.epochs,
                             "canary": self.canary.to_json() if self.canary else None}}

    def save(self, path) -> Path:
        return save_checkpoint(self.model, path, extra=self.metadata())


# --- corpus -----------------------------------------------------------------------------
def read_corpus(source) -> str:
    """Text from a path or bytes; non-UTF-8 input is refused with the offending byte's position."""
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), "uploaded corpus"
    else:
        path = Path(source)
        if not path.is_file():
            raise SsvizError(f"corpus not found: {path}")
        data, name = path.read_bytes(), str(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SsvizError(f"{name} is not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start}); "
                         f"convert it first, e.g. iconv -f latin1 -t utf-8") from None
    if "\x00" in text:
        raise SsvizError(f"{name} looks binary (contains NUL bytes), not a text corpus")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) < 100:
        raise SsvizError(f"{name} is too short to train on ({len(text)} characters)")
    return text


def insert_canary(text: str, canary_text: str, insertions: int, seed: int = 0) -> str:
    """Insert ``canary_text`` as its own line at ``insertions`` random line boundaries (seeded)."""
    if insertions <= 0:
        return text
    lines = text.split("\n")
    rng = np.random.default_rng(seed)
    spots = sorted(rng.integers(0, len(lines) + 1, size=insertions).tolist(), reverse=True)
    for s in spots:
        lines.insert(s, canary_text)
    return "\n".join(lines)


def build_vocab(text: str, *templates: Template) -> Vocab:
    chars = set(text)
    for t in templates:
        chars.update(t.characters)
    return Vocab(sorted(chars))


def split_corpus(text: str, val_fraction: float) -> tuple[str, str]:
    cut = int(len(text) * (1 - val_fraction))
    cut = text.rfind("\n", 0, cut) + 1 or cut
    return text[:cut], text[cut:]


def windows(ids: torch.Tensor, seq_len: int, offset: int = 0) -> torch.Tensor:
    """Non-overlapping training windows ``[N, seq_len + 1]`` (inputs and shifted targets)."""
    n = (len(ids) - offset - 1) // seq_len
    if n <= 0:
        return torch.zeros(0, seq_len + 1, dtype=torch.long)
    idx = offset + torch.arange(n)[:, None] * seq_len + torch.arange(seq_len + 1)[None]
    return ids[idx]


def evaluate_loss(model: CharRNN, ids: torch.Tensor, seq_len: int, batch_size: int = 512) -> float:
    """Mean cross-entropy per predicted character (nats) over windows of a held-out text."""
    data = windows(ids, seq_len)
    if len(data) == 0:
        return float("nan")
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for lo in range(0, len(data), batch_size):
            b = data[lo:lo + batch_size]
            logits, _ = model(b[:, :-1])
            total += float(nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1),
                                                        reduction="sum"))
            count += b[:, 1:].numel()
    model.train(was_training)
    return total / count


EpochCallback = Callable[[dict], None]
BatchCallback = Callable[[int, int, float], None]


def canary_exposure(model: CharRNN, canary: Canary, config: TrainConfig) -> dict:
    res = exposure_mod.measure(model, canary.template, canary.secret, method=config.exposure_method,
                               samples=config.exposure_samples, seed=config.seed, limit=config.exposure_limit)
    return {"exposure": res.exposure, "exposure_method": res.method, "rank": res.rank,
            "log_perplexity": res.log_perplexity}


def prepare(text: str, config: TrainConfig, canary: Canary | None = None, vocab: Vocab | None = None):
    """Split, insert the canary into the training part, build the vocabulary and token tensors."""
    config.validate()
    train_text, val_text = split_corpus(text, config.val_fraction)
    if canary is not None:
        canary.secret = canary.template.normalize(canary.secret)
        train_text = insert_canary(train_text, canary.text, canary.insertions, config.seed)
    vocab = vocab or build_vocab(text, *([canary.template] if canary else []))
    if canary is not None:
        canary.template.check_vocab(vocab)
    return vocab, torch.tensor(vocab.encode(train_text)), torch.tensor(vocab.encode(val_text))


def train(text: str, config: TrainConfig | None = None, canary: Canary | None = None, *,
          on_epoch: EpochCallback | None = None, on_batch: BatchCallback | None = None,
          stop=None, model: CharRNN | None = None) -> TrainResult:
    """Train a char-LM on ``text`` (with ``canary`` inserted); stoppable via ``stop`` (Event or callable).

    A stop request ends training after the current batch and returns the best model so far.
    """
    config = (config or TrainConfig()).validate()
    torch.manual_seed(config.seed)
    vocab, train_ids, val_ids = prepare(text, config, canary, model.vocab if model is not None else None)
    if len(windows(train_ids, config.seq_len)) == 0:
        raise SsvizError("corpus too short for the sequence length")
    model = model or CharRNN(vocab, arch=config.arch, embedding_dim=config.embedding_dim,
                             hidden_size=config.hidden, num_layers=config.layers, dropout=config.dropout)
    opt = torch.optim.RMSprop(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    result = TrainResult(model=model, config=config, canary=canary)
    best_val, best_state, bad_epochs = math.inf, None, 0
    t0 = time.perf_counter()

    def stopped() -> bool:
        return stop is not None and (stop.is_set() if hasattr(stop, "is_set") else stop())

    for epoch in range(1, config.epochs + 1):
        model.train()
        data = windows(train_ids, config.seq_len, offset=int(rng.integers(0, config.seq_len)))
        order = torch.from_numpy(rng.permutation(len(data)))
        n_batches = math.ceil(len(data) / config.batch_size)
        total, count = 0.0, 0
        for b in range(n_batches):
            if stopped():
                result.stopped = True
                break
            batch = data[order[b * config.batch_size:(b + 1) * config.batch_size]]
            logits, _ = model(batch[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), batch[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            total += loss.item() * len(batch)
            count += len(batch)
            if on_batch:
                on_batch(b + 1, n_batches, loss.item())
        if count == 0:
            break
        model.eval()
        record = {"epoch": epoch, "train_loss": total / count,
                  "val_loss": evaluate_loss(model, val_ids, config.seq_len),
                  "exposure": None, "seconds": time.perf_counter() - t0}
        if canary is not None:
            record.update(canary_exposure(model, canary, config))
        result.epochs.append(record)
        if on_epoch:
            on_epoch(record)
        if record["val_loss"] < best_val:
            best_val, bad_epochs = record["val_loss"], 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        if result.stopped or (config.patience is not None and bad_epochs >= config.patience):
            break
    if best_state is not None and config.patience is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.test_loss = evaluate_loss(model, val_ids, config.seq_len)
    result.seconds = time.perf_counter() - t0
    return result
