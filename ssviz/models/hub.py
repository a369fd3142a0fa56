"""``hf:NAME``: a model from the local Hugging Face cache, exactly the folder ``from_pretrained(NAME)`` would
read offline, and never the network.

The cache is ``HF_HUB_CACHE`` (or the older ``HUGGINGFACE_HUB_CACHE``), else ``HF_HOME/hub``, else
``~/.cache/huggingface/hub``. A model ``org/name`` lives in ``models--org--name``; ``refs/<revision>``
holds the commit its files are under in ``snapshots/<commit>/`` (files there are links into the
repository's ``blobs/``, never outside it). ``hf:NAME@REV`` picks a branch, tag or commit (default
``main``). The folder found is then loaded like any model folder, with all of its checks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ssviz.errors import CheckpointError, CheckpointNotFoundError
from ssviz.messages import clip

PREFIX = "hf:"
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_NAME = re.compile(rf"{_PART}(?:/{_PART})?")
_REV = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def is_hub_name(source) -> bool:
    """Whether ``source`` names a cached model (``hf:NAME``) rather than a path."""
    return isinstance(source, str) and source.startswith(PREFIX)


def hub_cache() -> Path:
    """The cache folder ``from_pretrained`` reads (the same environment variables, in the same order)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def resolve_hub(source: str) -> Path:
    """The snapshot folder of ``hf:NAME[@REV]`` in the local cache; one line when it is not there."""
    spec = source[len(PREFIX):].strip()
    name, _, rev = spec.partition("@")
    rev = rev or "main"
    if not _NAME.fullmatch(name) or ".." in name:
        raise CheckpointError(f"{clip(source, 120)!r} is not a Hugging Face model name: expected hf:org/name or "
                              "hf:name (optionally @revision)")
    if not _REV.fullmatch(rev) or ".." in rev:
        raise CheckpointError(f"{clip(source, 120)!r}: {clip(rev, 60)!r} is not a revision (a branch, tag or commit)")
    cache = hub_cache()
    repo = cache / ("models--" + name.replace("/", "--"))
    missing = (f"hf:{name} is not in the local Hugging Face cache ({clip(str(cache), 120)}): ssviz never "
               f"downloads; fetch it once where there is network (huggingface-cli download {name}), point "
               "HF_HUB_CACHE or HF_HOME at the cache that holds it, or give its model folder")
    if not repo.is_dir():
        raise CheckpointNotFoundError(missing)
    commit = rev if _COMMIT.fullmatch(rev) and (repo / "snapshots" / rev).is_dir() else None
    if commit is None:
        ref = repo / "refs" / rev
        try:
            commit = ref.read_text(encoding="ascii").strip() if ref.is_file() else None
        except (OSError, UnicodeDecodeError):
            commit = None
        if commit is None:
            raise CheckpointNotFoundError(missing.replace(" is not in", f"@{rev} is not in", 1))
        if not _COMMIT.fullmatch(commit):
            raise CheckpointError(f"hf:{name}: the cache's refs/{clip(rev, 60)} does not hold a commit hash: a "
                                  "corrupt cache")
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        raise CheckpointNotFoundError(missing.replace(" is not in", f"@{rev} (commit {commit[:12]}) is not in", 1))
    root = repo.resolve()
    for p in snapshot.iterdir():  # the cache links files into its blobs/: never anywhere else
        if not p.resolve().is_relative_to(root):
            raise CheckpointError(f"hf:{name}: {clip(p.name, 60)} in the cache points outside the model's cache "
                                  "folder: refused")
    return snapshot
