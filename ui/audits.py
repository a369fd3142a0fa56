"""The app's audits: the small run the Audit page offers, where it saves runs, the saved audits it lists,
typed folders and uploads, and the audited epsilon the Defenses page shows beside a defense.

The audits themselves (running, the folder format, the bundled ones) are ``ssviz.audit``'s; this
module only decides what the pages offer and keeps uploads private.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ssviz.audit.demo import bundled_audits, matching_audit
from ssviz.audit.run import AUDIT_JSON, CANARIES_CSV, AuditSettings, is_audit, load_audit
from ssviz.audit.seeds import seed_folders
from ssviz.errors import InvalidValueError, MissingFileError, SsvizError
from ssviz.paths import confined, data_path
from ssviz.train import TrainConfig

# The audit the app runs on the spot: small enough for about a minute on 2 shared cores.
LIVE_CHARS = 50_000
LIVE_SETTINGS = AuditSettings(template="The code is {d:6}", canaries=200, insertions=8, seed=0)
LIVE_CONFIG = TrainConfig(layers=1, hidden=64, embedding_dim=32, epochs=4, batch_size=64, lr=0.005, seed=0,
                          patience=None)


def runs_dir() -> Path:
    """Where the app writes the audits it runs (``data/audits``)."""
    return data_path("audits")


def saved_audits() -> list[Path]:
    """Finished audits in ``data/audits`` (made by the app or ``python -m ssviz audit --out data/audits/X``),
    newest first; a repeated audit (``--seeds N``) contributes each of its ``seed-k`` folders."""
    folder = runs_dir()
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        if p.is_dir() and not p.is_symlink():
            found.extend([p] if is_audit(p) else seed_folders(p))
    return sorted(found, key=lambda p: p.parent.stat().st_mtime if p.parent != folder else p.stat().st_mtime,
                  reverse=True)


def audit_folder(typed: str, roots) -> Path:
    """A typed audit folder, resolved, refused unless inside one of ``roots`` (e.g. data/ and models/).

    Resolving first means ``..`` and symlinks cannot lead outside those folders.
    """
    path = confined(typed, roots, "audits", f"upload its {CANARIES_CSV} instead")
    if not is_audit(path):
        raise MissingFileError(f"{typed}: not a finished audit (no {CANARIES_CSV} in it)")
    return path


SANITIZERS = ("regex", "lpd")  # defenses that clean the data: no audit trains on cleaned data


def audited_epsilon(defense: str, strength: str) -> dict | None:
    """For a Defenses row: the bundled audit of the same training options (``{"epsilon_lower", "label",
    "folder", "insertions"}``), or None (no such audit, or a sanitization defense)."""
    from ssviz.defenses.compare import defense_config

    if defense in SANITIZERS:
        return None
    try:
        config = defense_config(defense, strength, TrainConfig())
    except SsvizError:
        return None
    audits = bundled_audits()
    folder = matching_audit(config, audits)
    if folder is None:
        return None
    summary = _summary(str(folder), (folder / CANARIES_CSV).stat().st_mtime_ns)
    return {**summary, "label": audits[folder], "folder": folder}


@lru_cache(maxsize=16)
def _summary(folder: str, mtime_ns: int) -> dict:
    """The numbers of a finished audit, recomputed once per file version (``mtime_ns`` keys the cache)."""
    res = load_audit(folder)
    return {k: res[k] for k in ("epsilon_lower", "epsilon_claimed", "epsilon_claimed_per_canary", "insertions")}


MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # a canaries.csv this size holds about 400,000 canaries


def save_upload(files: dict[str, bytes]) -> Path:
    """Save an uploaded audit (its ``canaries.csv``, optionally its ``audit.json``) in a private temp folder
    (:mod:`ssviz.tempfiles`: 0700, files 0600, removed at exit) named by the content; return the folder.

    Only the two known names are written, whatever the uploaded files were called, so a name cannot
    lead anywhere; :func:`ssviz.audit.run.load_audit` then checks every row.
    """
    import hashlib
    from ssviz.tempfiles import private_file, session_dir

    csvs = [n for n in files if n.lower().endswith(".csv")]
    jsons = [n for n in files if n.lower().endswith(".json")]
    if len(csvs) != 1 or len(jsons) > 1 or len(files) != len(csvs) + len(jsons):
        raise InvalidValueError(f"upload one {CANARIES_CSV} and, optionally, its {AUDIT_JSON}")
    parts = {CANARIES_CSV: files[csvs[0]], **({AUDIT_JSON: files[jsons[0]]} if jsons else {})}
    size = sum(len(b) for b in parts.values())
    if size > MAX_UPLOAD_BYTES:
        raise InvalidValueError(f"the uploaded audit is {size / 2**20:.0f} MB; at most "
                                f"{MAX_UPLOAD_BYTES // 2**20} MB are read")
    digest = hashlib.sha256()
    for name, data in sorted(parts.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    folder = session_dir() / f"audit-{digest.hexdigest()[:32]}"
    if not is_audit(folder):
        folder.mkdir(mode=0o700, exist_ok=True)
        for name, data in parts.items():
            private_file(name, data, folder)
    folder.touch()  # most recently used
    _prune(session_dir(), keep=folder)
    return folder


MAX_UPLOADED_AUDITS = 8  # folders kept on disk, least recently used removed first


def _prune(root: Path, keep: Path) -> None:
    import shutil

    def used(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:  # removed meanwhile by another session
            return 0.0

    for old in sorted(root.glob("audit-*"), key=used)[:-MAX_UPLOADED_AUDITS]:
        if old != keep and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
