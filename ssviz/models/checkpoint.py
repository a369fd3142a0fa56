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
import zipfile
from pathlib import Path
from typing import BinaryIO, Union

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ssviz.errors import CheckpointError, SsvizError
from ssviz.models.base import Vocab
from ssviz.models.rnn import ARCHS, CharRNN

Source = Union[str, os.PathLike, bytes, BinaryIO]
REQUIRED_KEYS = ("arch", "vocab", "embedding_dim", "hidden_size", "num_layers")
GATES = {"lstm": 4, "gru": 3}


def _read_bytes(source: Source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "uploaded file"
    if hasattr(source, "read"):
        return source.read(), getattr(source, "name", "uploaded file")
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path.read_bytes(), str(path)


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def _safetensors_metadata(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"safetensors header is not valid JSON: {e}") from None
    return header.get("__metadata__") or {}


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
    if config["arch"] not in ARCHS:
        raise CheckpointError(f"unknown arch {config['arch']!r}: expected one of {sorted(ARCHS)}")
    for key in ("embedding_dim", "hidden_size", "num_layers"):
        if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 1:
            raise CheckpointError(f"checkpoint config {key} must be a positive integer, got {config[key]!r}")
    if not isinstance(config["vocab"], list) or not config["vocab"]:
        raise CheckpointError("checkpoint config vocab must be a non-empty list of characters")
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
        raise CheckpointError(f"checkpoint is missing tensor(s): {', '.join(missing)}")
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        raise CheckpointError(f"checkpoint has unexpected tensor(s): {', '.join(unexpected[:5])}")
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
    return model.eval()


def load_checkpoint(source: Source) -> CharRNN:
    """Load a checkpoint from a path, bytes or file object, refusing anything unsafe."""
    data, name = _read_bytes(source)
    if _is_safetensors(data):
        meta = _safetensors_metadata(data)
        if "config" not in meta:
            raise CheckpointError(f"{name}: safetensors metadata has no 'config' key")
        try:
            config = json.loads(meta["config"])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{name}: metadata 'config' is not valid JSON ({e})") from None
        try:
            tensors = st_load(data)
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{name}: corrupt safetensors file ({e})") from None
        return model_from_state(config, tensors)
    if data[:2] == b"PK" or data[:1] == b"\x80":
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else "disallowed content"
            raise CheckpointError(
                f"{name}: refused to load: the file contains Python objects other than tensors "
                f"(possibly code). Only weights are accepted. ({first[:160]})") from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
            raise CheckpointError(f"{name}: not a readable torch checkpoint ({str(e)[:160]})") from None
        if not isinstance(obj, dict) or "config" not in obj or "state_dict" not in obj:
            raise CheckpointError(f"{name}: a .pt checkpoint must hold a dict with 'config' and 'state_dict'")
        config = obj["config"]
        if isinstance(config, str):
            try:
                config = json.loads(config)
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{name}: config is not valid JSON ({e})") from None
        if not isinstance(obj["state_dict"], dict):
            raise CheckpointError(f"{name}: 'state_dict' must be a dict of tensors")
        return model_from_state(config, obj["state_dict"])
    raise CheckpointError(f"{name}: not a checkpoint (expected a .safetensors file or a torch .pt file)")


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
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(checkpoint_bytes(model, extra))
    os.replace(tmp, path)
    return path
