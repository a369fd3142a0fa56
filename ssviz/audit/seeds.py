"""Repeated audits: the same audit over several seeds, as independent tasks (inline, on local processes or Ray).

One one-run audit is one draw: its epsilon lower bound and AUC move with the seed
(which canaries, which coins, which training noise). Running it over seeds shows
that spread. Each seed is a task that trains and scores on a worker and returns its
audit folder as bytes; this process is the only writer and keeps each seed's folder
as it arrives, so a stopped or killed run resumes with the seeds it has::

    OUT/seed-0/   canaries.csv, audit.json, model.safetensors   (as a single audit)
    OUT/seed-1/   ...
    OUT/audits.json   per-seed results and their spread

Each seed's bound holds at its own confidence; the spread is descriptive (the bounds
are not pooled into one).
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ssviz.audit.run import AUDIT_JSON, CANARIES_CSV, CHECKPOINT, AuditSettings, load_audit, run_audit
from ssviz.errors import SettingsError, SsvizError
from ssviz.executor import InlineExecutor
from ssviz.jsonable import finite_json
from ssviz.train import TrainConfig

SUMMARY_JSON = "audits.json"
SPREAD_KEYS = ("epsilon_lower", "auc", "mia_auc", "epsilon_lower_fdp")
ARRAYS = ("scores", "included_mask", "name")


SEED_PREFIX = "seed-"


def seed_dir(out_dir, seed: int) -> Path:
    return Path(out_dir) / f"{SEED_PREFIX}{seed}"


def partial_dir(out_dir, seed: int) -> Path:
    """Where a seed's folder is written before it is renamed in (a stopped run leaves no half folder)."""
    return Path(out_dir) / f".{SEED_PREFIX}{seed}.partial"


def seed_of(folder: Path) -> int | None:
    """The seed of a ``seed-k`` folder (None for any other path)."""
    name = Path(folder).name
    return int(name[len(SEED_PREFIX):]) if name.startswith(SEED_PREFIX) and name[len(SEED_PREFIX):].isdigit() \
        else None


def finished(folder: Path) -> bool:
    return (folder / CANARIES_CSV).is_file() and (folder / AUDIT_JSON).is_file()


def started(out_dir) -> bool:
    """Whether ``out_dir`` holds a repeated audit, even one stopped before its first summary (so it resumes)."""
    out = Path(out_dir)
    return (out / SUMMARY_JSON).is_file() or any(seed_of(p) is not None for p in out.iterdir())


def seed_folders(out_dir) -> list[Path]:
    """The finished seed folders of a repeated audit (one with its ``audits.json``), by seed; [] otherwise."""
    out = Path(out_dir)
    if not (out / SUMMARY_JSON).is_file():
        return []
    seeds = [p for p in out.iterdir() if seed_of(p) is not None and p.is_dir() and not p.is_symlink()
             and (p / CANARIES_CSV).is_file()]
    return sorted(seeds, key=seed_of)


def audit_task(task: dict) -> dict:
    """One seed on an executor's worker: the audit folder's files as bytes (the driver writes them)."""
    from ssviz.executor import fetch, stop_flag
    from ssviz.tempfiles import private_dir
    settings = AuditSettings(**task["settings"])
    config = TrainConfig.from_dict(task["config"])
    with private_dir("audit") as work:
        run_audit(fetch(task["corpus"]).decode("utf-8"), settings, config, out_dir=work, stop=stop_flag())
        files = {p.relative_to(work).as_posix(): p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}
    return {"seed": settings.seed, "files": files}


def _keep(out_dir: Path, seed: int, files: dict[str, bytes]) -> Path:
    """Write one seed's folder next to its final place, then rename it in (never half a folder)."""
    final = seed_dir(out_dir, seed)
    part = partial_dir(out_dir, seed)
    shutil.rmtree(part, ignore_errors=True)
    for rel, data in files.items():
        target = (part / rel).resolve()
        if not target.is_relative_to(part.resolve()) or rel.startswith("/"):
            raise SsvizError(f"a worker returned a file outside its audit folder: {rel[:80]!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    _place(part, final)
    return final


@dataclass
class AuditsSummary:
    out: str
    seeds: list[int]
    computed: int
    reused: int
    stopped: bool
    seconds: float
    results: list[dict]  # per seed: the single audit's JSON keys, in seed order
    spread: dict         # per key of SPREAD_KEYS: n, mean, std, min, median, max (over seeds that have it)

    def to_json(self) -> dict:
        return finite_json(asdict(self))


def spread(results: list[dict]) -> dict:
    out = {}
    for key in SPREAD_KEYS:
        values = [r[key] for r in results if isinstance(r.get(key), int | float)]
        out[key] = ({"n": len(values), "mean": statistics.fmean(values),
                     "std": statistics.stdev(values) if len(values) > 1 else None, "min": min(values),
                     "median": statistics.median(values), "max": max(values)} if values else {"n": 0})
    return out


def run_audits(text: str, settings: AuditSettings, config: TrainConfig, seeds: int, out_dir, *, executor=None,
               progress=None, stop=None) -> AuditsSummary:
    """The audit for seeds ``settings.seed .. + seeds - 1`` into ``out_dir``; seeds already there are reused.

    The training seed follows the audit seed (one seed: canaries, coins and training). Each seed is a
    task (one CPU) on ``executor``; without one they run in this process, one after another.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise SettingsError(f"seeds must be a whole number >= 1, got {seeds!r}")
    settings, config = settings.validate(), config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    every = [settings.seed + k for k in range(seeds)]
    todo = [s for s in every if not finished(seed_dir(out, s))]
    t0, computed = time.perf_counter(), 0

    def kept() -> None:
        nonlocal computed
        computed += 1
        if progress:
            progress(len(every) - len(todo) + computed, len(every))

    if progress:
        progress(len(every) - len(todo), len(every))
    if executor is None:
        executor = InlineExecutor()
    corpus = executor.share(text.encode("utf-8"))
    tasks = [{"corpus": corpus, "settings": asdict(replace(settings, seed=s)),
              "config": asdict(replace(config, seed=s))} for s in todo]

    def arrived(i: int, res: dict) -> None:
        _keep(out, res["seed"], res["files"])
        kept()

    report = executor.map(audit_task, tasks, on_result=arrived, stop=stop, fail_fast=True)
    if report.failed:
        raise report.failed[0].exception()
    results = [{k: v for k, v in load_audit(seed_dir(out, s)).items() if k not in ARRAYS}
               for s in every if finished(seed_dir(out, s))]
    summary = AuditsSummary(str(out), every, computed, len(every) - len(todo), report.stopped,
                            time.perf_counter() - t0, results, spread(results))
    (out / SUMMARY_JSON).write_text(json.dumps(summary.to_json(), indent=1, allow_nan=False), encoding="utf-8")
    return summary


def _place(part: Path, final: Path) -> None:
    """Rename a finished seed's folder in; its ``audit.json`` names the checkpoint where it now is."""
    doc_path = part / AUDIT_JSON
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    checkpoint = part / CHECKPOINT
    if isinstance(doc.get("results"), dict):
        doc["results"]["checkpoint"] = str(final / CHECKPOINT) if checkpoint.exists() else None
        doc_path.write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    part.rename(final)
