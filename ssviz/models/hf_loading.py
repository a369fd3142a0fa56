"""Loading Hugging Face model directories, or a .zip of one, as untrusted input.

Accepted: the layout ``save_pretrained`` writes (``config.json``, weights in
``model.safetensors`` or a sharded ``model.safetensors.index.json``, tokenizer
files such as ``tokenizer.json``), given as a folder, a ``.zip`` path, or a zip's
bytes (the app's upload). Everything is checked before transformers reads a
byte, so a refusal is one clear :class:`CheckpointError` line and nothing runs:

* weights only as pickles (``pytorch_model.bin``, ``*.pt``...): a pickle can
  carry code, and loading is forced to safetensors (``use_safetensors=True``);
* a config or tokenizer config asking for custom code (``auto_map``), a model
  type transformers does not know as a causal LM, a quantization config;
* no tokenizer files; missing or misshapen tensors (transformers would
  otherwise fill them with random values and only warn); non-finite weights;
* zip members that escape the extraction folder (``../``, absolute paths,
  drive letters), symbolic links or devices, duplicate names, more than
  :data:`MAX_MEMBERS` members, or unpacking beyond ``max_bytes`` (counted while
  writing, not trusted from the zip's header).

Loading is always ``local_files_only=True`` with ``trust_remote_code=False``,
and the Hub client is held offline (``HF_HUB_OFFLINE=1``) for its duration.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import threading
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Union

import torch

from ssviz.archives import member_parts
from ssviz.errors import CheckpointError, CheckpointNotFoundError, SsvizError, clip, summarize
from ssviz.models.base import check_finite

Source = Union[str, os.PathLike, bytes, BinaryIO]

MAX_UNZIPPED = 4 << 30       # bytes a zip may unpack to (a few hundred MB is a large ssviz model)
MAX_MEMBERS = 10_000
MAX_CONFIG_BYTES = 1 << 20   # config.json and tokenizer_config.json are a few KB
PROBE_TEXT = "The quick brown fox jumps over the lazy dog 0123456789."
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".h5", ".msgpack")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
IGNORED_MEMBERS = ("__MACOSX/",)

_load_lock = threading.Lock()


# --- what a path or upload is ------------------------------------------------------------
def _read_source(source: Source) -> tuple[bytes | None, Path | None, str]:
    """``(zip bytes, None, name)`` for bytes or a file object, ``(None, path, name)`` for a path."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None, "uploaded file"
    if hasattr(source, "read"):
        return source.read(), None, str(getattr(source, "name", None) or "uploaded file")
    path = Path(source)
    if not path.exists():
        raise CheckpointNotFoundError(f"model not found: {clip(str(path), 200)}")
    return None, path, str(path)


def _open_zip(data: bytes | None, path: Path | None, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data) if data is not None else path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{clip(name, 200)}: not a readable .zip archive ({clip(str(e), 80)})") from None


def zip_holds_model(zf: zipfile.ZipFile) -> bool:
    """Whether a zip holds a model directory (``config.json`` at its top or in one folder), not a torch ``.pt``."""
    for n in zf.namelist():
        parts = n.replace("\\", "/").strip("/").split("/")
        if parts[-1] == "config.json" and len(parts) <= 2 and not n.startswith(IGNORED_MEMBERS):
            return True
    return False


# --- zips -----------------------------------------------------------------------------------
def _member_path(name: str) -> PurePosixPath | None:
    """The relative path a member may be written to; None for members to skip; refuses escaping names."""
    if name.startswith(IGNORED_MEMBERS) or name.rstrip("/").endswith(".DS_Store"):
        return None
    parts = member_parts(name)
    if parts is None:
        raise CheckpointError(f"zip member {clip(name, 80)!r} points outside the folder it is unpacked to")
    return PurePosixPath(*parts)


