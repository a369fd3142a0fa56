"""The ``counterfactual`` subcommand: counterfactual memorization and influence over a pool of models.

    python -m ssviz counterfactual corpus.txt --models 16 --subset 0.5 --validation val.txt --out pool/ --json

Each model is a task on the executor (``--executor local|ray``); the folder it writes resumes a killed run
and feeds the audit's LiRA (see :mod:`ssviz.longtail.counterfactual`).
"""

from __future__ import annotations

import sys

from ssviz.cli import bounded_number, count, emit, progress_printer
from ssviz.cli.cluster import add_executor_options, executor_or_inline
from ssviz.cli.train import add_training_options, config_from_args
from ssviz.errors import SsvizError


subset_fraction = bounded_number(float, 0, True, "a fraction between 0 and 1 (exclusive)", 1, high_open=True)


def register(sub, parent) -> None:
    from ssviz.longtail.counterfactual import MAX_MODELS, UNITS
    from ssviz.longtail.estimators import DEFAULT_BOOTSTRAP
    p = sub.add_parser("counterfactual", parents=[parent],
                       help="counterfactual memorization and influence of every training example over a pool of "
                            "models (Zhang et al.)",
                       description="Trains M models, each on a seeded random subset of the examples (lines or "
                                   "paragraphs) of CORPUS, and reads every training and validation example with "
                                   "every model. mem(x) = mean metric of x under the models trained with x minus "
                                   "under the models trained without it (per-unit accuracy, and mean "
                                   "log-likelihood in bits). A re-run with the same --out resumes.")
    p.add_argument("corpus", help="UTF-8 text file: one example per line (or paragraph, with --unit paragraph)")
    p.add_argument("--models", type=count(MAX_MODELS, low=2), default=16, metavar="M",
                   help="models in the pool (default: 16)")
    p.add_argument("--subset", type=subset_fraction, default=0.5, metavar="F",
                   help="share of the examples each model trains on (default: 0.5)")
    p.add_argument("--unit", choices=UNITS, default="line", help="what one example is (default: line)")
    p.add_argument("--validation", metavar="FILE",
                   help="held-out examples: influence of each training example on them, and early stopping "
                        "(without it, a model's early stopping watches the examples it did not train on)")
    p.add_argument("--out", required=True, metavar="DIR", help="the pool folder (created; resumed when it exists)")
    p.add_argument("--bootstrap", type=count(100_000, low=0), default=DEFAULT_BOOTSTRAP,
                   help=f"bootstrap resamples of the models for the intervals (default: {DEFAULT_BOOTSTRAP})")
    p.add_argument("--top", type=count(10_000), default=10, help="most memorized examples listed (default: 10)")
    add_executor_options(p, "parallel models (one CPU each; the folder is written by this process only)",
                         "models at once (default: 1 here; all CPUs with --executor)")
    add_training_options(p)
    from ssviz.cli.placement import add_placement_options
    add_placement_options(p)
    p.set_defaults(run=run_counterfactual)


def run_counterfactual(args) -> int:
    from pathlib import Path

    from ssviz.longtail.counterfactual import run_pool
    from ssviz.paths import check_outputs
    from ssviz.train import read_corpus

    config = config_from_args(args)
    text = read_corpus(args.corpus)
    validation = read_corpus(args.validation) if args.validation else None
    out = Path(args.out)
    inputs = {"corpus": args.corpus, **({"--validation": args.validation} if args.validation else {})}
    check_outputs({"--out": out}, inputs)
    if out.exists() and not out.is_dir():
        raise SsvizError(f"--out {out} is a file: the pool is a folder")
    from ssviz.cli.placement import resolved_json, training_placement
    with executor_or_inline(args) as executor, training_placement(args):
        result = run_pool(text, config, out, models=args.models, subset=args.subset, unit=args.unit,
                          validation=validation, executor=executor, bootstrap=args.bootstrap, top=args.top,
                          progress=progress_printer("models", not args.json),
                          log=None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True)))
    payload = {**result.to_json(), **resolved_json(args)}
    lines = [f"{result.models} models ({result.trained} trained, {result.reused} reused) on {result.examples} "
             f"examples in {result.seconds:.1f} s; wrote {out}", "most memorized (accuracy, log-likelihood bits):"]
    for r in payload["top"]:
        lines.append(f"  {r['example']:>6}  {_num(r['mem_accuracy'])}  {_num(r['mem_log_likelihood'])}  "
                     f"{str(r['text'])[:70]}")
    if payload["influence"]:
        lines.append("highest influence (train -> validation, accuracy):")
        for r in payload["influence"][:5]:
            lines.append(f"  {r['train_example']:>6} -> {r['validation_example']:<6} {_num(r['influence_accuracy'])}")
    emit(args, payload, "\n".join(lines))
    return 0


def _num(v) -> str:
    return "   nan" if v is None else f"{v:+.3f}"
