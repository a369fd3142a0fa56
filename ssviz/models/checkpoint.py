"""Reading and writing checkpoints: safetensors (preferred) or a weights-only torch file.

Format (see docs/checkpoints.md): one ``.safetensors`` file whose metadata key
``config`` holds JSON (``arch``, ``vocab``, ``embedding_dim``, ``hidden_size``,
``num_layers``; more keys allowed) and whose tensors are named as plain torch
modules (``embedding.weight``, ``rnn.*``, ``head.weight``, ``head.bias``).
A ``.pt`` file holding ``{"config": {...}, "state_dict": {...}}`` is read with
``torch.load(weights_only=True)``: nothing beyond tensors and plain containers is
ever unpickled, so an uploaded file cannot run code.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import warnings
import zipfile
from pathlib import Path
from typing import BinaryIO, Union

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ssviz.errors import CheckpointError, CheckpointNotFoundError, SsvizError
from ssviz.messages import clip, summarize
from ssviz.models.base import Vocab, check_finite
from ssviz.models.rnn import ARCHS, CharRNN

Source = Union[str, os.PathLike, bytes, BinaryIO]
REQUIRED_KEYS = ("arch", "vocab", "embedding_dim", "hidden_size", "num_layers")
GATES = {"lstm": 4, "gru": 3}
MAX_VOCAB = 65_536
PROBE_LENGTH = 64  # characters read once at load time to check the model's outputs are finite


def _read_bytes(source: Source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "uploaded file"
    if hasattr(source, "read"):
        return source.read(), getattr(source, "name", "uploaded file")
    path = Path(source)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path}")
    return path.read_bytes(), str(path)


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def _json(text, what: str):
    """Parse JSON from a file someone sent: malformed or absurdly nested input is one clear error."""
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as e:
        raise CheckpointError(f"{what} is not valid JSON ({clip(str(e), 100)})") from None
    except RecursionError:
        raise CheckpointError(f"{what} is nested too deeply to be a checkpoint config") from None


def _safetensors_metadata(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    try:
        text = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("safetensors header is not UTF-8 text") from None
    header = _json(text, "safetensors header")
    if not isinstance(header, dict):
        raise CheckpointError("safetensors header must be a JSON object")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError("safetensors metadata must be a JSON object of strings")
    return meta


def expected_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes a checkpoint with this config must hold."""
    v, e, h, n = len(config["vocab"]), config["embedding_dim"], config["hidden_size"], config["num_layers"]
    g = GATES[config["arch"]] * h
    shapes = {"embedding.weight": (v, e), "head.weight": (v, h), "head.bias": (v,)}
    for k in range(n):
        shapes[f"rnn.weight_ih_l{k}"] = (g, e if k == 0 else h)
        shapes[f"rnn.weight_hh_l{k}"] = (g, h)
        shapes[f"rnn.bias_ih_l{k}"] = (g,)
        shapes[f"rnn.bias_hh_l{k}"] = (g,)
    return shapes


def validate_config(config) -> dict:
    if not isinstance(config, dict):
        raise CheckpointError("checkpoint config must be a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise CheckpointError(f"checkpoint config is missing key(s): {', '.join(missing)}")
    if not isinstance(config["arch"], str) or config["arch"] not in ARCHS:
        raise CheckpointError(f"unknown arch {clip(repr(config['arch']), 40)}: expected one of {sorted(ARCHS)}")
    for key in ("embedding_dim", "hidden_size", "num_layers"):
        if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 1:
            raise CheckpointError(f"checkpoint config {key} must be a positive integer, got "
                                  f"{clip(repr(config[key]), 40)}")
    if not isinstance(config["vocab"], list) or not config["vocab"]:
        raise CheckpointError("checkpoint config vocab must be a non-empty list of characters")
    if len(config["vocab"]) > MAX_VOCAB:
        raise CheckpointError(f"checkpoint vocab has {len(config['vocab']):,} entries; a character model has at "
                              f"most {MAX_VOCAB:,}")
    try:
        Vocab(config["vocab"])
    except SsvizError as e:
        raise CheckpointError(f"checkpoint vocab: {e}") from None
    return config


def model_from_state(config: dict, state_dict: dict) -> CharRNN:
    """Build a model from a config and tensors, naming any missing or misshapen tensor."""
    config = validate_config(config)
    expected = expected_shapes(config)
    missing = [k for k in expected if k not in state_dict]
    if missing:
        raise CheckpointError(f"checkpoint is missing tensor(s) ({len(missing)}): {summarize(missing)}")
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        raise CheckpointError(f"checkpoint has unexpected tensor(s) ({len(unexpected)}): {summarize(unexpected)}")
    for name, shape in expected.items():
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"checkpoint entry {name} is not a tensor")
        if tuple(t.shape) != shape:
            raise CheckpointError(f"tensor {name} has shape {tuple(t.shape)}, expected {shape} from the config")
        if not t.is_floating_point():
            raise CheckpointError(f"tensor {name} has dtype {t.dtype}, expected floating point")
        if not torch.isfinite(t).all():
            raise CheckpointError(f"tensor {name} contains NaN or infinite values")
    model = CharRNN(config["vocab"], arch=config["arch"], embedding_dim=config["embedding_dim"],
                    hidden_size=config["hidden_size"], num_layers=config["num_layers"])
    model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    model.extra_config = {k: v for k, v in config.items() if k not in REQUIRED_KEYS}
    model.eval()
    _probe(model)
    return model


