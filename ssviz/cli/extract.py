"""The ``extract`` subcommand: find the most likely fillers of a template (brute force, sampling, beam, Dijkstra)."""

from __future__ import annotations

import sys

import torch

from ssviz.cli import (
    emit,
    nonnegative_int,
    positive_float,
    positive_int,
    progress_printer,
)
from ssviz.extraction import ALGORITHMS, extract, save_trace
from ssviz.models import load_model
from ssviz.paths import ensure_writable
from ssviz.scoring import EXHAUSTIVE_LIMIT
from ssviz.templates import parse_template


def register(sub, parent) -> None:
    p = sub.add_parser("extract", parents=[parent], help="extract the most likely fillers of a template")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--template", required=True, help="template or preset name (SSN, PIN, ...)")
    p.add_argument("--algorithm", choices=list(ALGORITHMS), default="dijkstra")
    p.add_argument("--top", type=positive_int, default=5, help="how many fillers to report")
    p.add_argument("--beam-width", type=positive_int, default=1000, help="beam search: partial fillers kept")
    p.add_argument("--samples", type=positive_int, default=10_000, help="sampling: fillers drawn")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="sampling: random seed")
    p.add_argument("--max-nodes", type=positive_int, default=100_000, help="dijkstra: node budget")
    p.add_argument("--batch-size", type=positive_int, default=64, help="dijkstra: nodes popped per model step")
    p.add_argument("--max-seconds", type=positive_float, default=None,
                   help="time budget (partial result when reached)")
    p.add_argument("--limit", type=positive_int, default=EXHAUSTIVE_LIMIT, help="brute force: largest space enumerated")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads (default 1: search steps small batches, which extra threads slow down "
                        "on a busy CPU)")
    p.add_argument("--trace", metavar="FILE", help="write the search trace (JSON, see docs/trace.md)")
    p.set_defaults(run=run_extract)


def options_from_args(args) -> dict:
    """Keyword arguments of the chosen algorithm, from the command line."""
    common = {"top_k": args.top, "max_seconds": args.max_seconds, "trace": bool(args.trace)}
    own = {"dijkstra": {"max_nodes": args.max_nodes, "batch_size": args.batch_size},
           "beam": {"beam_width": args.beam_width},
           "sampling": {"samples": args.samples, "seed": args.seed},
           "brute": {"limit": args.limit}}[args.algorithm]
    return {**common, **own}


def run_extract(args) -> int:
    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint)
    template = parse_template(args.template)
    if args.trace:
        ensure_writable(args.trace, "trace")  # before the search, not after it
    progress = progress_printer(args.algorithm, not args.json)
    res = extract(model, template, args.algorithm, progress=progress, **options_from_args(args))
    if progress is not None:
        sys.stderr.write("\n")  # end the progress line even when the run ended before its total
    if args.trace:
        save_trace(res.trace, args.trace)
    payload = res.to_json()
    lines = [f"{args.algorithm}: {'found' if res.found else 'no filler'} "
             f"{template.display(res.found) if res.found else ''} ({res.nodes_expanded:,} nodes, "
             f"{res.model_steps:,} model steps, {res.seconds:.2f} s)"
             + ("" if res.complete else f" [partial: {res.message}]")]
    lines += [f"{i + 1:>3}. {template.display(t['filler'])}\t{t['log_perplexity']:.3f} bits"
              for i, t in enumerate(res.top)]
    emit(args, payload, "\n".join(lines))
    return 0
