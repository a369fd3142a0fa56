"""The one place that knows where ssviz reads bundled files and writes results.

* **Bundled files** (demo checkpoints and corpus, the pre-computed study and
  defense results): the ``models/`` folder of the source checkout, which
  ``pip install -e .`` (the README's install) keeps beside the package.
  ``SSVIZ_MODELS_DIR`` points elsewhere, e.g. for a wheel install.
* **Data folder** (results stores, sweeps, caches, models trained in the app):
  ``SSVIZ_DATA_DIR``, default ``./data`` relative to the working directory.

Nothing else in the library computes paths from ``__file__``. ``models/`` and
``scoring`` never import this module: they take paths as arguments.
"""

from __future__ import annotations

import os
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the checkout that holds ssviz/ and models/


def models_dir() -> Path:
    """Folder of the bundled demo files."""
    return Path(os.environ.get("SSVIZ_MODELS_DIR") or SOURCE_ROOT / "models")


def data_dir() -> Path:
    """Folder where results, caches and trained models are written (not created here)."""
    return Path(os.environ.get("SSVIZ_DATA_DIR") or "data").absolute()


def bundled(name: str) -> Path:
    """A bundled file, e.g. ``bundled("study/enron-demo.duckdb")``."""
    return models_dir() / name


def data_path(name: str) -> Path:
    """A file or folder in the data folder, e.g. ``data_path("results.duckdb")``."""
    return data_dir() / name


def ensure_writable(path, what: str = "output") -> Path:
    """Check, before long work starts, that ``path`` can be written (its folder is created).

    A late failure would throw away the work; this fails first with one clear line instead.
    """
    from ssviz.errors import SsvizError

    path = Path(path)
    if path.is_dir():
        raise SsvizError(f"{what} {path} is a folder: give a file name")
    blocker = next((a for a in path.parents if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise SsvizError(f"cannot write {what} {path}: {blocker} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SsvizError(f"cannot create the folder of {what} {path}: {e.strerror or e}") from None
    probe = path.parent / f".{path.name}.ssviz-write-test"
    try:
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as e:
        raise SsvizError(f"cannot write {what} {path}: {e.strerror or e}") from None
    return path


def confined(typed, roots, what: str = "files", hint: str = "upload it instead") -> Path:
    """A path someone typed, resolved (relative to the working directory), refused unless inside one of ``roots``.

    Resolving first means ``..`` and symlinks cannot lead outside those folders: a server reads
    only what it was meant to share (the data and bundled folders), never the rest of its disk.
    """
    from ssviz.errors import SsvizError

    path = Path(typed).expanduser()
    path = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not any(path.is_relative_to(Path(r).resolve()) for r in roots):
        names = " or ".join(f"{Path(r).name}/" for r in roots)
        raise SsvizError(f"{typed}: {what} are read only from the {names} folders; {hint}")
    return path