def _probe(model: CharRNN) -> None:
    """Refuse a model whose outputs are not finite (finite but huge weights overflow), at load time."""
    ids = torch.arange(min(len(model.vocab), PROBE_LENGTH))[None]
    with torch.inference_mode():
        log_probs, _ = model.run(ids, model.initial_state(1))
    try:
        check_finite(log_probs, model)
    except SsvizError:
        raise CheckpointError("the model's outputs are NaN or infinite (its weights overflow): "
                              "the checkpoint is unusable") from None


def load_checkpoint(source: Source) -> CharRNN:
    """Load a checkpoint from a path, bytes or file object, refusing anything unsafe."""
    data, name = _read_bytes(source)
    if _is_safetensors(data):
        try:
            meta = _safetensors_metadata(data)
            if "config" not in meta:
                raise CheckpointError("safetensors metadata has no 'config' key")
            config = _json(meta["config"], "metadata 'config'")
            try:
                tensors = st_load(data)
            except Exception as e:  # safetensors raises its own error types
                raise CheckpointError(f"corrupt safetensors file ({clip(str(e), 120)})") from None
            return _named(model_from_state(config, tensors), name)
        except CheckpointError as e:
            raise CheckpointError(f"{clip(name, 200)}: {e}") from None
    if data[:2] == b"PK" or data[:1] == b"\x80":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's warnings about the format would precede our one line
                obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except RecursionError:
            raise CheckpointError(f"{name}: nested too deeply to be a checkpoint") from None
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "disallowed content"
            raise CheckpointError(
                f"{name}: refused to load: the file contains Python objects other than tensors "
                f"(possibly code). Only weights are accepted. ({first[:160]})") from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
            raise CheckpointError(f"{name}: not a readable torch checkpoint ({str(e)[:160]})") from None
        if not isinstance(obj, dict) or "config" not in obj or "state_dict" not in obj:
            raise CheckpointError(f"{name}: a .pt checkpoint must hold a dict with 'config' and 'state_dict'")
        try:
            config = obj["config"]
            if isinstance(config, str):
                config = _json(config, "config")
            if not isinstance(obj["state_dict"], dict):
                raise CheckpointError("'state_dict' must be a dict of tensors")
            return _named(model_from_state(config, obj["state_dict"]), name)
        except CheckpointError as e:
            raise CheckpointError(f"{clip(name, 200)}: {e}") from None
    raise CheckpointError(f"{name}: not a checkpoint (expected a .safetensors file or a torch .pt file)")


def _named(model: CharRNN, name: str) -> CharRNN:
    """Remember where the model came from, so later errors can name it."""
    model.source = name
    return model


def checkpoint_bytes(model: CharRNN, extra: dict | None = None) -> bytes:
    """The safetensors bytes of a model; ``extra`` adds keys to the config (e.g. training metadata)."""
    config = dict(model.config)
    config.update(getattr(model, "extra_config", {}) or {})
    config.update(extra or {})
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    return st_save(tensors, metadata={"config": json.dumps(config)})


def save_checkpoint(model: CharRNN, path: str | os.PathLike, extra: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from ssviz.tempfiles import atomic_write
    return atomic_write(path, checkpoint_bytes(model, extra))  # exclusive temp file, renamed into place


CharRNN.writer = save_checkpoint  # CharRNN.save writes this format
