"""The ``extract`` subcommand: find the most likely fillers of a template (brute force, sampling, beam, Dijkstra)."""

from __future__ import annotations

import sys

from ssviz.cli import (
    count,
    emit,
    nonnegative_int,
    positive_float,
    positive_int,
    progress_printer,
)
from ssviz.extraction import ALGORITHMS, extract, save_trace
from ssviz.cli.placement import add_placement_options, load_from_args, placement_json
from ssviz.paths import check_outputs, ensure_writable
from ssviz.scoring import EXHAUSTIVE_LIMIT
from ssviz.templates import parse_template


def register(sub, parent) -> None:
    p = sub.add_parser("extract", parents=[parent], help="extract the most likely fillers of a template")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--template", required=True, help="template or preset name (SSN, PIN, ...)")
    p.add_argument("--algorithm", choices=list(ALGORITHMS), default="dijkstra")
    p.add_argument("--top", type=count(100_000), default=5, help="how many fillers to report")
    p.add_argument("--beam-width", type=positive_int, default=1000, help="beam search: partial fillers kept")
    p.add_argument("--samples", type=positive_int, default=10_000, help="sampling: fillers drawn")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="sampling: random seed")
    p.add_argument("--max-nodes", type=positive_int, default=100_000, help="dijkstra: node budget")
    p.add_argument("--batch-size", type=count(65_536), default=64, help="dijkstra: nodes popped per model step")
    p.add_argument("--max-memory", type=positive_float, default=None, metavar="MB",
                   help="dijkstra: memory for kept model states and the frontier (default 512)")
    p.add_argument("--secret", default=None, help="a filler to look for among the results: its rank there and "
                   "the longest prefix a result shares with it")
    p.add_argument("--max-seconds", type=positive_float, default=None,
                   help="time budget (partial result when reached)")
    p.add_argument("--limit", type=positive_int, default=EXHAUSTIVE_LIMIT, help="brute force: largest space enumerated")
    p.add_argument("--threads", type=count(1_000_000), default=1,
                   help="torch CPU threads (default 1: search steps small batches, which extra threads slow down "
                        "on a busy CPU)")
    p.add_argument("--trace", metavar="FILE", help="write the search trace (JSON, see docs/trace.md)")
    add_placement_options(p, adapter=True)
    p.set_defaults(run=run_extract)


def options_from_args(args) -> dict:
    """Keyword arguments of the chosen algorithm, from the command line."""
    common = {"top_k": args.top, "max_seconds": args.max_seconds, "trace": bool(args.trace)}
    memory = {} if args.max_memory is None else {"max_memory_mb": args.max_memory}
    own = {"dijkstra": {"max_nodes": args.max_nodes, "batch_size": args.batch_size, **memory},
           "beam": {"beam_width": args.beam_width},
           "sampling": {"samples": args.samples, "seed": args.seed},
           "brute": {"limit": args.limit}}[args.algorithm]
    return {**common, **own}


def run_extract(args) -> int:
    from ssviz.memory import cap_to_cpus
    threads = cap_to_cpus(args.threads, "--threads")  # 10^4 threads hang, 10^5 panic
    if args.trace:  # before loading and searching, not after: never over the checkpoint
        check_outputs({"--trace": args.trace}, {"--checkpoint": args.checkpoint})
        ensure_writable(args.trace, "trace")
    model = load_from_args(args)
    template = parse_template(args.template)
    progress = progress_printer(args.algorithm, not args.json)
    res = extract(model, template, args.algorithm, progress=progress, threads=threads, **options_from_args(args))
    if progress is not None:
        sys.stderr.write("\n")  # end the progress line even when the run ended before its total
    if args.trace:
        save_trace(res.trace, args.trace)
    payload = {**res.to_json(), **placement_json(model)}
    if args.secret is not None:
        where = res.against(template.normalize(args.secret))
        payload["secret"] = where
    lines = [f"{args.algorithm}: {'found' if res.found else 'no filler'} "
             f"{template.display(res.found) if res.found else ''} ({res.nodes_expanded:,} nodes, "
             f"{res.model_steps:,} model steps, {res.seconds:.2f} s)"
             + ("" if res.complete else f" [partial: {res.message}]")]
    lines += [f"{i + 1:>3}. {template.display(t['filler'])}\t{t['log_perplexity']:.3f} bits"
              for i, t in enumerate(res.top)]
    if args.secret is not None:
        lines.append(f"the secret is number {where['secret_rank']} of the {len(res.top)} results" if where["secret_rank"]
                     else f"the secret is not among the {len(res.top)} results; the closest, "
                          f"{where['closest']}, shares its first {where['shared_prefix']} characters")
    emit(args, payload, "\n".join(lines))
    return 0
