"""Training character models with inserted canaries (the paper's section 4 setup).

A canary (template + filler) is inserted k times at random line boundaries of
the training part of a corpus, a char-LM is trained with the paper's Table 8
defaults, and after every epoch a callback receives train/validation loss and
the canary's exposure: the memorization curve of the paper's Figure 4.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ssviz import exposure as exposure_mod
from ssviz.errors import SsvizError, stop_requested
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
    # defenses (ssviz.defenses): 8-bit weight quantization after training; DP-SGD with Opacus
    quantize: int | None = None    # bits per weight (8 in the paper's Appendix D); None = off
    dp_epsilon: float | None = None  # target epsilon: Opacus picks the noise for `epochs` epochs
    dp_noise: float | None = None    # or a fixed noise multiplier sigma
    dp_delta: float = 1e-5
    dp_clip: float = 1.0             # per-example gradient clipping norm
    dp_accountant: str = "rdp"       # Opacus accountant: "rdp" (moments accountant, as the paper) or "prv"

    @property
    def uses_dp(self) -> bool:
        return self.dp_epsilon is not None or self.dp_noise is not None

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
        if self.weight_decay < 0:
            raise SsvizError("weight_decay must be >= 0")
        if self.quantize is not None and not 2 <= self.quantize <= 16:
            raise SsvizError("quantize must be a number of bits between 2 and 16 (the paper uses 8)")
        if self.dp_epsilon is not None and self.dp_noise is not None:
            raise SsvizError("give either a DP target epsilon or a noise multiplier, not both")
        if self.dp_epsilon is not None and not self.dp_epsilon > 0:
            raise SsvizError("dp_epsilon must be positive")
        if self.dp_noise is not None and not self.dp_noise >= 0:
            raise SsvizError("dp_noise must be >= 0 (0 = clipping only)")
        if not 0 < self.dp_delta < 1:
            raise SsvizError("dp_delta must be in (0, 1)")
        if not self.dp_clip > 0:
            raise SsvizError("dp_clip must be positive")
        if self.dp_accountant not in ("rdp", "prv"):
            raise SsvizError("dp_accountant must be 'rdp' or 'prv'")
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
    epsilon: float | None = None          # DP guarantee spent (with config.dp_delta); None without DP
    dp_noise: float | None = None         # the noise multiplier DP training used (chosen by Opacus for a target)
    final: dict | None = None             # exposure of the returned model (best epoch when restored)
    quantization: dict | None = None      # before/after figures when config.quantize is set

    def metadata(self) -> dict:
        return {"training": {"config": asdict(self.config), "epochs": self.epochs,
                             "canary": self.canary.to_json() if self.canary else None,
                             "epsilon": self.epsilon if self.epsilon is None or math.isfinite(self.epsilon)
                             else None, "dp_noise": self.dp_noise, "test_loss": self.test_loss,
                             "quantization": self.quantization}}

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


def dropout_forward(model: CharRNN, tokens: torch.Tensor, p: float) -> torch.Tensor:
    """Training-time logits with dropout on the embeddings and the RNN output.

    CharRNN only drops between stacked layers, which does nothing for a
    1-layer model; dropping inputs and outputs as well (Zaremba et al.) makes
    the dropout defense real for every depth without changing the checkpoint.
    """
    if p <= 0 or not model.training:
        return model(tokens)[0]
    out, _ = model.rnn(nn.functional.dropout(model.embedding(tokens), p, True))
    return model.head(nn.functional.dropout(out, p, True))


class PlainBackend:
    """Ordinary training: RMSProp on the model itself, batches from a seeded permutation."""

    epsilon = None

    def __init__(self, model: CharRNN, config: TrainConfig, train_ids: torch.Tensor, rng: np.random.Generator):
        self.model, self.config, self.train_ids, self.rng = model, config, train_ids, rng
        self.optimizer = torch.optim.RMSprop(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.module = model

    def batches(self):
        cfg = self.config
        data = windows(self.train_ids, cfg.seq_len, offset=int(self.rng.integers(0, cfg.seq_len)))
        order = torch.from_numpy(self.rng.permutation(len(data)))
        n = math.ceil(len(data) / cfg.batch_size)
        return n, (data[order[b * cfg.batch_size:(b + 1) * cfg.batch_size]] for b in range(n))

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return dropout_forward(self.model, tokens, self.config.dropout)

    def clip(self) -> None:
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)

    def export(self) -> CharRNN:
        return self.model


def train(text: str, config: TrainConfig | None = None, canary: Canary | None = None, *,
          on_epoch: EpochCallback | None = None, on_batch: BatchCallback | None = None,
          stop=None, model: CharRNN | None = None) -> TrainResult:
    """Train a char-LM on ``text`` (with ``canary`` inserted); stoppable via ``stop`` (Event or callable).

    A stop request ends training after the current batch and returns the best model so far.
    With ``config.dp_epsilon``/``dp_noise`` training runs DP-SGD (Opacus, see
    :mod:`ssviz.defenses.dp`) and ``result.epsilon`` reports the privacy spent;
    with ``config.quantize`` the returned model's weights are quantized and
    ``result.quantization`` holds test loss and exposure before and after.
    """
    config = (config or TrainConfig()).validate()
    torch.manual_seed(config.seed)
    vocab, train_ids, val_ids = prepare(text, config, canary, model.vocab if model is not None else None)
    if len(windows(train_ids, config.seq_len)) == 0:
        raise SsvizError("corpus too short for the sequence length")
    model = model or CharRNN(vocab, arch=config.arch, embedding_dim=config.embedding_dim,
                             hidden_size=config.hidden, num_layers=config.layers, dropout=config.dropout)
    rng = np.random.default_rng(config.seed)
    if config.uses_dp:
        from ssviz.defenses.dp import DPBackend  # Opacus is imported only when DP is asked for
        backend = DPBackend(model, config, train_ids, rng)
    else:
        backend = PlainBackend(model, config, train_ids, rng)
    result = TrainResult(model=model, config=config, canary=canary)
    best_val, best_state, best_record, bad_epochs = math.inf, None, None, 0
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
            logits = backend.logits(batch[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), batch[:, 1:].reshape(-1))
            backend.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            backend.clip()
            backend.optimizer.step()
            total += loss.item() * len(batch)
            count += len(batch)
            if on_batch:
                on_batch(b + 1, n_batches, loss.item())
        if count == 0:
            break
        model = backend.export()
        model.eval()
        record = {"epoch": epoch, "train_loss": total / count,
                  "val_loss": evaluate_loss(model, val_ids, config.seq_len),
                  "exposure": None, "seconds": time.perf_counter() - t0}
        if config.uses_dp:
            record["epsilon"] = backend.epsilon()
        if canary is not None:
            record.update(canary_exposure(model, canary, config))
        result.epochs.append(record)
        if on_epoch:
            on_epoch(record)
        if record["val_loss"] < best_val:
            best_val, bad_epochs, best_record = record["val_loss"], 0, record
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        if result.stopped or (config.patience is not None and bad_epochs >= config.patience):
            break
    if best_state is not None and config.patience is not None:
        model.load_state_dict(best_state)
    else:
        best_record = result.epochs[-1] if result.epochs else None
    model.eval()
    result.model = model
    if config.uses_dp:
        result.epsilon, result.dp_noise = backend.epsilon(), backend.noise_multiplier
    result.test_loss = evaluate_loss(model, val_ids, config.seq_len)
    if best_record is not None and canary is not None:
        result.final = {k: best_record[k] for k in ("epoch", "exposure", "exposure_method", "rank",
                                                    "log_perplexity")}
    if config.quantize:
        from ssviz.defenses.quantize import quantize_model
        before = {"test_loss": result.test_loss, "exposure": (result.final or {}).get("exposure")}
        quantize_model(model, config.quantize)
        result.test_loss = evaluate_loss(model, val_ids, config.seq_len)
        after = {"test_loss": result.test_loss, "exposure": None}
        if canary is not None:
            result.final = {"epoch": result.final["epoch"] if result.final else None,
                            **canary_exposure(model, canary, config)}
            after["exposure"] = result.final["exposure"]
        result.quantization = {"bits": config.quantize, "before": before, "after": after}
    result.seconds = time.perf_counter() - t0
    return result
