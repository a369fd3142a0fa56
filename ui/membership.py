"""The Membership page's glue: the bundled result, the sets a live run reads, and the run as a Job."""

from __future__ import annotations

from ssviz.membership.run import MembershipError, is_result, load_mia, read_lines, run_mia, save_mia
from ssviz.paths import bundled, claim_unique, data_path
from ui import cache
from ui.jobs import Job

DEMO_DIR = bundled("membership") / "demo"
MAX_LIVE_TEXTS = 2_000  # per side, for a run on the spot (the CLI takes more)


def runs_dir():
    """Where the app saves the membership results it runs (``data/membership``)."""
    return data_path("membership")


def demo_result():
    """The bundled result (``models/membership/demo``), loaded once per content; None when not shipped."""
    if not is_result(DEMO_DIR):
        return None
    return cache.of_files("membership-demo", DEMO_DIR, sorted(p.name for p in DEMO_DIR.iterdir()),
                          lambda: load_mia(DEMO_DIR))


def demo_sets() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The bundled result's member and non-member texts (line numbers kept), for a run on another model."""
    res = demo_result()
    if res is None or not any(res.texts):
        raise MembershipError("the bundled membership sets are not shipped with this copy: upload two files")
    pairs = list(zip(res.index.tolist(), res.texts, res.member.tolist()))
    return [(i, t) for i, t, m in pairs if m], [(i, t) for i, t, m in pairs if not m]


def uploaded_sets(members: bytes, nonmembers: bytes) -> tuple[list, list]:
    return read_lines(members, "member texts"), read_lines(nonmembers, "non-member texts")


def membership_job(key: tuple, label: str, model, members: list, nonmembers: list, *, attacks: list[str],
                   k: float, reference=None, limit: int = MAX_LIVE_TEXTS) -> Job:
    """The attack battery as the app's background job (progress counts texts read, Stop ends it); the result is
    saved under ``data/membership`` (the Report page includes it from there). Returns ``{"result", "path"}``."""
    members, nonmembers = members[:limit], nonmembers[:limit]

    def fn(progress, stop):
        res = run_mia(model, members, nonmembers, attacks=attacks, k=k, reference=reference,
                      progress=progress, stop=stop)
        res.settings["description"] = label
        out = claim_unique(runs_dir(), "mia", directory=True)  # a folder no other session can take
        return {"result": res, "path": save_mia(res, out, {"description": label})}

    return Job(key, label, fn, {"members": len(members), "nonmembers": len(nonmembers)})
