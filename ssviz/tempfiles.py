"""Private temporary folders: the one place ssviz keeps raw mail, per-user corpora and uploads on disk.

Every folder is ``<system temp>/ssviz-<purpose>-<pid>-<random>``, mode 0700, with
an ``.owner`` marker (pid and process start time), and files written through
:func:`private_file` are 0600. A folder is removed

* when its :func:`private_dir` block ends, normally or by an exception;
* at interpreter exit (:func:`session_dir` and any folder still open);
* on SIGTERM / SIGHUP, before the signal's previous behaviour runs (the
  handler is installed from the main thread only, as Python requires);
* after a kill -9, by :func:`clean_stale` in the next ssviz process that makes
  a temp folder: folders of processes that no longer run are removed.

Only folders with this exact name pattern, owned by the current user and not
symlinks, are ever removed.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PREFIX = "ssviz-"
MARKER = ".owner"
_NAME = re.compile(r"^ssviz-([a-z0-9]{1,20})-(\d{1,10})-([A-Za-z0-9_-]{8,32})$")
_PURPOSE = re.compile(r"^[a-z0-9]{1,20}$")
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))

_live: dict[Path, int] = {}        # folder -> pid of the process that made it (a fork must not remove it)
_lock = threading.Lock()
_session: Path | None = None
_cleaned_stale = False
_previous_handlers: dict[int, object] = {}


def temp_root() -> Path:
    """The system temp folder (``TMPDIR`` and ``tempfile.tempdir`` are honoured)."""
    return Path(tempfile.gettempdir())


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), '' where unknown: tells a reused pid apart."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = data[data.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def _alive(pid: int, started: str) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: running
    except OSError:
        return True
    if started:
        now = _start_time(pid)
        if now and now != started:
            return False  # the pid was reused by a later process
    return True


def _owner(path: Path, name_pid: int) -> tuple[int, str]:
    """``(pid, start time)`` from the marker, else the pid in the name (killed before the marker was written)."""
    try:
        pid, _, started = (path / MARKER).read_text().strip().partition(" ")
        return int(pid), started
    except (OSError, ValueError):
        return name_pid, ""


def _ours(path: Path) -> bool:
    """A real folder (not a symlink) owned by this user."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and (not hasattr(os, "getuid") or st.st_uid == os.getuid())


def clean_stale() -> list[Path]:
    """Remove the temp folders of ssviz processes that no longer run (e.g. killed with kill -9); return them."""
    removed = []
    try:
        entries = list(os.scandir(temp_root()))
    except OSError:
        return removed
    for entry in entries:
        m = _NAME.match(entry.name)
        if not m:
            continue
        path = Path(entry.path)
        if not _ours(path):
            continue
        pid, started = _owner(path, int(m.group(2)))
        if pid == os.getpid() or _alive(pid, started):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


def _remove(path: Path) -> None:
    with _lock:
        owner = _live.pop(path, None)
    if owner == os.getpid():
        shutil.rmtree(path, ignore_errors=True)


def _remove_all() -> None:
    """Remove every folder this process made (at exit and on a terminating signal)."""
    global _session
    for path, owner in list(_live.items()):
        if owner == os.getpid():
            _live.pop(path, None)
            shutil.rmtree(path, ignore_errors=True)
    _session = None


def _on_signal(signum, frame) -> None:
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if previous == signal.SIG_IGN:
        return
    _remove_all()
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)  # then die of the same signal, as without this handler
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # e.g. Streamlit's script thread: at-exit and clean_stale() still apply
    for signum in _SIGNALS:
        try:
            current = signal.getsignal(signum)
            if current is _on_signal:
                continue
            signal.signal(signum, _on_signal)
            _previous_handlers[signum] = current
        except (ValueError, OSError):
            pass


atexit.register(_remove_all)


def make_private_dir(purpose: str = "work") -> Path:
    """Create a registered 0700 folder (removed at exit or by :func:`remove_private_dir`).

    The first call in a process also removes stale folders of dead processes.
    """
    global _cleaned_stale
    if not _PURPOSE.match(purpose):
        raise ValueError(f"temp folder purpose must be 1-20 lowercase letters or digits, got {purpose!r}")
    if not _cleaned_stale:
        _cleaned_stale = True
        clean_stale()
    _install_handlers()
    root = temp_root()
    pid = os.getpid()
    while True:
        path = root / f"{PREFIX}{purpose}-{pid}-{secrets.token_urlsafe(9)}"
        try:
            os.mkdir(path, 0o700)
            break
        except FileExistsError:
            continue
    with _lock:
        _live[path] = pid
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask; never wider than 0700 anyway
    _write_private(path / MARKER, f"{pid} {_start_time(pid)}\n".encode())
    return path


def remove_private_dir(path) -> None:
    """Remove a folder made by :func:`make_private_dir` in this process (no-op otherwise)."""
    _remove(Path(path))


@contextmanager
def private_dir(purpose: str = "work") -> Iterator[Path]:
    """A private 0700 temp folder for the block's duration: ``with private_dir("enron") as work: ...``."""
    path = make_private_dir(purpose)
    try:
        yield path
    finally:
        _remove(path)


def session_dir() -> Path:
    """This process's private folder for files that outlive one call (e.g. uploads), removed at exit."""
    global _session
    with _lock:
        session = _session
    if session is None or not session.is_dir():
        session = make_private_dir("session")
        with _lock:
            _session = session
    return session


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def open_private(path, mode: str = "w", **kwargs):
    """``open(path, mode)`` creating the file with mode 0600 (for text or bytes written in a private folder)."""
    if not any(c in mode for c in "wax"):
        raise ValueError("open_private is for writing; use open() to read")
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    flags |= os.O_EXCL if "x" in mode else os.O_APPEND if "a" in mode else os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    try:
        return os.fdopen(fd, mode.replace("x", "w"), **kwargs)
    except BaseException:
        os.close(fd)
        raise


def private_file(name: str, data: bytes, directory=None) -> Path:
    """Write ``data`` to ``name`` (a plain file name) in ``directory`` (default :func:`session_dir`), 0600,
    atomically (a reader never sees half a file); return its path."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise ValueError(f"not a plain file name: {name!r}")
    folder = Path(directory) if directory is not None else session_dir()
    path = folder / name
    part = folder / f".{name}.{secrets.token_hex(4)}.part"
    try:
        _write_private(part, data)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path


def exclusive_temp(path) -> tuple[int, Path]:
    """``(fd, temp path)``: a new, randomly named file beside ``path`` (same folder, so a rename is atomic),
    created exclusively (``mkstemp``: O_EXCL, never through a planted link). The caller writes it and
    renames it into place (:func:`replace_into`) or removes it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
    return fd, Path(tmp)


def _output_mode(path: Path) -> int:
    """The mode an output gets: an existing regular file's, else what ``open()`` would give (0666 less umask)."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def replace_into(tmp, path) -> None:
    """Rename the finished temp file ``tmp`` onto ``path``, refusing an existing ``path`` that is not a regular
    file (a device, FIFO, socket or folder): it is never replaced by a plain file. ``tmp`` is removed on refusal."""
    from ssviz.errors import SsvizError
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        Path(tmp).unlink(missing_ok=True)
        raise SsvizError(f"{path} exists and is not a regular file (a device, FIFO, socket or folder): "
                         f"not replaced; choose a file name")
    try:
        os.chmod(tmp, _output_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path, data) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically: into an exclusively created temp file in
    the same folder, then renamed into place. A reader never sees half a file, a planted link is never
    written through, and a device or FIFO at ``path`` is refused, never replaced."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = exclusive_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    replace_into(tmp, path)
    return path
