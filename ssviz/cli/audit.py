"""The ``audit`` subcommand: canaries in and out, one training run, membership ROC and an epsilon lower bound."""

from __future__ import annotations

from pathlib import Path

from ssviz.cli import count, emit, positive_int, probability, progress_printer
from ssviz.cli.cluster import add_executor_options, executor_given, executor_or_inline
from ssviz.cli.train import add_training_options, check_output, config_from_args
from ssviz.errors import SsvizError


def register(sub, parent) -> None:
    p = sub.add_parser("audit", parents=[parent],
                       help="privacy audit: train once with random canaries, report ROC, AUC and an epsilon lower "
                            "bound (Steinke, Nasr, Jagielski 2023)")
    p.add_argument("corpus", nargs="?", help="UTF-8 text file (not needed with --from)")
    p.add_argument("--from", dest="from_dir", metavar="DIR", help="recompute the metrics of a finished audit")
    p.add_argument("--template", help="template of the audit canaries, e.g. 'The code is {d:6}'")
    p.add_argument("--canary-kind", choices=("random", "new-token", "bigram"), default="random",
                   help="what the canaries are made of: random fillers of --template (default); new-token: the "
                        "slots filled with characters whose units the training data never uses; bigram: fillers "
                        "sampled from a character bigram model of the training data (see docs/audit.md)")
    p.add_argument("--canaries", type=positive_int, default=500, help="M: canaries drawn (default 500)")
    p.add_argument("--insertions", type=positive_int, default=8, help="K: times an included canary is inserted")
    p.add_argument("--inclusion", type=probability, default=0.5,
                   help="probability each canary is included (the bound needs 0.5)")
    p.add_argument("--delta", type=probability, default=None,
                   help="delta of the lower bound (default: --dp-delta, 1e-5)")
    p.add_argument("--confidence", type=probability, default=0.95, help="confidence of the lower bound")
    p.add_argument("--out", help="folder to write canaries.csv, audit.json and the checkpoint")
    p.add_argument("--force", action="store_true", help="write into an existing non-empty --out folder")
    p.add_argument("--seeds", type=count(10_000), default=1,
                   help="repeat the audit over seeds --seed, --seed+1, ... into --out/seed-N (resumes: seeds "
                        "already there are kept) and report the spread")
    add_executor_options(p, "repeated audits (--seeds: one CPU per seed; --out is written by this process only)",
                         "seeds at once (default: 1 here, one after another; all CPUs with --executor)")
    add_training_options(p)
    from ssviz.cli.placement import add_placement_options
    add_placement_options(p)
    p.set_defaults(run=run_audit)


def run_audit(args) -> int:
    from ssviz.cli.placement import training_placement
    with training_placement(args):
        return _run_audit(args)


def _run_audit(args) -> int:
    from ssviz.audit.run import AuditSettings, load_audit, run_audit as audit
    from ssviz.audit.seeds import started as seeds_started
    from ssviz.train import read_corpus

    if args.from_dir:
        res = load_audit(args.from_dir, delta=args.delta, confidence=args.confidence)
        res = {k: v for k, v in res.items() if k not in ("scores", "included_mask", "name")}
        emit(args, res, _summary(res))
        return 0
    if not args.corpus or not args.template or not args.out:
        raise SsvizError("an audit needs CORPUS, --template and --out (or --from DIR)")
    config = config_from_args(args)
    settings = AuditSettings(args.template, args.canaries, args.insertions, args.inclusion,
                             args.delta if args.delta is not None else config.dp_delta, args.confidence,
                             args.seed, args.canary_kind).validate()
    out = Path(args.out)
    repeated = args.seeds > 1 or executor_given(args) or args.workers is not None
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.force
                                              and not (repeated and seeds_started(out)))):
        raise SsvizError(f"--out {out} exists and is not an empty folder (choose another, or --force)")
    text = read_corpus(args.corpus)
    if repeated:
        return _run_seeds(args, text, settings, config, out)
    for name in ("canaries.csv", "audit.json"):  # every file the audit writes, never over the corpus
        check_output(out / name, inputs=[args.corpus], what="--out")
    check_output(out / "model.safetensors", inputs=[args.corpus], what="--out")
    on_epoch = None if args.json else (lambda r: print(
        f"epoch {r['epoch']}: train {r['train_loss']:.4f} val {r['val_loss']:.4f}"
        + (f" epsilon {r['epsilon']:.3g}" if r.get("epsilon") is not None else ""), flush=True))
    result = audit(text, settings, config, out_dir=out, on_epoch=on_epoch)
    from ssviz.cli.placement import resolved_json
    payload = {**result.to_json(), **resolved_json(args)}
    emit(args, payload, _summary(payload) + f"\nwrote {out}")
    return 0


def _run_seeds(args, text: str, settings, config, out: Path) -> int:
    from ssviz.audit.seeds import run_audits
    check_output(out / "audits.json", inputs=[args.corpus], what="--out")
    corpus = Path(args.corpus).resolve()  # a seed folder's files never replace the corpus either
    if corpus.is_relative_to(out.resolve()) and corpus.name in ("canaries.csv", "audit.json", "model.safetensors"):
        raise SsvizError(f"--out {out} would replace the input file {args.corpus} in a seed folder: choose "
                         f"another folder")
    with executor_or_inline(args) as executor:
        summary = run_audits(text, settings, config, args.seeds, out, executor=executor,
                             progress=progress_printer("seeds", not args.json))
    from ssviz.cli.placement import resolved_json
    payload = {**summary.to_json(), **resolved_json(args)}
    lines = [f"seed {r['seed']}: " + _summary(r) for r in payload["results"]]
    eps = payload["spread"]["epsilon_lower"]
    if eps.get("n"):
        lines.append(f"epsilon lower bound over {eps['n']} seed(s): median {eps['median']:.2f}, "
                     f"min {eps['min']:.2f}, max {eps['max']:.2f} (each at its own confidence)")
    lines.append(f"{summary.computed} seed(s) run, {summary.reused} reused ({summary.seconds:.1f}s)"
                 f"{' - stopped' if summary.stopped else ''}; wrote {out}")
    emit(args, payload, "\n".join(lines))
    return 0


def _summary(r: dict) -> str:
    eps = r.get("epsilon_lower")
    claimed = r.get("epsilon_claimed")
    tpr = r.get("tpr_at_fpr") or {}
    fdp = r.get("epsilon_lower_fdp")
    kind = r.get("canary_kind") or "random"
    auc_ci, tpr_ci = r.get("auc_ci"), (r.get("tpr_ci") or {}).get("0.01")
    text = (f"{r['canaries']} {kind} canaries ({r['included']} included): AUC {r['auc']:.3f}"
            + (f" [{auc_ci[0]:.3f}, {auc_ci[1]:.3f}]" if auc_ci else "")
            + f", TPR at 1% FPR {tpr.get('0.01', float('nan')):.3f}"
            + (f" [{tpr_ci[0]:.3f}, {tpr_ci[1]:.3f}]" if tpr_ci else ""))
    text += (f"; epsilon >= {eps:.2f} (Steinke et al.)"
             + (f", >= {fdp:.2f} (f-DP, Gaussian curve)" if fdp is not None else "")
             + f" at {r['confidence']:.0%} confidence" if eps is not None else " (no epsilon bound)")
    text += f"; claimed epsilon {claimed:.2f}" if claimed is not None else "; no DP guarantee"
    if r.get("mia_auc") is not None:
        text += f"; loss-attack AUC {r['mia_auc']:.3f}"
    return text
