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
