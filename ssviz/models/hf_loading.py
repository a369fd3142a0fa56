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
* a config whose sizes (layers, hidden, heads, vocabulary, positions...) are
  not whole numbers of at least 1 or exceed what the weights' safetensors
  headers hold, or that describes more parameters than they hold: checked from
  the headers, and by building the model on the meta device, before anything
  is allocated;
* a tokenizer that cannot be read or fails on plain text (a Rust panic included);
* no tokenizer files; missing or misshapen tensors (transformers would
  otherwise fill them with random values and only warn); non-finite weights;
* zip members that escape the extraction folder (``../``, absolute paths,
  drive letters), symbolic links or devices, duplicate names, more than
  :data:`MAX_MEMBERS` members, several model folders, or unpacking beyond
  ``max_bytes`` (counted while writing, not trusted from the zip's header).
  Only the files a model folder needs are unpacked, each bounded (weights by
  their own header's sizes): anything beside them is never decompressed.

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
from ssviz.errors import CheckpointError, CheckpointNotFoundError, SsvizError
from ssviz.messages import clip, summarize
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
MAX_TOKENIZER_BYTES = 64 << 20  # tokenizer.json of a 256k vocabulary is ~20 MB
MAX_HEADER_BYTES = 100 << 20    # the safetensors library's own limit on a header
# the files a model folder needs, the only ones unpacked from a zip; weights are bounded by their headers
FOLDER_FILES = {"config.json": MAX_CONFIG_BYTES, "generation_config.json": MAX_CONFIG_BYTES,
                "tokenizer_config.json": MAX_CONFIG_BYTES, "special_tokens_map.json": MAX_CONFIG_BYTES,
                "added_tokens.json": MAX_TOKENIZER_BYTES, "tokenizer.json": MAX_TOKENIZER_BYTES,
                "tokenizer.model": MAX_TOKENIZER_BYTES, "vocab.json": MAX_TOKENIZER_BYTES,
                "merges.txt": MAX_TOKENIZER_BYTES, "vocab.txt": MAX_TOKENIZER_BYTES,
                "spiece.model": MAX_TOKENIZER_BYTES, "sentencepiece.bpe.model": MAX_TOKENIZER_BYTES,
                "chat_template.jinja": MAX_CONFIG_BYTES,
                "chat_template.json": MAX_CONFIG_BYTES, "ssviz_training.json": 4 << 20,
                SAFE_INDEX: 64 << 20}
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "U16": 2,
               "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1,
               "F6_E3M2": 1, "C64": 8}

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


def _model_prefix(rels: list[PurePosixPath], name: str) -> PurePosixPath:
    """The folder inside the zip that holds the model: its top, or its one folder with a ``config.json``."""
    if PurePosixPath("config.json") in rels:
        return PurePosixPath()
    folders = sorted({r.parent for r in rels if r.name == "config.json" and len(r.parts) == 2}, key=str)
    if len(folders) > 1:
        raise CheckpointError(f"{clip(name, 200)}: the zip holds {len(folders)} model folders "
                              f"({summarize([f'{f}/' for f in folders], 3)}): zip one model folder")
    if not folders:
        raise CheckpointError(f"{clip(name, 200)}: the zip holds no config.json (at its top or in one folder): "
                              "not a Hugging Face model directory")
    return folders[0]


def _needed_limit(file_name: str) -> int | None:
    """The most bytes a member of the model folder may hold; None for a file the folder does not need."""
    if file_name in FOLDER_FILES:
        return FOLDER_FILES[file_name]
    if file_name.endswith(".safetensors") and not file_name.startswith("."):
        return -1  # bounded by its own header
    return None


def _zip_weights_size(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> int:
    """The bytes a ``.safetensors`` member must hold, read from its header (nothing else is decompressed)."""
    with zf.open(info) as src:
        head = src.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{clip(name, 200)}: {clip(info.filename, 80)} is too short to be safetensors")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES or n > info.file_size:
            raise CheckpointError(f"{clip(name, 200)}: {clip(info.filename, 80)} has a header of {n:,} bytes: "
                                  "not safetensors")
        header = src.read(n)
    _, data_size = parse_safetensors_header(header, f"{clip(name, 200)}: {clip(info.filename, 80)}")
    return 8 + n + data_size


def extract_zip(zf: zipfile.ZipFile, dest: Path, name: str, max_bytes: int = MAX_UNZIPPED) -> Path:
    """Unpack the model folder of ``zf`` into the empty folder ``dest``; return the model folder in it.

    Only the files a model folder needs are written (config, tokenizer files, weights,
    ``ssviz_training.json``): anything beside them, however large, is never decompressed.
    Each file is bounded: JSON and tokenizer files by small limits, weights by the sizes
    their safetensors header declares, and all of them together by ``max_bytes``;
    bytes are counted while writing, not trusted from the zip's directory.
    """
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"{clip(name, 200)}: the zip has {len(infos):,} members, more than the limit "
                              f"of {MAX_MEMBERS:,} for a model directory")
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
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
        if info.is_dir():
            continue
        if rel in seen:
            raise CheckpointError(f"{clip(name, 200)}: zip member {clip(info.filename, 80)!r} appears twice")
        seen.add(rel)
        members.append((info, rel))
    prefix = _model_prefix([rel for _, rel in members], name)
    depth = len(prefix.parts) + 1
    inside = [(i, r) for i, r in members if len(r.parts) == depth and r.parent == prefix]
    if not any(r.name.endswith(".safetensors") for _, r in inside):
        pickles = sorted(r.name for _, r in inside if r.name.lower().endswith(PICKLE_SUFFIXES))
        if pickles:
            raise CheckpointError(f"{clip(name, 200)}: weights only as pickles ({summarize(pickles, 3)}): refused, a "
                                  "pickle can carry code. Save with model.save_pretrained(folder), which writes "
                                  "model.safetensors")
    plan: list[tuple[zipfile.ZipInfo, PurePosixPath, int]] = []
    for info, rel in inside:
        limit = _needed_limit(rel.name)
        if limit is None:
            continue
        if limit < 0:
            limit = _zip_weights_size(zf, info, name)
            if info.file_size != limit:
                raise CheckpointError(f"{clip(name, 200)}: {clip(info.filename, 80)} holds {info.file_size:,} bytes "
                                      f"but its header declares {limit:,}: corrupt safetensors weights")
        elif info.file_size > limit:
            raise CheckpointError(f"{clip(name, 200)}: {clip(info.filename, 80)} is {info.file_size:,} bytes, more "
                                  f"than the limit of {limit:,} for that file")
        plan.append((info, rel, limit))
    declared = sum(info.file_size for info, _, _ in plan)
    if declared > max_bytes:
        raise CheckpointError(f"{clip(name, 200)}: the model unpacks to {declared:,} bytes, more than the limit "
                              f"of {max_bytes:,}")
    root = dest.resolve()
    folder = dest.joinpath(*prefix.parts)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not folder.resolve().is_relative_to(root):
        raise CheckpointError(f"{clip(name, 200)}: the model folder points outside the folder it is unpacked to")
    written = 0
    for info, rel, limit in plan:
        target = folder / rel.name
        # O_EXCL | O_NOFOLLOW: never write through a link or over a file already written
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        mine = 0
        with os.fdopen(fd, "wb") as out, zf.open(info) as src:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                mine += len(block)
                written += len(block)
                if mine > limit or written > max_bytes:
                    raise CheckpointError(f"{clip(name, 200)}: {clip(info.filename, 80)} unpacks to more than its "
                                          f"limit of {min(limit, max_bytes):,} bytes")
                out.write(block)
    return folder


# --- weights' headers and the config's sizes, read before anything is built ------------------
def parse_safetensors_header(header: bytes, what: str) -> tuple[dict[str, tuple[str, tuple[int, ...]]], int]:
    """``({tensor: (dtype, shape)}, data bytes)`` from a safetensors header, every field checked."""
    try:
        spec = json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{what}: the safetensors header is not valid JSON: corrupt weights") from None
    if not isinstance(spec, dict):
        raise CheckpointError(f"{what}: the safetensors header is not a JSON object: corrupt weights")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    end = 0
    for key, t in spec.items():
        if key == "__metadata__":
            continue
        ok = isinstance(t, dict) and t.get("dtype") in DTYPE_BYTES and isinstance(t.get("shape"), list) \
            and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2 \
            and all(type(v) is int and v >= 0 for v in t["shape"] + t["data_offsets"])
        if not ok:
            raise CheckpointError(f"{what}: tensor {clip(key, 60)!r} has a malformed entry in the safetensors "
                                  "header: corrupt weights")
        numel = 1
        for v in t["shape"]:
            numel *= v
        lo, hi = t["data_offsets"]
        if hi - lo != numel * DTYPE_BYTES[t["dtype"]] and t["dtype"] not in ("F4", "F6_E2M3", "F6_E3M2"):
            raise CheckpointError(f"{what}: tensor {clip(key, 60)!r} declares {hi - lo:,} bytes for shape "
                                  f"{t['shape']}: corrupt weights")
        tensors[key] = (t["dtype"], tuple(t["shape"]))
        end = max(end, hi)
    return tensors, end


def read_weight_headers(folder: Path, name: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor's dtype and shape from the weight files' headers (no tensor is read)."""
    index = folder / SAFE_INDEX
    if index.is_file():
        files = sorted(set(_read_json(index, f"{name}: {SAFE_INDEX}", limit=64 << 20)["weight_map"].values()))
    else:
        files = [SAFE_WEIGHTS]
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for f in files:
        what = f"{name}: {f}"
        try:
            with open(folder / f, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                head = fh.read(8)
                n = int.from_bytes(head, "little") if len(head) == 8 else -1
                if n < 0 or n > MAX_HEADER_BYTES or 8 + n > size:
                    raise CheckpointError(f"{what}: not a safetensors file (no valid header): corrupt weights")
                tensors, data = parse_safetensors_header(fh.read(n), what)
        except OSError as e:
            raise CheckpointError(f"{what} cannot be read ({clip(e.strerror or str(e), 80)})") from None
        if 8 + n + data != size:
            raise CheckpointError(f"{what} holds {size:,} bytes but its header declares {8 + n + data:,}: "
                                  "corrupt weights")
        out.update(tensors)
    return out


LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers")
SIZE_FIELDS = ("hidden_size", "n_embd", "d_model", "num_attention_heads", "n_head", "num_key_value_heads",
               "vocab_size", "max_position_embeddings", "n_positions", "n_ctx", "intermediate_size", "n_inner",
               "head_dim", "num_local_experts", "num_experts")
OPTIONAL_FIELDS = ("n_inner", "head_dim", "num_key_value_heads", "num_local_experts", "num_experts")
MAX_POSITIONS = 1 << 20  # rotary models hold no position table: positions are bounded outright
MAX_BUFFER_ELEMENTS = 1 << 26


def check_config_sizes(config: dict, tensors: dict, name: str) -> None:
    """Refuse size fields of the wrong type, zero, or larger than anything the weights hold.

    Layers are bounded by the layer indices in the tensor names, every other size by
    the largest tensor dimension (positions, which rotary models hold no table for, by
    :data:`MAX_POSITIONS` as well); so building the model costs what its weights do.
    """
    layer_ids = set()
    for key in tensors:
        for part in key.split("."):
            if part.isdigit() and len(part) < 9:
                layer_ids.add(int(part))
    layers = max(layer_ids) + 1 if layer_ids else 1
    largest = max((max(shape) for _, shape in tensors.values() if shape), default=1)
    configs = [("config.json", config)] + [(f"config.json {k}", v) for k, v in config.items()
                                           if k.endswith("_config") and isinstance(v, dict)
                                           and k != "quantization_config"]
    for where, cfg in configs:
        for field in LAYER_FIELDS + SIZE_FIELDS:
            if field not in cfg or (cfg[field] is None and field in OPTIONAL_FIELDS):
                continue
            v = cfg[field]
            if type(v) is not int or v < 1:
                raise CheckpointError(f"{name}: {where} {field} is {clip(json.dumps(v), 40)}: it must be a whole "
                                      "number of at least 1")
            bound, holds = (layers, f"{layers:,} layer(s)") if field in LAYER_FIELDS else \
                (max(largest, MAX_POSITIONS) if field in ("max_position_embeddings", "n_positions", "n_ctx")
                 else largest, f"no dimension above {largest:,}")
            if v > bound:
                raise CheckpointError(f"{name}: {where} {field} is {v:,} but the weights hold {holds}: the config "
                                      "does not describe these weights")


def _check_buildable(folder: Path, tensors: dict, name: str) -> None:
    """Build the model on the meta device (no memory) and refuse it if it needs more than the weights hold."""
    from transformers import AutoConfig, AutoModelForCausalLM
    try:
        cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        with torch.device("meta"):
            meta = AutoModelForCausalLM.from_config(cfg, trust_remote_code=False)
    except Exception as e:  # any error here is the config's: transformers raises many kinds
        raise CheckpointError(f"{name}: config.json does not describe a model transformers can build "
                              f"({_first_line(e)})") from None
    need = sum(p.numel() for p in meta.parameters())
    held = sum(_numel(shape) for _, shape in tensors.values())
    if need > held:
        missing = sorted(set(dict(meta.named_parameters())) - set(tensors))
        if missing:
            raise CheckpointError(f"{name}: the weights lack {len(missing)} tensor(s) the config needs: "
                                  f"{summarize(missing, 3)}")
        raise CheckpointError(f"{name}: config.json describes a model of {need:,} parameters but the weights hold "
                              f"{held:,}: the config does not describe these weights")
    extra = sum(b.numel() for b in meta.buffers())
    if extra > max(held, MAX_BUFFER_ELEMENTS):
        raise CheckpointError(f"{name}: config.json asks for {extra:,} buffer elements beside {held:,} weights: "
                              "the config does not describe these weights")


def _numel(shape) -> int:
    n = 1
    for v in shape:
        n *= v
    return n


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
    check_config_sizes(config, read_weight_headers(folder, name), name)
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


def load_directory(folder: Path, name: str | None = None, device="cpu", dtype="float32"):
    """A checked model directory as an :class:`~ssviz.models.hf.HFLanguageModel` on ``device`` in ``dtype``.

    Refused first, in one line, when its weights plus a batch cannot fit the device's free memory
    (:func:`ssviz.models.sizing.check_fits`); the weights are read memory-mapped in ``dtype`` and, on a GPU,
    placed there as they are read, never held twice."""
    from ssviz.models.placement import resolve
    from ssviz.models.sizing import check_fits
    name = clip(name or str(folder), 200)
    device, dtype = resolve(device, dtype)
    weightless = not any((folder / f).is_file() for f in (SAFE_WEIGHTS, SAFE_INDEX))
    if weightless:  # sized from config.json alone (a refusal about the weights follows if it fits)
        check_fits(folder, device, dtype, name)
    check_directory(folder, name)
    if not weightless:  # parameters counted from the headers, once they are known to match the config
        held = sum(_numel(shape) for _, shape in read_weight_headers(folder, name).values())
        check_fits(folder, device, dtype, name, parameters=held)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ssviz.models.hf import HFLanguageModel
    with _offline():
        _check_buildable(folder, read_weight_headers(folder, name), name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except BaseException as e:  # tokenizers raises plain Exception, or a Rust panic (a BaseException)
            _reraise_interrupt(e)
            raise CheckpointError(f"{name}: the tokenizer cannot be loaded ({_first_line(e)})") from None
        try:
            model, info = AutoModelForCausalLM.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False, use_safetensors=True,
                dtype=dtype, output_loading_info=True, **({} if device.type == "cpu" else {"device_map": str(device)}))
        except _LOAD_ERRORS as e:
            raise CheckpointError(f"{name}: the model cannot be loaded ({_first_line(e)})") from None
        except Exception as e:  # safetensors' own error types, and whatever a config makes transformers raise
            if type(e).__name__ == "SafetensorError":
                raise CheckpointError(f"{name}: corrupt safetensors weights ({_first_line(e)})") from None
            raise CheckpointError(f"{name}: the model cannot be loaded ({_first_line(e)})") from None
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
    try:  # the tokenizer's first use: a hostile regex can make the Rust library panic here
        ids = lm.encode(PROBE_TEXT)[:32] or [0]
        lm.tokenizer(["0123456789", "The 1 and 22 and 333."])
    except BaseException as e:
        _reraise_interrupt(e)
        raise CheckpointError(f"{name}: the tokenizer fails on plain text ({_first_line(e)})") from None
    ids = torch.tensor([[min(i, len(lm.vocab) - 1) for i in ids]])
    with torch.inference_mode():
        log_probs, _ = lm.run(ids, lm.initial_state(1))
    try:
        check_finite(log_probs, lm)
    except SsvizError:
        raise CheckpointError(f"{name}: the model's outputs are NaN or infinite (its weights overflow): "
                              "the model is unusable") from None


def _reraise_interrupt(e: BaseException) -> None:
    """Let Ctrl-C and exits through; everything else a library raises while loading is the file's fault."""
    if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit, SsvizError)):
        raise e


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return clip(text[0] if text else type(e).__name__, 160)


def load_hf(source: Source, max_bytes: int = MAX_UNZIPPED, device="cpu", dtype="float32"):
    """Load a model directory, a ``.zip`` of one (path, bytes or file object), refusing anything unsafe."""
    data, path, name = _read_source(source)
    if path is not None and path.is_dir():
        return load_directory(path, name, device, dtype)
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
        return load_directory(folder, name, device, dtype)