def extract_zip(zf: zipfile.ZipFile, dest: Path, name: str, max_bytes: int = MAX_UNZIPPED) -> Path:
    """Unpack ``zf`` into the empty folder ``dest`` refusing anything unsafe; return the model folder in it."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"{clip(name, 200)}: the zip has {len(infos):,} members, more than the limit "
                              f"of {MAX_MEMBERS:,} for a model directory")
    declared = sum(i.file_size for i in infos)
    if declared > max_bytes:
        raise CheckpointError(f"{clip(name, 200)}: the zip unpacks to {declared:,} bytes, more than the limit "
                              f"of {max_bytes:,}")
    root = dest.resolve()
    written = 0
    seen: set[PurePosixPath] = set()
    for info in infos:
        rel = _member_path(info.filename)
        if rel is None:
            continue
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise CheckpointError(f"{clip(name, 200)}: zip member {clip(info.filename, 80)!r} is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise CheckpointError(f"{clip(name, 200)}: zip member {clip(info.filename, 80)!r} is not a regular file")
        target = dest.joinpath(*rel.parts)
        if not target.resolve().is_relative_to(root):
            raise CheckpointError(f"zip member {clip(info.filename, 80)!r} points outside the folder it is "
                                  "unpacked to")
        if info.is_dir():
            target.mkdir(mode=0o700, parents=True, exist_ok=True)
            continue
        if rel in seen:
            raise CheckpointError(f"{clip(name, 200)}: zip member {clip(info.filename, 80)!r} appears twice")
        seen.add(rel)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(root):
            raise CheckpointError(f"zip member {clip(info.filename, 80)!r} points outside the folder it is "
                                  "unpacked to")
        # O_EXCL | O_NOFOLLOW: never write through a link or over a file already written
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as out, zf.open(info) as src:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                written += len(block)
                if written > max_bytes:
                    raise CheckpointError(f"{clip(name, 200)}: the zip unpacks to more than the limit of "
                                          f"{max_bytes:,} bytes")
                out.write(block)
    return _model_folder(dest, name)


def _model_folder(dest: Path, name: str) -> Path:
    if (dest / "config.json").is_file():
        return dest
    subs = [p for p in dest.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
    if len(subs) == 1 and (subs[0] / "config.json").is_file():
        return subs[0]
    raise CheckpointError(f"{clip(name, 200)}: the zip holds no config.json (at its top or in one folder): "
                          "not a Hugging Face model directory")


# --- the directory's files ------------------------------------------------------------------
def _read_json(path: Path, what: str, limit: int | None = MAX_CONFIG_BYTES):
    try:
        size = path.stat().st_size
        if limit is not None and size > limit:
            raise CheckpointError(f"{what} is {size:,} bytes, more than {limit:,}: not a model config")
        text = path.read_text(encoding="utf-8")
        return json.loads(text)
    except UnicodeDecodeError:
        raise CheckpointError(f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{what} is not valid JSON ({clip(str(e), 100)})") from None
    except RecursionError:
        raise CheckpointError(f"{what} is nested too deeply to be a model config") from None
    except OSError as e:
        raise CheckpointError(f"{what} cannot be read ({clip(e.strerror or str(e), 80)})") from None


def _asks_for_code(obj, depth: int = 0) -> bool:
    """Whether a config, or a config nested in it (``text_config``...), names custom code."""
    if depth > 8 or not isinstance(obj, dict):
        return False
    if "auto_map" in obj or "custom_pipelines" in obj:
        return True
    return any(_asks_for_code(v, depth + 1) for v in obj.values() if isinstance(v, dict))


def _pickles(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(PICKLE_SUFFIXES)
                  and p.name not in ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth"))


def check_directory(folder: Path, name: str | None = None) -> dict:
    """Every refusal that can be decided from the files alone; returns the parsed ``config.json``."""
    name = clip(name or str(folder), 200)
    if not folder.is_dir():
        raise CheckpointError(f"{name}: not a folder")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{name}: no config.json: not a Hugging Face model directory (save one with "
                              "model.save_pretrained(folder) and tokenizer.save_pretrained(folder))")
    config = _read_json(config_path, f"{name}: config.json")
    if not isinstance(config, dict):
        raise CheckpointError(f"{name}: config.json must be a JSON object")
    tok_config_path = folder / "tokenizer_config.json"
    tok_config = _read_json(tok_config_path, f"{name}: tokenizer_config.json") if tok_config_path.is_file() else {}
    for what, cfg in (("config.json", config), ("tokenizer_config.json", tok_config)):
        if _asks_for_code(cfg):
            raise CheckpointError(f"{name}: {what} asks for custom code (auto_map): ssviz never runs code "
                                  "shipped with a model; use an architecture transformers provides")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING_NAMES:
        raise CheckpointError(f"{name}: config.json model_type {clip(repr(model_type), 40)} is not a model type "
                              "transformers knows")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise CheckpointError(f"{name}: model type {model_type!r} is not a causal (next-token) language model")
    if config.get("quantization_config"):
        raise CheckpointError(f"{name}: quantized models are not supported (config.json has quantization_config)")
    _check_weights(folder, name)
    if not any((folder / f).is_file() for f in TOKENIZER_FILES[:3]):
        raise CheckpointError(f"{name}: no tokenizer (tokenizer.json): save it beside the model with "
                              "tokenizer.save_pretrained(folder)")
    return config


def _check_weights(folder: Path, name: str) -> None:
    index = folder / SAFE_INDEX
    if index.is_file():
        spec = _read_json(index, f"{name}: {SAFE_INDEX}", limit=64 << 20)
        weight_map = spec.get("weight_map") if isinstance(spec, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{name}: {SAFE_INDEX} has no weight_map")
        shards = set()
        for shard in weight_map.values():
            if (not isinstance(shard, str) or "/" in shard or "\\" in shard or shard.startswith(".")
                    or not shard.endswith(".safetensors")):
                raise CheckpointError(f"{name}: {SAFE_INDEX} names a shard that is not a .safetensors file in the "
                                      f"folder: {clip(repr(shard), 60)}")
            shards.add(shard)
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise CheckpointError(f"{name}: {len(missing)} weight shard(s) listed in {SAFE_INDEX} are missing: "
                                  f"{summarize(missing, 3)}")
        return
    if (folder / SAFE_WEIGHTS).is_file():
        return
    pickles = _pickles(folder)
    if pickles:
        raise CheckpointError(f"{name}: weights only as pickles ({summarize(pickles, 3)}): refused, a pickle can "
                              "carry code. Save with model.save_pretrained(folder), which writes model.safetensors")
    raise CheckpointError(f"{name}: no weights (model.safetensors or {SAFE_INDEX})")


# --- loading -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """The Hub client offline, progress bars and library warnings silenced, for one load at a time."""
    import huggingface_hub.constants as hub_constants
    import transformers.utils.logging as tlog
    with _load_lock:
        saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        saved_flag = hub_constants.HF_HUB_OFFLINE
        bars = tlog.is_progress_bar_enabled()
        verbosity = tlog.get_verbosity()
        os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
        hub_constants.HF_HUB_OFFLINE = True
        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            hub_constants.HF_HUB_OFFLINE = saved_flag
            tlog.set_verbosity(verbosity)
            if bars:
                tlog.enable_progress_bar()


_LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError, AttributeError, IndexError,
                json.JSONDecodeError, RecursionError, zlib.error)


def load_directory(folder: Path, name: str | None = None):
    """A checked model directory as an :class:`~ssviz.models.hf.HFLanguageModel`."""
    name = clip(name or str(folder), 200)
    check_directory(folder, name)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ssviz.models.hf import HFLanguageModel
    with _offline():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except _LOAD_ERRORS as e:
            raise CheckpointError(f"{name}: the tokenizer cannot be loaded ({_first_line(e)})") from None
        try:
            model, info = AutoModelForCausalLM.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False, use_safetensors=True,
                dtype=torch.float32, output_loading_info=True)
        except _LOAD_ERRORS as e:
            raise CheckpointError(f"{name}: the model cannot be loaded ({_first_line(e)})") from None
        except Exception as e:  # safetensors' own error types
            if type(e).__name__ == "SafetensorError":
                raise CheckpointError(f"{name}: corrupt safetensors weights ({_first_line(e)})") from None
            raise
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(f"{name}: the weights lack {len(missing)} tensor(s) the config needs: "
                              f"{summarize(missing, 3)}")
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or [])
    if mismatched:
        raise CheckpointError(f"{name}: {len(mismatched)} tensor(s) have shapes other than the config says: "
                              f"{summarize(mismatched, 3)}")
    bad = [n for n, p in model.state_dict().items() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:
        raise CheckpointError(f"{name}: {len(bad)} tensor(s) contain NaN or infinite values: {summarize(bad, 3)}")
    lm = HFLanguageModel(model, tokenizer, name=name)
    if len(tokenizer) > len(lm.vocab):
        raise CheckpointError(f"{name}: the tokenizer has {len(tokenizer):,} tokens but the model only "
                              f"{len(lm.vocab):,} outputs")
    model.source = name  # so errors from check_finite name the file
    lm.source = name
    from ssviz.models.hf import read_training
    lm.extra_config = read_training(folder)  # the canary and training record, as a character checkpoint's config
    _probe(lm, name)
    return lm


def _probe(lm, name: str) -> None:
    """Refuse a model whose outputs are not finite (e.g. finite but huge weights), at load time."""
    ids = lm.vocab.tokens(PROBE_TEXT)[:32] or [0]
    ids = torch.tensor([[min(i, len(lm.vocab) - 1) for i in ids]])
    with torch.inference_mode():
        log_probs, _ = lm.run(ids, lm.initial_state(1))
    try:
        check_finite(log_probs, lm)
    except SsvizError:
        raise CheckpointError(f"{name}: the model's outputs are NaN or infinite (its weights overflow): "
                              "the model is unusable") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return clip(text[0] if text else type(e).__name__, 160)


def load_hf(source: Source, max_bytes: int = MAX_UNZIPPED):
    """Load a model directory, a ``.zip`` of one (path, bytes or file object), refusing anything unsafe."""
    data, path, name = _read_source(source)
    if path is not None and path.is_dir():
        return load_directory(path, name)
    from ssviz.tempfiles import private_dir
    with _open_zip(data, path, name) as zf, private_dir("hfmodel") as work:
        dest = work / "model"
        dest.mkdir(mode=0o700)
        try:
            folder = extract_zip(zf, dest, name, max_bytes)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error) as e:
            raise CheckpointError(f"{clip(name, 200)}: corrupt zip archive ({_first_line(e)})") from None
        except RuntimeError as e:  # encrypted members
            raise CheckpointError(f"{clip(name, 200)}: unreadable zip member ({_first_line(e)})") from None
        except FileExistsError:
            raise CheckpointError(f"{clip(name, 200)}: the zip holds the same file twice") from None
        except OSError as e:  # names too long or too deep for the file system, a full disk
            raise CheckpointError(f"{clip(name, 200)}: the zip cannot be unpacked ({clip(e.strerror or str(e), 80)})"
                                  ) from None
        return load_directory(folder, name)
