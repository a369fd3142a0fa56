"""One entry point for every model file ssviz reads: ``load_model(path_or_upload)``.

* a ``.safetensors`` / ``.pt`` checkpoint of a character model ->
  :func:`ssviz.models.checkpoint.load_checkpoint`;
* a Hugging Face model directory, or a ``.zip`` of one ->
  :func:`ssviz.models.hf_loading.load_hf` (a torch ``.pt`` file is also a zip:
  it is told apart by the model directory's ``config.json``);
* ``hf:NAME`` -> that model's folder in the local Hugging Face cache (:mod:`ssviz.models.hub`);
* with ``adapter=``, a PEFT LoRA adapter folder merged over the model (:mod:`ssviz.models.adapters`).

Every model comes back on the device and in the precision asked for (:meth:`LanguageModel.place`).

:func:`model_bytes` is the way back: the bytes ``load_model`` reads into the same
model, for shipping a model to workers.

transformers is imported only when a transformer is loaded.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import BinaryIO, Union

from ssviz.errors import CheckpointNotFoundError, SettingsError
from ssviz.messages import clip
from ssviz.models.base import LanguageModel
from ssviz.models.checkpoint import checkpoint_bytes, load_checkpoint
from ssviz.models.hub import is_hub_name, resolve_hub

Source = Union[str, os.PathLike, bytes, BinaryIO]
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


def _zip_of_model(data_or_path) -> bool:
    """A zip that holds a model directory, or at least is not a torch ``.pt`` (whose members end in ``data.pkl``)."""
    from ssviz.models.hf_loading import zip_holds_model
    try:
        with zipfile.ZipFile(io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path) as zf:
            return zip_holds_model(zf) or not any(n.endswith("data.pkl") for n in zf.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        return False


def is_transformer_source(source: Source) -> bool:
    """Whether ``source`` is a model directory or a zip of one (bytes are inspected, not consumed)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return data[:2] == b"PK" and _zip_of_model(data)
    if hasattr(source, "read"):
        return False
    path = Path(source)
    if path.is_dir():
        return True
    if path.suffix.lower() == ".zip":
        return True
    return path.is_file() and path.suffix.lower() not in CHECKPOINT_SUFFIXES and _zip_of_model(path)


def load_model(source: Source, max_bytes: int | None = None, *, device="auto", dtype="auto",
               adapter=None) -> LanguageModel:
    """Load any model ssviz understands from a path, ``hf:NAME`` (the local Hugging Face cache), bytes or a
    file object, refusing anything unsafe, on ``device`` in ``dtype`` (:mod:`ssviz.models.placement`:
    ``auto`` is CUDA in bfloat16 where present, else MPS, else the CPU in float32).

    ``adapter``: a PEFT LoRA adapter folder merged over this base (:mod:`ssviz.models.adapters`).
    ``max_bytes`` caps what a zipped model folder may unpack to (an upload's limit; default the loader's own).
    """
    from ssviz.models.placement import resolve
    dev, dt = resolve(device, dtype)  # an unknown or absent device: refused before reading anything
    limit = {} if max_bytes is None else {"max_bytes": max_bytes}
    if adapter is not None:
        from ssviz.models.adapters import check_adapter
        check_adapter(Path(adapter))
    if is_hub_name(source):
        source = resolve_hub(source)
    if hasattr(source, "read"):
        named = io.BytesIO(source.read())
        named.name = str(getattr(source, "name", None) or "uploaded file")
        if is_transformer_source(named.getvalue()):
            from ssviz.models.hf_loading import load_hf
            return _adapted(load_hf(named, **limit, device=dev, dtype=dt), adapter)
        return _adapted(load_checkpoint(named).place(dev, dt), adapter)
    if not isinstance(source, (bytes, bytearray, memoryview)) and not Path(source).exists():
        raise CheckpointNotFoundError(f"checkpoint not found: {clip(str(source), 200)}")
    if is_transformer_source(source):
        from ssviz.models.hf_loading import load_hf
        return _adapted(load_hf(source, **limit, device=dev, dtype=dt), adapter)
    return _adapted(load_checkpoint(source).place(dev, dt), adapter)


def _adapted(model: LanguageModel, adapter) -> LanguageModel:
    if adapter is None:
        return model
    from ssviz.models.adapters import apply_adapter
    return apply_adapter(model, Path(adapter))


def model_bytes(model: LanguageModel) -> bytes:
    """The bytes :func:`load_model` reads back into ``model``, to ship it to workers: what its ``save`` writes
    (a checkpoint file as is, a model folder such as a transformer's as a zip); a character model without
    ``save`` as its checkpoint. Equal models give equal bytes, so their hash names the model (a resumed
    sharded run finds its shards)."""
    save = getattr(model, "save", None)
    if save is None:
        try:
            return checkpoint_bytes(model)
        except (AttributeError, TypeError):
            raise SettingsError(f"a {type(model).__name__} cannot be saved to send to workers: use a character "
                                "model's checkpoint or a transformer's model folder") from None
    from ssviz.tempfiles import private_dir
    with private_dir("ship") as work:
        where = Path(save(work / "model"))
        if where.is_file():
            return where.read_bytes()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for p in sorted(where.iterdir()):  # fixed names, order and dates: the same model, the same bytes
                zf.writestr(zipfile.ZipInfo(f"model/{p.name}", date_time=(1980, 1, 1, 0, 0, 0)), p.read_bytes())
    return buf.getvalue()
