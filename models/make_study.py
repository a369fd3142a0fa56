"""Rebuild the bundled per-user study: models/study/enron-demo.duckdb and its ground truth.

    nice python models/make_study.py              # a few minutes on a 2-core CPU
    nice python models/make_study.py --workers 2  # users in parallel processes

It writes a synthetic Enron-style maildir (seeded, Faker names, nothing real)
to a temporary folder, where 4 users mention secrets 1 to 50 times, runs the
study pipeline on it with small models (1x128 LSTM) and writes a fresh store
plus ``ground_truth.json`` (the synthetic secrets in clear, for checking) and
``README.md`` (how it was made, and what it shows) beside it. Trained
checkpoints can be cached with ``--cache-dir data/enron-cache`` (gitignored), so a re-run with the
same settings only re-measures. By default a fresh temporary cache is used, so
the timings in the README are those of training from scratch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path


from ssviz.enron.pipeline import StudySettings, run_study
from ssviz.enron.synthetic import TEST_SSN, PlantedSecret, generate_maildir, random_ccn, random_ssn
from ssviz.store import BUNDLED_STUDY, Store
from ssviz.train import TrainConfig

SEED = 5
MESSAGES = 250
# (user index, type, times): the Table 5 story needs a range of repetitions per type
PLAN = [(0, "ccn", 50), (1, "ssn", 20), (1, "ccn", 1), (2, "ssn", 5), (3, "ccn", 10), (3, "test-ssn", 2)]
SETTINGS = StudySettings(
    train=TrainConfig(arch="lstm", layers=1, hidden=128, embedding_dim=32, epochs=20, batch_size=64, seq_len=40,
                      lr=0.004, seed=0, patience=None),
    exposure_samples=5_000, search_nodes=20_000, extraction_nodes=20_000)


def planted(seed: int = SEED) -> list[PlantedSecret]:
    import random
    rng = random.Random(seed)
    out = []
    for i, kind, times in PLAN:
        if kind == "test-ssn":
            out.append(PlantedSecret(f"user{i}", "ssn", TEST_SSN, times))
        else:
            out.append(PlantedSecret(f"user{i}", kind, random_ccn(rng) if kind == "ccn" else random_ssn(rng), times))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(BUNDLED_STUDY), help="the store to write (replaced)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache-dir", default=None, help="checkpoint cache to reuse (default: a fresh temporary one)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ssviz-study-") as tmp:
        truth = generate_maildir(tmp, users=4, messages=MESSAGES, seed=SEED, plan=planted())
        tmp_db = Path(tmp) / out.name
        rows = run_study(tmp, tmp_db, settings=SETTINGS, workers=args.workers,
                         cache_dir=args.cache_dir or Path(tmp) / "cache",
                         source_label=f"synthetic maildir, seed {SEED}",
                         log=lambda m: print(m, file=sys.stderr, flush=True))
        shutil.copyfile(tmp_db, out)  # built aside, then copied: the shipped file is never half-written
    seconds = time.perf_counter() - t0
    (out.parent / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    users = Store(out, read_only=True).table("users")
    write_readme(out.parent / "README.md", rows, users, seconds)
    print(json.dumps({"store": str(out), "seconds": seconds, "secrets": rows}, indent=2, default=str))
    return 0


def write_readme(path: Path, rows: list[dict], users, seconds: float) -> None:
    lines = ["# Bundled per-user study (synthetic Enron-style mail)", "",
             "Regenerate with `nice python models/make_study.py` (add `--workers 2` for parallel users). "
             f"It took {seconds:.0f} s on the 2-core build machine. Training is seeded, but float sums depend on "
             "the number of torch threads, so a rebuild can differ in the last digits (and, for a secret the model "
             "did not memorize, in its skew-normal estimate).", "",
             f"Synthetic maildir: 4 users, {MESSAGES} sent messages each, seed {SEED} "
             "(`ssviz.enron.synthetic.generate_maildir`; names from Faker, secrets random; nothing real). "
             "`ground_truth.json` lists the planted secrets (synthetic, in clear); the store holds only "
             "salted hashes and last 4 digits.", "",
             "Settings (`ssviz.enron.pipeline.StudySettings`):", "", "```",
             json.dumps({**asdict(SETTINGS), "train": asdict(SETTINGS.train)}, indent=1), "```", "",
             "| user | type | last4 | times present | exposure (bits) | method | extracted |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        exp = "-" if r["exposure"] is None else f"{r['exposure']:.1f}"
        lines.append(f"| {r['user']} | {r['type']} | {r['last4']} | {r['times_present']} | {exp} | "
                     f"{r['exposure_method']} | {'yes' if r['extracted'] else 'no'} |")
    lines += ["", "Per user: " + ", ".join(f"{u} {c:,} chars in {s:.0f} s (training {t:.0f} s)" for u, c, s, t in
                                         zip(users["user"], users["corpus_chars"], users["seconds"],
                                             users["train_seconds"])), ""]
    path.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
