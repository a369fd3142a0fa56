"""The ``scan`` subcommand: which secrets already in a training corpus does a model leak?"""

from __future__ import annotations

from ssviz.cli import emit, nonnegative_int, positive_float, positive_int, progress_printer
from ssviz.errors import SettingsError


def register(sub, parent) -> None:
    from ssviz.scan import KINDS
    p = sub.add_parser("scan", parents=[parent],
                       help="find the secrets in a corpus (SSNs, cards, phones, AWS keys, GitHub tokens) and "
                            "measure each in a model: exposure, extracted?")
    p.add_argument("corpus", help="UTF-8 text file (the model's training data)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated kinds (default: {','.join(KINDS)})")
    p.add_argument("--samples", type=positive_int, default=5_000, help="random fillers of the skew-normal estimate")
    p.add_argument("--max-nodes", type=positive_int, default=20_000, help="node budget of each search")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    add_budget_options(p)
    p.add_argument("--reveal", action="store_true", help="also print each secret in full (never stored)")
    from ssviz.cli.placement import add_placement_options
    add_placement_options(p, adapter=True)
    p.set_defaults(run=run_scan)


MAX_SECONDS = 600.0  # a scan's default time budget: measuring one secret can take minutes


def add_budget_options(p) -> None:
    """``--max-secrets`` and ``--max-seconds``: a scan measures within a budget and says what it left out."""
    from ssviz.scan import MAX_SECRETS
    p.add_argument("--max-secrets", type=positive_int, default=MAX_SECRETS,
                   help=f"measure at most this many secrets, most repeated first (default {MAX_SECRETS})")
    p.add_argument("--max-seconds", type=positive_float, default=MAX_SECONDS,
                   help=f"start no measurement after this many seconds, stop a running one (default {MAX_SECONDS:g})")


def budget_summary(rows, args) -> tuple[dict, str]:
    """The JSON keys and the human line that say what a scan's budget left out."""
    from ssviz.scan import left_out
    out = left_out(rows)
    keys = {"max_secrets": args.max_secrets, "max_seconds": args.max_seconds, "measured": len(rows) - len(out),
            "left_out": len(out)}
    line = (f"{len(out)} secret(s) left out, not measured (budget: {args.max_secrets} secret(s), "
            f"{args.max_seconds:g} s; raise --max-secrets / --max-seconds to measure them)" if out else "")
    return keys, line


def run_scan(args) -> int:
    from ssviz.corpus import read_corpus
    from ssviz.cli.placement import load_from_args, placement_json
    from ssviz.scan import KINDS, scan_corpus

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise SettingsError(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(KINDS)}")
    model = load_from_args(args)
    text = read_corpus(args.corpus)
    rows = scan_corpus(model, text, kinds=kinds, samples=args.samples, search_nodes=args.max_nodes,
                       extraction_nodes=args.max_nodes, seed=args.seed, reveal=args.reveal,
                       max_secrets=args.max_secrets, max_seconds=args.max_seconds,
                       progress=progress_printer("measuring secrets", not args.json))
    budget, budget_line = budget_summary(rows, args)
    payload = {"corpus": args.corpus, "corpus_chars": len(text), "checkpoint": args.checkpoint,
               "kinds": list(kinds), "reveal": args.reveal, "secrets": [r.to_json(args.reveal) for r in rows],
               **budget, **placement_json(model)}
    lines = [f"{len(rows)} distinct secret(s) in {len(text):,} characters"] + ([budget_line] if budget_line else [])
    lines += [f"  {r.label:<18} …{r.last4}  x{r.times_present:<3} "
              + (f"exposure {r.exposure:5.1f} bits ({r.exposure_method})" if r.exposure is not None else r.note)
              + ("  EXTRACTED" if r.extracted else "") for r in rows]
    emit(args, payload, "\n".join(lines))
    return 0
