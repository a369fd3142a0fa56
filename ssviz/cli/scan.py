"""The ``scan`` subcommand: which secrets already in a training corpus does a model leak?"""

from __future__ import annotations

from ssviz.cli import emit, nonnegative_int, positive_int, progress_printer
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
    p.add_argument("--reveal", action="store_true", help="also print each secret in full (never stored)")
    p.set_defaults(run=run_scan)


def run_scan(args) -> int:
    from ssviz.corpus import read_corpus
    from ssviz.measure import scan_corpus
    from ssviz.models import load_model
    from ssviz.scan import KINDS

    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise SettingsError(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(KINDS)}")
    model = load_model(args.checkpoint)
    text = read_corpus(args.corpus)
    rows = scan_corpus(model, text, kinds=kinds, samples=args.samples, search_nodes=args.max_nodes,
                       extraction_nodes=args.max_nodes, seed=args.seed, reveal=args.reveal,
                       progress=progress_printer("measuring secrets", not args.json))
    payload = {"corpus": args.corpus, "corpus_chars": len(text), "checkpoint": args.checkpoint,
               "kinds": list(kinds), "reveal": args.reveal, "secrets": [r.to_json(args.reveal) for r in rows]}
    lines = [f"{len(rows)} distinct secret(s) in {len(text):,} characters"]
    lines += [f"  {r.label:<18} …{r.last4}  x{r.times_present:<3} "
              + (f"exposure {r.exposure:5.1f} bits ({r.exposure_method})" if r.exposure is not None else r.note)
              + ("  EXTRACTED" if r.extracted else "") for r in rows]
    emit(args, payload, "\n".join(lines))
    return 0
