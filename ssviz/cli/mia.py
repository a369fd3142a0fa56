"""The ``mia`` subcommand: the membership attack battery on member and non-member texts, with the blind
baseline beside it."""

from __future__ import annotations

from pathlib import Path

from ssviz.cli import bounded_number, emit, nonnegative_int, progress_printer
from ssviz.cli.placement import add_placement_options, load_from_args, placement_json

HELP = "membership attacks (loss, zlib, lowercase, Min-K, Min-K++, reference, LiRA) with a blind baseline"


# Min-K%'s k: a fraction of the units, at least one of them
fraction = bounded_number(float, 0, True, "a fraction in (0, 1]", 1)


def register(sub, parent) -> None:
    p = sub.add_parser("mia", parents=[parent], help=HELP)
    p.add_argument("--checkpoint", required=True, help="the target model")
    p.add_argument("--members", required=True, metavar="FILE", help="member texts, one per line (UTF-8)")
    p.add_argument("--nonmembers", required=True, metavar="FILE", help="non-member texts, one per line (UTF-8)")
    p.add_argument("--reference", metavar="REF_CHECKPOINT", help="a reference model (for the ref attack)")
    p.add_argument("--pool", metavar="DIR", help="a counterfactual pool folder (for the lira attack)")
    p.add_argument("--attacks", help="comma-separated, from loss,zlib,lowercase,mink,minkpp,ref,lira (default: "
                                     "every attack whose input is given)")
    p.add_argument("--k", type=fraction, default=0.2, help="fraction of lowest units for Min-K%% and Min-K%%++")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the bootstrap and the blind baseline's "
                                                                   "folds")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for scores.csv, texts.csv and mia.json")
    add_placement_options(p, adapter=True)
    p.set_defaults(run=run_mia)


def run_mia(args) -> int:
    from ssviz.membership.attacks import parse_attacks
    from ssviz.membership.run import MIA_JSON, SCORES_CSV, TEXTS_CSV, read_lines, run_mia as mia, save_mia
    from ssviz.models import load_model
    from ssviz.paths import check_outputs, ensure_writable

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        from ssviz.errors import SsvizError
        raise SsvizError(f"--out {out} is a file, not a folder")
    inputs = {"--checkpoint": args.checkpoint, "--members": args.members, "--nonmembers": args.nonmembers,
              "--reference": args.reference}
    for n in (SCORES_CSV, MIA_JSON, TEXTS_CSV):  # before any reading: never over an input
        check_outputs({"--out": out / n}, inputs)
    names = parse_attacks(args.attacks, reference=args.reference is not None, pool=args.pool is not None)
    members = read_lines(args.members, "members")
    nonmembers = read_lines(args.nonmembers, "non-members")
    model = load_from_args(args)
    reference = load_model(args.reference, device=args.device, dtype=args.dtype) if args.reference else None
    out.mkdir(parents=True, exist_ok=True)
    for n in (SCORES_CSV, MIA_JSON, TEXTS_CSV):
        ensure_writable(out / n, "--out")
    result = mia(model, members, nonmembers, attacks=names, k=args.k, reference=reference, pool=args.pool,
                 seed=args.seed, progress=progress_printer("reading texts", not args.json))
    extra = {"checkpoint": str(args.checkpoint), **placement_json(model), "reference": args.reference,
             "members_file": str(args.members),
             "nonmembers_file": str(args.nonmembers)}
    save_mia(result, out, extra)
    payload = {**result.to_json(), **extra, "out": str(out)}
    emit(args, payload, summary_text(payload) + f"\nwrote {out}")
    return 0


def summary_text(r: dict) -> str:
    """The human summary: one line per attack with its intervals, the blind baseline, the verdict."""
    def line(name: str, a: dict) -> str:
        if a.get("auc") is None:
            return f"  {name:<10} no score ({a.get('message', '')})"
        lo, hi = a["auc_ci"]
        t, (tl, th) = a["tpr_at_fpr"]["0.01"], a["tpr_ci"]["0.01"]
        scored = f" [{a['scored']} scored]" if "scored" in a and a["scored"] < r["members"] + r["nonmembers"] else ""
        return (f"  {name:<10} AUC {a['auc']:.3f} ({lo:.3f}-{hi:.3f})  TPR at 1% FPR {t:.3f} "
                f"({tl:.3f}-{th:.3f}){scored}")
    lines = [f"{r['members']} members, {r['nonmembers']} non-members (95% intervals):"]
    lines += [line(n, a) for n, a in r["attacks"].items()]
    lines.append(line("blind", r["blind"]))
    lines.append(r["shift_message"])
    return "\n".join(lines)
