"""A PEFT LoRA adapter folder applied over a base model, as untrusted input.

Accepted: the folder ``peft``'s ``save_pretrained`` writes, ``adapter_config.json`` and
``adapter_model.safetensors``. Refused in one line: weights only as a pickle
(``adapter_model.bin``), an adapter type other than LoRA, a config that names code
(``auto_map``, an ``auto_mapping`` outside transformers, a Megatron module to import), tensors that do not
match the base model's layers (a missing LoRA matrix, an extra tensor, a wrong shape),
non-finite weights. The adapter config's own ``base_model_name_or_path`` is never
loaded: the base is the model the caller gives (``--checkpoint``), or, in the app, a folder
under the operator's allowed roots (:func:`adapter_base`).

The adapter is merged into the base's weights (``merge_and_unload``): the result is an
ordinary transformer, scored at the base's speed, equal to the adapted model up to float
rounding, shipped to workers as one model folder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ssviz.errors import CheckpointError, CheckpointNotFoundError
from ssviz.messages import clip, summarize

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
PICKLED = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")
MAX_CONFIG_BYTES = 1 << 20
# config fields that only steer how fresh adapters are initialized or trained: loading ignores them
_INIT_ONLY = {"init_lora_weights", "loftq_config", "eva_config", "corda_config", "lora_ga_config", "runtime_config",
              "lora_dropout", "inference_mode", "revision", "peft_version", "base_model_name_or_path",
              "auto_mapping", "megatron_config", "megatron_core", "arrow_config", "velora_config",
              "monteclora_config", "kasa_config"}


def is_adapter_folder(folder) -> bool:
    """Whether ``folder`` is an adapter folder (its ``adapter_config.json``), not a model folder."""
    folder = Path(folder)
    return folder.is_dir() and (folder / CONFIG).is_file()


def check_adapter(folder: Path, name: str | None = None) -> dict:
    """Every refusal decidable from the files alone; returns the parsed ``adapter_config.json``."""
    folder = Path(folder)
    name = clip(name or str(folder), 200)
    if not folder.exists():
        raise CheckpointNotFoundError(f"adapter not found: {name}")
    if not folder.is_dir():
        raise CheckpointError(f"{name}: an adapter is a folder (adapter_config.json and adapter_model.safetensors)")
    path = folder / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{name}: no {CONFIG}: not a PEFT adapter folder (save one with "
                              "peft_model.save_pretrained(folder))")
    if not (folder / WEIGHTS).is_file():
        pickles = [p for p in PICKLED if (folder / p).is_file()]
        if pickles:
            raise CheckpointError(f"{name}: adapter weights only as a pickle ({summarize(pickles, 2)}): refused, a "
                                  "pickle can carry code. Save with save_pretrained(folder, safe_serialization=True)")
        raise CheckpointError(f"{name}: no {WEIGHTS}")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{name}: {CONFIG} is larger than {MAX_CONFIG_BYTES:,} bytes: not an adapter config")
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{name}: {CONFIG} is not readable JSON") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{name}: {CONFIG} must be a JSON object")
    kind = config.get("peft_type")
    if kind != "LORA":
        raise CheckpointError(f"{name}: a {clip(repr(kind), 40)} adapter: only LoRA adapters (peft_type LORA) are "
                              "supported")
    mapping = config.get("auto_mapping")  # peft records the base's class; only a transformers one is plain data
    if "auto_map" in config or (mapping and not (isinstance(mapping, dict) and set(mapping) <= {
            "base_model_class", "parent_library"} and str(mapping.get("parent_library", "")).startswith(
            "transformers.models."))):
        raise CheckpointError(f"{name}: {CONFIG} names custom code (auto_mapping): ssviz never runs code shipped "
                              "with a model")
    if config.get("megatron_config") or config.get("megatron_core") not in (None, "megatron.core"):
        raise CheckpointError(f"{name}: {CONFIG} asks to import a Megatron module: refused")
    if config.get("layer_replication"):
        raise CheckpointError(f"{name}: adapters that replicate layers (layer_replication) are not supported")
    return config


def adapter_base(folder: Path, roots) -> Path:
    """The base model folder an adapter's config names, allowed only inside one of ``roots`` (the app opens
    adapters from the operator's server folders; a path elsewhere, or a Hub name, is refused)."""
    config = check_adapter(Path(folder))
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise CheckpointError(f"{clip(str(folder), 120)}: {CONFIG} names no base model: choose the base model too")
    path = Path(base).expanduser()
    if not path.is_absolute():
        path = Path(folder) / path
    path = path.resolve()
    if not any(path.is_relative_to(Path(r).resolve()) for r in roots) or not path.is_dir():
        raise CheckpointError(f"{clip(str(folder), 120)}: its base model {clip(base, 120)!r} is not a folder under "
                              "the allowed model roots: choose the base model too")
    return path


def apply_adapter(lm, folder, name: str | None = None):
    """``lm`` (a transformer) with the LoRA adapter in ``folder`` merged into its weights: a new model."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ssviz.models.hf import HFLanguageModel
    from ssviz.models.hf_loading import _offline

    folder = Path(folder)
    name = clip(name or str(folder), 200)
    config = check_adapter(folder, name)
    if not isinstance(lm, HFLanguageModel):
        raise CheckpointError(f"{name}: a LoRA adapter applies to a transformer's model folder, not to "
                              f"{clip(type(lm).__name__, 40)} checkpoints")
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    known = {f.name for f in dataclasses.fields(LoraConfig)}
    kwargs = {k: v for k, v in config.items() if k in known and k not in _INIT_ONLY}
    try:
        weights = load_file(str(folder / WEIGHTS), device=str(lm.device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{name}: {WEIGHTS} is not readable safetensors ({_first_line(e)})") from None
    bad = [k for k, t in weights.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{name}: {len(bad)} adapter tensor(s) contain NaN or infinite values: "
                              f"{summarize(bad, 3)}")
    with _offline():
        try:
            lora = LoraConfig(**kwargs, init_lora_weights=True, inference_mode=True)
            model = get_peft_model(lm.model, lora)
            result = set_peft_model_state_dict(model, weights)
        except (ValueError, TypeError, KeyError, RuntimeError, AttributeError, ImportError) as e:
            raise CheckpointError(f"{name}: the adapter does not fit the base model {clip(lm.name, 80)} "
                                  f"({_first_line(e)})") from None
    unexpected = sorted(getattr(result, "unexpected_keys", None) or [])
    missing = sorted(k for k in getattr(result, "missing_keys", None) or [] if "lora_" in k)
    if unexpected or missing:
        what = (f"{len(unexpected)} tensor(s) the base model has no place for: {summarize(unexpected, 3)}"
                if unexpected else f"{len(missing)} LoRA tensor(s) missing: {summarize(missing, 3)}")
        raise CheckpointError(f"{name}: the adapter does not fit the base model {clip(lm.name, 80)}: {what}")
    with torch.no_grad():
        merged = model.merge_and_unload()
    out = HFLanguageModel(merged, lm.tokenizer, name=f"{lm.name} + {name}")
    out.source = out.name
    merged.source = out.name
    out.extra_config = dict(getattr(lm, "extra_config", {}) or {})
    out.adapter = name
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return clip(text[0] if text else type(e).__name__, 160)
