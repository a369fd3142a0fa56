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


def same_file(a, b) -> bool:
    """Whether two paths name the same file or folder, through any spelling: relative, symlink, hard link
    (``st_dev``/``st_ino`` where both exist, the resolved paths otherwise)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        try:
            return Path(a).resolve() == Path(b).resolve()
        except (OSError, RuntimeError, ValueError):
            return False


def _inside(path, folder) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def check_outputs(outputs, inputs) -> None:
    """Refuse, before any work, an output that is one of the inputs the command reads.

    ``outputs`` and ``inputs`` are ``{what: path}`` (or ``(what, path)`` pairs; a None path is skipped). An
    output is refused when it is an input (any spelling: relative, symlink, hard link) or an existing file
    inside an input folder (e.g. a model folder's ``config.json``): writing it would destroy what the
    command reads.
    """
    from ssviz.errors import SsvizError

    def pairs(x):
        return [(w, p) for w, p in (x.items() if isinstance(x, dict) else x) if p is not None and str(p) != ""]

    ins = pairs(inputs)
    for what, out in pairs(outputs):
        for src_what, src in ins:
            if same_file(out, src):
                where = f"is the input file {src}"
            elif os.path.isdir(src) and os.path.lexists(out) and not os.path.isdir(out) and _inside(out, src):
                where = f"is a file in the input folder {src}"
            else:
                continue
            given = "" if src_what in ("input", "file") else f" ({src_what})"
            raise SsvizError(f"{what} {out} {where}{given}: writing it would destroy the input; "
                             f"choose another path")


def refuse_special(path, what: str = "output") -> None:
    """Refuse an existing output that is not a regular file (a device such as /dev/full, a FIFO, a socket,
    a folder): ssviz replaces outputs atomically, which would swap a device for a plain file."""
    import stat

    from ssviz.errors import SsvizError
    try:
        st = os.stat(path)
    except OSError:
        return  # missing (or a dangling link): written as a new file
    if stat.S_ISDIR(st.st_mode):
        raise SsvizError(f"{what} {path} is a folder: give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise SsvizError(f"{what} {path} exists and is not a regular file (a device, FIFO or socket): "
                         f"choose a file name")


def ensure_writable(path, what: str = "output") -> Path:
    """Check, before long work starts, that ``path`` can be written (its folder is created).

    A late failure would throw away the work; this fails first with one clear line instead. An existing
    output that is not a regular file is refused. The probe is a randomly named file created exclusively
    (``mkstemp``: O_EXCL, no link followed) and removed: a link planted in the folder is never written through.
    """
    import tempfile

    from ssviz.errors import SsvizError

    path = Path(path)
    refuse_special(path, what)
    blocker = next((a for a in path.parents if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise SsvizError(f"cannot write {what} {path}: {blocker} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SsvizError(f"cannot create the folder of {what} {path}: {e.strerror or e}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".ssviz-", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SsvizError(f"cannot write {what} {path}: {e.strerror or e}") from None
    return path


def claim_unique(folder, prefix: str, suffix: str = "", *, directory: bool = False) -> Path:
    """Create ``folder/prefix-<UTC time>-<random><suffix>`` exclusively (an empty file, or a folder with
    ``directory``) and return it: a name no other session or process can take, even in the same second."""
    import secrets
    from datetime import datetime, timezone

    from ssviz.errors import SsvizError

    folder = Path(folder)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    blocker = next((a for a in [folder, *folder.parents] if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise SsvizError(f"cannot write in {folder}: {blocker} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            path = folder / f"{prefix}-{stamp}-{secrets.token_hex(4)}{suffix}"
            try:
                if directory:
                    os.mkdir(path, 0o777)
                else:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                                     0o666))
                return path
            except FileExistsError:
                continue
    except OSError as e:
        raise SsvizError(f"cannot write in {folder}: {e.strerror or e}") from None


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
