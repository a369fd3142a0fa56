"""The ``report`` subcommand: one standalone HTML file (optionally PDF) of what a model memorized."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ssviz.cli import emit, nonnegative_int, positive_int
from ssviz.cli.scan import add_budget_options, budget_summary
from ssviz.errors import SsvizError
from ssviz.exposure import ESTIMATES
from ssviz.paths import check_outputs, ensure_writable
from ssviz.tempfiles import atomic_write


def register(sub, parent) -> None:
    p = sub.add_parser("report", parents=[parent], help="a one-file HTML report of a model's memorized secrets")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--template", required=True, help="template or preset name (SSN, PIN, ...)")
    p.add_argument("--secret", action="append", default=[], metavar="FILLER",
                   help="a secret to measure (repeat for several)")
    p.add_argument("--corpus", metavar="CORPUS", help="the training data: scan it for the secrets already in it "
                                                      "and measure each (the report's main section)")
    p.add_argument("--study", metavar="DB", help="a per-user study results file (.duckdb) to include")
    p.add_argument("--audit", metavar="DIR", help="a finished audit folder to include")
    p.add_argument("--defenses", metavar="RESULTS", help="a defenses results file (.json) to include")
    p.add_argument("--verbatim", metavar="DIR", help="a verbatim folder (or its verbatim.json) to include")
    p.add_argument("--membership", metavar="DIR", help="a membership result folder (python -m ssviz mia --out) to "
                                                       "include")
    p.add_argument("--longtail", metavar="DIR", help="a counterfactual pool folder to include (the long tail)")
    p.add_argument("--unique-features", metavar="DIR", help="a finished unique-features run folder to include")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--pdf", action="store_true", help="also print it to PDF (next to --out) with headless Chromium")
    p.add_argument("--reveal", action="store_true", help="show secrets in full (the report's first line says so)")
    p.add_argument("--method", default="auto", choices=list(ESTIMATES), help="exposure estimator")
    p.add_argument("--samples", type=positive_int, default=10_000, help="random fillers for sampled estimators")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--max-nodes", type=positive_int, default=100_000, help="extraction search node budget")
    add_budget_options(p)  # of the --corpus scan
    from ssviz.cli.placement import add_placement_options
    add_placement_options(p, adapter=True)
    p.set_defaults(run=run_report)


def run_report(args) -> int:
    from ssviz.corpus import read_corpus
    from ssviz.cli.placement import load_from_args, placement_json
    from ssviz.report import Report, measure, model_summary, print_pdf, render
    from ssviz.scan import scan_corpus
    from ssviz.templates import parse_template

    pdf = Path(args.out).with_suffix(".pdf") if args.pdf else None
    check_outputs({"--out": args.out, "PDF": pdf},  # before any measuring: never over what is read
                  {"--checkpoint": args.checkpoint, "--corpus": args.corpus, "--study": args.study,
                   "--audit": args.audit, "--defenses": args.defenses, "--verbatim": args.verbatim,
                   "--membership": args.membership, "--longtail": args.longtail,
                   "--unique-features": args.unique_features})
    out = ensure_writable(args.out, "report")
    pdf = ensure_writable(pdf, "PDF") if pdf is not None else None
    model = load_from_args(args)
    template = parse_template(args.template)
    template.check_vocab(model.vocab)
    if not args.secret and not args.corpus:
        raise SsvizError("give --secret FILLER (repeatable), --corpus CORPUS, or both")
    secrets = [template.normalize(s) for s in args.secret]  # every secret checked before the long work
    text = read_corpus(args.corpus) if args.corpus else None
    study = _study(args.study) if args.study else None
    defenses = _defenses(args.defenses) if args.defenses else None
    audit = _audit(args.audit) if args.audit else None
    verbatim = _verbatim(args.verbatim) if args.verbatim else None
    membership = _membership(args.membership)
    longtail = None
    if args.longtail:
        from ssviz.report.longtail import longtail_summary
        longtail = longtail_summary(args.longtail, reveal=args.reveal)
    if args.unique_features:
        from ssviz.unique_features.run import load as load_unique_features
        unique_features = load_unique_features(args.unique_features)
    else:
        unique_features = None
    findings = measure(model, template, secrets, method=args.method, samples=args.samples, seed=args.seed,
                       max_nodes=args.max_nodes) if secrets else []
    scanned = (scan_corpus(model, text, samples=args.samples, search_nodes=args.max_nodes,
                           extraction_nodes=args.max_nodes, seed=args.seed, max_secrets=args.max_secrets,
                           max_seconds=args.max_seconds) if text is not None else None)
    settings = {"exposure estimator": args.method, "samples": args.samples, "seed": args.seed,
                "extraction node budget": args.max_nodes,
                "command": "python -m ssviz " + " ".join(shlex.quote(a) for a in _argv_redacted(args, secrets))}
    report = Report(model_summary(model, args.checkpoint), findings, reveal=args.reveal, scan=scanned, study=study,
                    audit=audit, defenses=defenses, verbatim=verbatim, settings=settings, membership=membership,
                    longtail=longtail, unique_features=unique_features)
    atomic_write(out, render(report))
    if pdf is not None:
        print_pdf(out, pdf)
    payload = {"report": str(out), "pdf": str(pdf) if pdf else None, "reveal": args.reveal,
               "secrets": [{"secret": report.shown(f.secret), "verdict": f.verdict, "exposure": f.exposure.exposure,
                            "rank": f.exposure.rank, "extracted": f.extracted} for f in findings],
               "scan": None if scanned is None else [x.to_json() for x in scanned],
               **({} if scanned is None else budget_summary(scanned, args)[0]), **placement_json(model)}
    emit(args, payload, f"wrote {out}" + (f" and {pdf}" if pdf else "") + ": " +
         "; ".join([f"{s['secret']} {s['verdict']} ({s['exposure']:.1f} bits)" for s in payload["secrets"]]
                   + ([f"{len(scanned)} secret(s) found in the training data"] if scanned is not None else [])
                   + ([budget_summary(scanned, args)[1]] if scanned and budget_summary(scanned, args)[1] else [])))
    return 0


def _argv_redacted(args, normalized=()) -> list[str]:
    """The command line, secrets redacted unless revealed, so a reviewer can rerun it (with the secrets).

    Redaction goes by the parsed values, not by the words: argparse also accepts ``--secret=V``,
    abbreviations (``--sec V``, ``--secr=V``), so every word holding a secret's value is redacted."""
    from ssviz.redaction import redact_words
    return redact_words(sys.argv[1:], [*args.secret, *normalized], reveal=args.reveal)


def _study(path):
    from ssviz.store import Store
    return Store(Path(path), read_only=True).comparison()


def _defenses(path):
    from ssviz.defenses.compare import load_results
    return load_results(path)


def _membership(path):
    from ssviz.membership.run import load_mia
    return load_mia(path) if path else None


def _audit(path):
    from ssviz.audit.run import load_audit
    return load_audit(path)


def _verbatim(path):
    from ssviz.report.verbatim import read_summary
    return read_summary(path)
