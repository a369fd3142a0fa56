"""Core subcommands: score and exposure."""

from __future__ import annotations

from pathlib import Path

import torch

from ssviz import exposure as exposure_mod
from ssviz.cli import emit, nonnegative_int, positive_int, progress_printer
from ssviz.errors import MissingFileError, SsvizError
from ssviz.memory import ensure_memory
from ssviz.models import load_checkpoint
from ssviz.scoring import score_fillers
from ssviz.templates import parse_template


def register(sub, parent) -> None:
    p = sub.add_parser("score", parents=[parent], help="log-perplexity (bits) of fillers of a template")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--template", required=True, help="template or preset name (SSN, PIN, ...)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--fillers", metavar="FILE", help="one filler per line")
    g.add_argument("--secret", metavar="FILLER")
    p.set_defaults(run=run_score)

    p = sub.add_parser("exposure", parents=[parent], help="exposure of a secret")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--template", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--method", default="auto", choices=list(exposure_mod.METHODS) + ["search"])
    p.add_argument("--samples", type=positive_int, default=10_000)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--max-nodes", type=positive_int, default=200_000, help="node budget for --method search")
    p.set_defaults(run=run_exposure)
    for name in ("score", "exposure"):
        sub.choices[name].add_argument("--threads", type=positive_int, default=None,
                                       help="torch CPU threads (1 is often fastest on a shared machine)")


def _set_threads(args) -> None:
    if args.threads is not None:
        torch.set_num_threads(args.threads)


def run_score(args) -> int:
    _set_threads(args)
    model = load_checkpoint(args.checkpoint)
    template = parse_template(args.template)
    template.check_vocab(model.vocab)
    if args.fillers:
        path = Path(args.fillers)
        if not path.is_file():
            raise MissingFileError(f"fillers file not found: {path}")
        ensure_memory(path.stat().st_size * 16, f"the fillers in {path}", "split the file")
        try:
            fillers = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except UnicodeDecodeError:
            raise SsvizError(f"{path} is not UTF-8 text") from None
    else:
        fillers = [args.secret]
    fillers = [template.normalize(f) for f in fillers]
    lps = score_fillers(model, template, fillers)
    results = [{"filler": f, "log_perplexity": float(x)} for f, x in zip(fillers, lps)]
    emit(args, {"results": results}, "\n".join(f"{r['filler']}\t{r['log_perplexity']:.4f}" for r in results))
    return 0


def run_exposure(args) -> int:
    _set_threads(args)
    model = load_checkpoint(args.checkpoint)
    template = parse_template(args.template)
    progress = progress_printer("scoring", not args.json)
    if args.method == "search":
        from ssviz.extraction import search_exposure  # provided by the extraction issue
        res = search_exposure(model, template, args.secret, max_nodes=args.max_nodes, progress=progress)
    else:
        res = exposure_mod.measure(model, template, args.secret, args.method, samples=args.samples,
                                   seed=args.seed, progress=progress)
    payload = res.to_json()
    emit(args, payload, f"exposure {res.exposure:.2f} bits ({res.method}; log2|R| = {payload['log2_space_size']:.1f}"
                        + (f", rank {res.rank}" if res.rank else "") + ")")
    return 0
