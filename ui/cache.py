"""Every cache the app keeps, in one place.

* Models on disk (the bundled demos, models trained here): a checkpoint file or a
  Hugging Face model folder, read by :func:`ssviz.models.load_model`; process-wide
  ``st.cache_resource`` keyed by path and content hash, so every session shares
  one read-only model and a rewritten file or folder is reloaded.
* Uploaded models (a checkpoint, or a ``.zip`` of a model folder): per session
  (``st.session_state``), never shared between users; the last ``MAX_UPLOADS``
  used (a model can be 200 MB, and a zip may unpack to at most ``MAX_UNZIPPED_UPLOAD``).
* Results (exposure, extraction): per session, keyed by their inputs, so going
  back to a page shows the last result instead of recomputing it.
* The per-user results store: one read-only :class:`ssviz.store.Store` per file
  (it opens a short-lived DuckDB connection per query, so threads never share one),
  at most ``MAX_STORES``; only files under data/ or models/, or uploaded ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from ssviz.demo import DEMO_CORPUS
from ssviz.errors import CheckpointError, SsvizError
from ssviz.models import load_model
from ssviz.paths import confined, data_dir, models_dir
from ssviz.store import Store
from ssviz.tempfiles import private_file, session_dir
from ssviz.train import read_corpus

UPLOADS = "ssviz_uploads"
RESULTS = "ssviz_results"
MAX_RESULTS = 16  # an exact exposure result holds |R| floats (8 MB for 10^6)
MAX_UPLOADS = 2   # uploaded models kept per session, least recently used dropped first
# bytes an uploaded zip may unpack to: weights barely compress, so a 200 MB upload unpacks to about as much
MAX_UNZIPPED_UPLOAD = 512 << 20


def file_hash(path: Path) -> str:
    """Content hash of a checkpoint file, or of a model folder's files (names and contents)."""
    path = Path(path)
    if not path.is_dir():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    h = hashlib.sha256()
    for p in sorted(p for p in path.iterdir() if p.is_file()):  # a model folder is flat
        h.update(p.name.encode("utf-8", "surrogateescape") + b"\0")
        with open(p, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def _model_from_file(path: str, sha256: str, device: str = "auto", dtype: str = "auto", adapter: str | None = None,
                     adapter_sha256: str | None = None):
    """Read-only model shared by all sessions (the hashes are only cache keys)."""
    return load_model(path, device=device, dtype=dtype, adapter=adapter)


def model_from_file(path, adapter=None) -> object:
    """The model in a checkpoint file or model folder (with a LoRA ``adapter`` folder merged over it), loaded
    once per content and placement (the sidebar's device and precision)."""
    from ui.placement import chosen
    path = Path(path)
    if not (path.is_file() or path.is_dir()):
        raise CheckpointError(f"checkpoint not found: {path}")
    device, dtype = chosen()
    from ui.placement import folder_key, roots
    key = folder_key(path) if path.is_dir() and any(path.resolve().is_relative_to(r) for r in roots()) \
        else file_hash(path)  # a server folder of gigabytes is not read through on every page run
    return _model_from_file(str(path), key, device, dtype, None if adapter is None else str(adapter),
                            None if adapter is None else file_hash(Path(adapter)))


def model_from_upload(data: bytes) -> tuple[str, object]:
    """Validate an uploaded model and keep it in this session; returns (hash, model).

    Only :mod:`ssviz.models` reads the bytes: a checkpoint through ``load_checkpoint``
    (safetensors, or a weights-only torch file: a pickle carrying code raises
    CheckpointError), a zip of a model folder through ``load_hf`` (checked member by
    member, unpacked into a private temp folder removed after loading, at most
    :data:`MAX_UNZIPPED_UPLOAD` bytes however small the zip).
    """
    sha = hashlib.sha256(data).hexdigest()
    uploads = st.session_state.setdefault(UPLOADS, {})
    model = _used(uploads, sha)
    if model is None:
        from ui.placement import chosen
        device, dtype = chosen()
        model = load_model(bytes(data), max_bytes=MAX_UNZIPPED_UPLOAD, device=device, dtype=dtype)
        _keep_recent(uploads, sha, model, MAX_UPLOADS)
    return sha, model


def uploaded_model(sha: str):
    """An uploaded model still kept in this session (marked as just used), or None."""
    return _used(st.session_state.get(UPLOADS, {}), sha)


def uploaded_shas() -> set[str]:
    """The uploads this session still keeps (the others were dropped as least recently used)."""
    return set(st.session_state.get(UPLOADS, {}))


def _keep_recent(entries: dict, key, value, cap: int) -> None:
    """Insert ``key`` as the newest entry and drop the least recently used beyond ``cap`` (a dict keeps
    insertion order, and :func:`_used` moves an entry to the end)."""
    entries.pop(key, None)
    entries[key] = value
    while len(entries) > cap:
        entries.pop(next(iter(entries)))


def _used(entries: dict, key):
    """The entry for ``key`` (None if absent), moved to the newest end."""
    value = entries.pop(key, None)
    if value is not None:
        entries[key] = value
    return value


def of_files(kind: str, folder, names, load, *extra):
    """``load()``, once per content of ``folder``'s files ``names`` (their modification times; a missing file
    counts as 0) and ``extra`` inputs, in this session."""
    folder = Path(folder)
    stamp = tuple((folder / n).stat().st_mtime_ns if (folder / n).is_file() else 0 for n in names)
    key = (kind, str(folder), stamp, *extra)
    res = result(key)
    if res is None:
        res = load()
        remember(key, res)
    return res


def result(key: tuple):
    """A result computed earlier in this session for the same inputs, or None."""
    return _used(st.session_state.get(RESULTS, {}), key)


def remember(key: tuple, value) -> None:
    _keep_recent(st.session_state.setdefault(RESULTS, {}), key, value, MAX_RESULTS)


@st.cache_data(show_spinner=False)
def demo_corpus_text() -> str:
    return read_corpus(DEMO_CORPUS)


def results_dirs() -> tuple:
    """The only server folders the app reads typed results paths from (read when asked: the data folder
    follows SSVIZ_DATA_DIR and the working directory)."""
    return data_dir(), models_dir()
MAX_STORES = 16


@st.cache_resource(max_entries=MAX_STORES)
def store(path: str) -> Store:
    """One read-only store object per results file (only paths from :func:`results_file` or an upload)."""
    return Store(path, read_only=True)


def results_file(typed: str) -> Path:
    """A typed results path, resolved (relative to the repo) and refused unless inside data/ or models/.

    Resolving first means ``..`` and symlinks cannot lead outside those folders.
    """
    path = confined(typed, results_dirs(), "results files", "upload the file instead")
    if path.suffix != ".duckdb":
        raise SsvizError(f"{typed}: choose a .duckdb results file")
    return path


MAX_UPLOADED_RESULTS = 8  # files kept on disk; an evicted one is written again if its upload is still shown


def uploaded_results_file(data: bytes) -> Path:
    """Save an uploaded results file in this process's private temp folder (:mod:`ssviz.tempfiles`: 0700,
    files 0600, removed at exit and by the next start after a kill), named by its content so it is read
    once; :class:`ssviz.store.Store` then checks it like any other file before reading it."""
    name = f"results-{hashlib.sha256(data).hexdigest()[:32]}.duckdb"
    path = session_dir() / name
    if path.is_file():
        path.touch()  # most recently used
    else:
        path = private_file(name, data)

    def used(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:  # removed meanwhile by another session
            return 0.0

    for old in sorted(session_dir().glob("results-*.duckdb"), key=used)[:-MAX_UPLOADED_RESULTS]:
        if old != path:
            old.unlink(missing_ok=True)
    return path
