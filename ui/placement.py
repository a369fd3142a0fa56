"""Where the app's models run (the sidebar's device and precision), and the server folders the operator lets
users open models and LoRA adapters from (``SSVIZ_MODEL_ROOTS``).

``SSVIZ_MODEL_ROOTS`` is an ``os.pathsep``-separated list of folders. The Model page lists the model
folders (``config.json``) and adapter folders (``adapter_config.json``) found under them, a few levels
deep; nothing outside them can be opened, whatever a browser sends (every path is resolved, links
included, and checked again when it is opened). Browser upload stays for small models.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from ssviz.errors import SsvizError
from ssviz.models.placement import DTYPE_CHOICES
from ui import state

DEVICE = "ssviz_device"
DTYPE = "ssviz_dtype"
ROOTS_ENV = "SSVIZ_MODEL_ROOTS"
MAX_DEPTH = 3        # folder levels searched under a root
MAX_FOLDERS = 500    # folders listed at most (a root holding a whole disk must not stall the page)


# --- device and precision ------------------------------------------------------------------------------
def devices() -> list[str]:
    """The devices this server can run on, ``auto`` first."""
    import torch
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def chosen() -> tuple[str, str]:
    """The ``(device, dtype)`` names models are loaded with in this session (``auto`` until chosen)."""
    return st.session_state.get(DEVICE, "auto"), st.session_state.get(DTYPE, "auto")


def sidebar() -> None:
    """The sidebar's device and precision: models opened from now on load there."""
    options = devices()
    if st.session_state.get(DEVICE, "auto") not in options:  # a GPU that went away: back to auto
        st.session_state[DEVICE] = "auto"
        st.session_state.pop("w_device", None)
    with st.sidebar:
        st.selectbox("Device", options, **state.setting("w_device", "auto"),
                     help="Where models run: auto is a CUDA GPU where present, else Apple MPS, else the CPU")
        st.selectbox("Precision", list(DTYPE_CHOICES), **state.setting("w_dtype", "auto"),
                     help="The weights' precision: auto is bfloat16 on a GPU, float32 elsewhere; "
                          "log-probabilities are always computed in float32")


# --- server folders -------------------------------------------------------------------------------------
def roots() -> list[Path]:
    """The folders the operator allows (``SSVIZ_MODEL_ROOTS``), resolved; those that do not exist are left out."""
    text = os.environ.get(ROOTS_ENV, "")
    out = []
    for part in text.split(os.pathsep):
        if part.strip():
            p = Path(part.strip()).expanduser().resolve()
            if p.is_dir() and p not in out:
                out.append(p)
    return out


def inside_roots(path, allowed: list[Path] | None = None) -> Path:
    """``path`` resolved, refused unless it lies under an allowed root."""
    allowed = roots() if allowed is None else allowed
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(r) for r in allowed):
        raise SsvizError(f"{resolved.name or path} is not under the server folders this app may open")
    return resolved


def server_folders(allowed: list[Path] | None = None) -> list[tuple[Path, str]]:
    """``(folder, kind)`` of every model (``model``) and adapter (``adapter``) folder under the roots."""
    allowed = roots() if allowed is None else allowed
    found: list[tuple[Path, str]] = []
    for root in allowed:
        stack = [(root, 0)]
        while stack and len(found) < MAX_FOLDERS:
            folder, depth = stack.pop()
            try:
                if (folder / "adapter_config.json").is_file():
                    found.append((folder, "adapter"))
                elif (folder / "config.json").is_file():
                    found.append((folder, "model"))
                elif depth < MAX_DEPTH:
                    children = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                                      reverse=True)
                    stack.extend((c, depth + 1) for c in children
                                 if c.resolve().is_relative_to(root))  # a link out of the root is not followed
            except OSError:
                continue
    return found


def folder_key(folder: Path) -> str:
    """A cache key of a server folder from its files' names, sizes and modification times (hashing a
    model of gigabytes on every page run would take minutes)."""
    import hashlib
    h = hashlib.sha256()
    for p in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        st_ = p.stat()
        h.update(f"{p.name}\0{st_.st_size}\0{st_.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return "stat:" + h.hexdigest()


def _label(folder: Path, allowed: list[Path]) -> str:
    for r in allowed:
        if folder.is_relative_to(r):
            return f"{r.name}/{folder.relative_to(r)}" if folder != r else r.name
    return folder.name


def open_folder(folder, base=None) -> str:
    """Register a server model folder (or an adapter over ``base``) as a model of this session and make it
    current; returns its key. Both are checked to lie under the roots, then loaded (every loading check)."""
    allowed = roots()
    folder = inside_roots(folder, allowed)
    from ssviz.models.adapters import adapter_base, is_adapter_folder
    if is_adapter_folder(folder):
        base = inside_roots(base, allowed) if base is not None else adapter_base(folder, allowed)
        key = f"server:{base}+{folder}"
        name = f"{_label(base, allowed)} + adapter {_label(folder, allowed)}"
        state.models()[key] = {"name": name, "source": str(base), "adapter": str(folder)}
    else:
        key = f"server:{folder}"
        state.register_model(key, _label(folder, allowed), str(folder))
    try:
        state.select_model(key)  # loads it: a refusal is shown, and the model is not kept
    except SsvizError:
        state.models().pop(key, None)
        raise
    return key


def server_section() -> None:
    """The Model page's "open from the server" box (only where the operator set ``SSVIZ_MODEL_ROOTS``)."""
    allowed = roots()
    if not allowed:
        return
    folders = server_folders(allowed)
    with st.expander("Open a model from the server", expanded=True):
        if not folders:
            st.info("No model folder (config.json) or LoRA adapter folder (adapter_config.json) under the server "
                    "folders this app may open.")
            return
        labels = {str(f): f"{_label(f, allowed)} ({kind})" for f, kind in folders}
        pick = st.selectbox("Model or adapter folder", list(labels), format_func=labels.get, key="w_server_folder")
        base = None
        if (Path(pick) / "adapter_config.json").is_file():
            models = [str(f) for f, kind in folders if kind == "model"]
            base = st.selectbox("Base model of the adapter", ["(the one its adapter_config.json names)"] + models,
                                format_func=lambda s: labels.get(s, s), key="w_server_base")
            base = None if base not in labels else base
        if st.button("Open", key="w_server_open", type="primary"):
            try:
                open_folder(pick, base)
            except SsvizError as e:
                st.error(str(e)[:400])
            else:
                st.success(f"Opened {labels[pick]} on {chosen()[0]} ({chosen()[1]})")
