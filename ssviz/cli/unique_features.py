"""The ``unique-features`` subcommand: does a model react to a feature it saw once (Hartley and Tsaftaris)?

``unique-features image`` trains small classifiers with a unique feature in one training image
(one per seed, as executor tasks) and measures M2 against controls; ``unique-features text``
measures a language model ssviz loads for a string (a name, an ID).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ssviz.cli import (bounded_number, count, emit, finite_float, nonnegative_int, positive_int,
                       progress_printer)
from ssviz.cli.placement import add_placement_options, load_from_args, placement_json
from ssviz.cli.cluster import add_executor_options, executor_or_inline
from ssviz.errors import SsvizError

HELP = "unique features: does the model react to a feature it saw once (images or text; Hartley & Tsaftaris)"


dropout_rate = bounded_number(float, 0, False, "a number in [0, 1)", 1, high_open=True)


def register(sub, parent) -> None:
    p = sub.add_parser("unique-features", parents=[parent], help=HELP)
    kinds = p.add_subparsers(dest="kind", required=True)

    im = kinds.add_parser("image", parents=[parent], help="train classifiers with a unique feature in one training "
                                                           "image and measure M2 against controls")
    im.add_argument("--data", default="digits", help="digits (scikit-learn's bundled 8x8 digits) or FILE.npz with "
                                                      "'images' [N, H, W] and 'labels' [N] (optional 'ood')")
    im.add_argument("--arch", choices=("mlp", "cnn"), default="mlp", help="classifier (default mlp)")
    im.add_argument("--insertions", type=nonnegative_int, default=1,
                    help="training images carrying the feature (0: the same training without it, the contrast)")
    im.add_argument("--seeds", type=count(1_000), default=10, help="training seeds --seed, --seed+1, ... (default 10)")
    im.add_argument("--seed", type=nonnegative_int, default=0, help="first seed")
    im.add_argument("--controls", type=count(10_000, 2), default=50, help="control features (default 50)")
    im.add_argument("--ood", type=count(100_000, 2), default=200, help="out-of-distribution images (default 200)")
    im.add_argument("--early-stopping", action=argparse.BooleanOptionalAction, default=True,
                    help="stop when the validation loss has not improved for 10 epochs, keep the best weights")
    im.add_argument("--weight-decay", type=finite_float, default=0.0, help="Adam's L2 weight decay")
    im.add_argument("--dropout", type=dropout_rate, default=0.0, help="dropout after each hidden layer")
    im.add_argument("--batch-norm", action="store_true", help="batch normalization in every hidden block")
    im.add_argument("--epochs", type=count(10_000), default=200, help="most epochs (default 200)")
    im.add_argument("--lr", type=finite_float, default=3e-4, help="Adam's learning rate (default 3e-4)")
    im.add_argument("--classifier", metavar="FILE.safetensors",
                    help="measure this classifier instead of training (no UF class known: black-box test)")
    im.add_argument("--out", required=True, help="folder for per_input.csv, unique_features.json, classifiers/")
    im.add_argument("--force", action="store_true", help="write into an existing non-empty --out folder")
    add_executor_options(im, "seeds as tasks (one CPU each)",
                         "seeds at once (default: 1 here, one after another; all CPUs with --executor)")
    im.set_defaults(run=run_image)

    tx = kinds.add_parser("text", parents=[parent], help="measure a language model's reaction to a string it may "
                                                          "have seen once")
    tx.add_argument("--checkpoint", required=True, help="any model ssviz loads")
    tx.add_argument("--feature", required=True, help="the string (a name, an ID) that may occur in one training text")
    tx.add_argument("--contexts", help="UTF-8 text file of out-of-training contexts, one per line (default: the "
                                       "held-out part of ssviz's demo corpus)")
    tx.add_argument("--corpus", help="the training corpus, if known: controls that occur in it are redrawn")
    tx.add_argument("--controls", type=count(10_000, 2), default=50, help="control strings (default 50)")
    tx.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the controls and random strings")
    tx.add_argument("--next-units", type=count(32), default=4,
                    help="next-unit distributions compared per context: at the start of each of the next K words")
    tx.add_argument("--max-contexts", type=positive_int, default=50, help="contexts used at most (default 50)")
    tx.add_argument("--out", required=True, help="folder for per_input.csv and unique_features.json")
    tx.add_argument("--force", action="store_true", help="write into an existing non-empty --out folder")
    add_placement_options(tx, adapter=True)
    tx.set_defaults(run=run_text)


def _check_out(args, inputs) -> Path:
    from ssviz.cli.train import check_output
    from ssviz.unique_features.run import PER_INPUT_CSV, RESULTS_JSON
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.force)):
        raise SsvizError(f"--out {out} exists and is not an empty folder (choose another, or --force)")
    for name in (PER_INPUT_CSV, RESULTS_JSON):
        check_output(out / name, inputs=[i for i in inputs if i], what="--out")
    return out


def run_image(args) -> int:
    from ssviz.unique_features.images import ImageSettings, load_classifier
    from ssviz.unique_features.run import run_classifier, run_images

    settings = ImageSettings(data="digits" if args.data == "digits" else "npz", arch=args.arch,
                             insertions=args.insertions, controls=args.controls, ood=args.ood,
                             early_stopping=args.early_stopping, weight_decay=args.weight_decay,
                             dropout=args.dropout, batch_norm=args.batch_norm, epochs=args.epochs, lr=args.lr
                             ).validate()
    data_bytes = None
    if args.data != "digits":
        path = Path(args.data)
        if not path.is_file():
            raise SsvizError(f"--data {args.data}: no such file (digits or a .npz file)")
        data_bytes = path.read_bytes()
    out = _check_out(args, [args.data if data_bytes is not None else None, args.classifier])
    if args.classifier:
        doc = run_classifier(load_classifier(args.classifier), settings, args.seed, out, data_bytes=data_bytes)
    else:
        seeds = [args.seed + k for k in range(args.seeds)]
        with executor_or_inline(args) as executor:
            doc = run_images(settings, seeds, out, data_bytes=data_bytes, executor=executor,
                             progress=progress_printer("seeds", not args.json))
    emit(args, doc, _summary(doc) + f"\nwrote {out}")
    return 0


def run_text(args) -> int:
    from ssviz.corpus import read_corpus
    from ssviz.unique_features.run import run_text as measure
    from ssviz.unique_features.text import read_contexts, shipped_contexts

    out = _check_out(args, [args.checkpoint, args.contexts, args.corpus])
    model = load_from_args(args)
    if args.contexts:
        contexts, source = read_contexts(_text_file(args.contexts, "--contexts"), args.max_contexts), args.contexts
        corpus = read_corpus(args.corpus) if args.corpus else None
    else:
        contexts, shipped = shipped_contexts(args.max_contexts)
        source = "shipped prose (held-out demo corpus)"
        corpus = read_corpus(args.corpus) if args.corpus else shipped
    doc = measure(model, args.feature, contexts, controls=args.controls, seed=args.seed, next_units=args.next_units,
                  corpus=corpus, out_dir=out, progress=progress_printer("texts read", not args.json),
                  extra={"checkpoint": str(args.checkpoint), **placement_json(model), "context_source": source})
    emit(args, doc, _summary(doc) + f"\nwrote {out}")
    return 0


def _text_file(path: str, what: str) -> str:
    """A UTF-8 text file of any length (a contexts file may be a few lines)."""
    from ssviz.corpus import read_text
    return read_text(path, what, expected="a text file").replace("\r\n", "\n")


def _summary(doc: dict) -> str:
    lines = []
    for r in doc["results"]:
        line = (f"seed {r['seed']}: M2 {r['m2']:.4f} [{r['m2_ci'][0]:.4f}, {r['m2_ci'][1]:.4f}], rank {r['rank']} of "
                f"{len(r['controls']) + 1} (controls' median {sorted(r['controls'])[len(r['controls']) // 2]:.4f})")
        if r.get("p_value") is not None:
            line += f", class-probability test p = {r['p_value']:.3g}"
        lines.append(line)
    s = doc["summary"]
    lines.append(f"the unique feature ranks first in {s['uf_top']} of {s['seeds']} seed(s) "
                 f"({doc['seconds']:.1f} s)")
    return "\n".join(lines)
