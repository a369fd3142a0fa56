"""The ``sanitize`` and ``sweep`` subcommands (defenses and memorization dynamics)."""

from __future__ import annotations

from ssviz.cli import count, emit, progress_printer
from ssviz.cli.cluster import add_executor_options, executor_or_inline
from ssviz.cli.train import add_training_options, canary_from_args, check_output, config_from_args
from ssviz.errors import SsvizError
from ssviz.train import read_corpus


def register(sub, parent) -> None:
    p = sub.add_parser("sanitize", parents=[parent], help="remove likely secrets from a corpus before training",
                       description="regex: delete SSN/card-number formats (misses other formats, e.g. a 6-digit "
                                   "code); lpd: train two models on two halves of the lines and drop the lines "
                                   "with the largest log-perplexity difference (the paper's Appendix F).")
    p.add_argument("corpus", help="UTF-8 text file")
    p.add_argument("--method", choices=["regex", "lpd"], required=True)
    p.add_argument("--out", required=True, help="where to write the cleaned corpus")
    p.add_argument("--top-fraction", type=float, default=0.1, metavar="F", help="lpd: fraction of lines to drop")
    p.add_argument("--lpd-score", choices=["raw", "per_char"], default="raw",
                   help="lpd: rank by |L_F - L_G| in bits (the paper) or per character (less biased to long lines)")
    p.add_argument("--canary-line", metavar="TEXT", help="report where this exact line ranked / whether it was removed")
    p.add_argument("--show", type=int, default=20, help="removed items listed in the output")
    add_training_options(p)
    p.set_defaults(run=run_sanitize)

    s = sub.add_parser("sweep", parents=[parent], help="train over a grid of one or two settings x seeds (DuckDB)",
                       description="e.g. --grid batch_size=32,128 --grid hidden=64,128 --seeds 2. Runs already in "
                                   "the database are skipped, so an interrupted sweep resumes.")
    s.add_argument("corpus", help="UTF-8 text file")
    s.add_argument("--canary", metavar="TEMPLATE", required=True)
    s.add_argument("--secret", metavar="FILLER")
    s.add_argument("--insertions", type=count(1_000_000), default=1, help="times the canary is inserted (default: 1)")
    s.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2",
                   help="a TrainConfig setting (or 'insertions') and its values; give one or two")
    s.add_argument("--seeds", type=count(10_000), default=2, help="seeds per cell (seed, seed+1, ...)")
    s.add_argument("--db", default=None, help="DuckDB file (default data/sweeps.duckdb)")
    s.add_argument("--name", help="sweep name (default: a hash of corpus, canary, config and grid)")
    add_executor_options(s, "parallel runs (one CPU each; the database is written by this process only)",
                         "runs at once (default: 1 here, one after another; all CPUs with --executor)")
    add_training_options(s)
    from ssviz.cli.placement import add_placement_options
    add_placement_options(s)
    s.set_defaults(run=run_sweep_cmd)


def run_sanitize(args) -> int:
    from ssviz.defenses.sanitize import sanitize
    options = {"canary_line": args.canary_line}
    if args.method == "lpd":
        options.update(top_fraction=args.top_fraction, config=config_from_args(args), seed=args.seed,
                       score=args.lpd_score)
    text = read_corpus(args.corpus)
    out = check_output(args.out, inputs=[args.corpus])  # before the (LPD: two trainings of) work
    result = sanitize(text, args.method, **options)
    from ssviz.tempfiles import atomic_write
    atomic_write(out, result.text)
    payload = {"out": str(out), **result.to_json(max_removed=args.show)}
    summary = (f"{args.method}: removed {len(result.removed)} match(es), {result.chars_removed} characters"
               if args.method == "regex" else
               f"lpd: dropped {result.lines_removed} of {payload['lines_scored']} lines")
    if result.canary_rank is not None:
        summary += f"; canary line ranked {result.canary_rank}"
    if result.canary_removed is not None:
        summary += f"; canary line {'removed' if result.canary_removed else 'KEPT'}"
    emit(args, payload, summary + f"; wrote {out}")
    return 0


def run_sweep_cmd(args) -> int:
    from ssviz.sweeps import (
        DEFAULT_SWEEP_DB,
        load_runs,
        parse_grid,
        run_sweep,
        summarize,
    )
    base = config_from_args(args)
    text = read_corpus(args.corpus)
    canary = canary_from_args(args)
    grid = dict(parse_grid(g) for g in args.grid)
    if len(grid) != len(args.grid):
        raise SsvizError("each --grid must name a different setting")
    db = check_output(args.db or DEFAULT_SWEEP_DB, inputs=[args.corpus], what="--db")
    from ssviz.cli.placement import resolved_json, training_placement
    with executor_or_inline(args) as executor, training_placement(args):
        summary = run_sweep(text, canary, base, grid, args.seeds, db=db, sweep=args.name, executor=executor,
                            progress=progress_printer("sweep runs", not args.json))
    table = summarize(load_runs(db, summary.sweep))
    cells = table.astype(object).where(table.notna(), None).to_dict(orient="records")  # NaN is not JSON
    payload = {**summary.to_json(), "db": str(db), "cells": cells, **resolved_json(args)}
    emit(args, payload, f"{summary.sweep}: {summary.computed} run(s) computed, {summary.skipped} already stored "
                        f"({summary.seconds:.1f}s){' - stopped' if summary.stopped else ''}\n"
                        + table.to_string(index=False))
    return 0
