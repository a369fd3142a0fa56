"""The Enron-style study commands.

    python -m ssviz enron-synth OUTDIR --users 4 --seed 0          # a synthetic maildir + ground_truth.json
    python -m ssviz enron MAILDIR --db results.duckdb --workers 2   # per-user train, exposure, extraction
    python -m ssviz enron-show --db results.duckdb                  # the Table 5 view
    python -m ssviz enron-export --db results.duckdb --out table.csv   # or .parquet
"""

from __future__ import annotations

import sys

from ssviz.cli import count, emit, progress_printer
from ssviz.cli.cluster import add_executor_options, executor_or_inline
from ssviz.cli.train import add_training_options, config_from_args
from ssviz.errors import SsvizError


MAX_SYNTH_MESSAGES = 1_000_000  # synthetic mails enron-synth writes at most


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise SsvizError(f"--times expects comma-separated counts such as 1,5,20,50, got {text!r}") from None
    if not values or min(values) < 1:
        raise SsvizError("--times needs counts >= 1")
    return values


def register(sub, parent) -> None:
    from ssviz.enron.pipeline import StudySettings
    from ssviz.store import DEFAULT_DB

    d = StudySettings()
    p = sub.add_parser("enron", parents=[parent],
                       help="per-user study of a maildir: train per user, measure and extract found secrets",
                       description="Trains one model per user: a character RNN, or with --arch gpt2|llama a small "
                                   "transformer with a tokenizer trained on that user's mail (cached as a model "
                                   "folder).")
    p.add_argument("maildir", help="a maildir directory, .tar.gz or .zip (public Enron layout)")
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"results store (default {DEFAULT_DB})")
    p.add_argument("--users", help="comma-separated user names (default: every user with secrets)")
    p.add_argument("--min-secrets", type=count(1_000_000, low=0), default=1,
                   help="study users with at least this many secrets")
    add_executor_options(p, "parallel users (one CPU each; the store is written by this process only)",
                         "users at once (default: 1 here; all CPUs with --executor)")
    p.add_argument("--cache-dir", help="where trained checkpoints are cached (default data/enron-cache)")
    p.add_argument("--exposure-samples", type=count(10_000_000), default=d.exposure_samples,
                   help="random fillers for the skew-normal estimate")
    p.add_argument("--exact-limit", type=count(10_000_000_000, low=0), default=d.exact_limit,
                   help="largest space whose exposure is computed exactly")
    p.add_argument("--search-nodes", type=count(100_000_000), default=d.search_nodes,
                   help="node budget of search-based exposure (exact rank)")
    p.add_argument("--extraction-nodes", type=count(100_000_000), default=d.extraction_nodes,
                   help="node budget of shortest-path extraction")
    add_training_options(p)
    from ssviz.cli.placement import add_placement_options
    add_placement_options(p)
    p.set_defaults(run=run_enron)

    s = sub.add_parser("enron-synth", parents=[parent], help="write a synthetic Enron-style maildir with known secrets")
    s.add_argument("out", help="output directory (maildir/ and ground_truth.json are written in it)")
    s.add_argument("--users", type=count(10_000), default=3)
    s.add_argument("--messages", type=count(100_000), default=120, help="distinct sent messages per user")
    s.add_argument("--times", default="1,5,20,50", help="how often each user's secret appears, cycled over users")
    s.add_argument("--seed", type=count(2**63 - 1, low=0), default=0)
    s.set_defaults(run=run_synth)

    for name, helptext in (("enron-show", "print the per-user comparison (Table 5) of a results store"),
                           ("enron-export", "export a results store to .csv or .parquet")):
        e = sub.add_parser(name, parents=[parent], help=helptext)
        e.add_argument("--db", default=str(DEFAULT_DB),
                       help=f"results store to read (default {DEFAULT_DB}); refused unless it is an ssviz store")
        if name == "enron-export":
            e.add_argument("--out", required=True, help="file.csv or file.parquet")
            e.add_argument("--table", default="comparison",
                           help="comparison (default), runs, users, secrets, measurements or extractions")
        e.set_defaults(run=run_show if name == "enron-show" else run_export)


def run_enron(args) -> int:
    from ssviz.enron.pipeline import StudySettings, result_rows, run_study

    settings = StudySettings(train=config_from_args(args), exposure_samples=args.exposure_samples,
                             exact_limit=args.exact_limit, search_nodes=args.search_nodes,
                             extraction_nodes=args.extraction_nodes)
    users = [u.strip() for u in args.users.split(",") if u.strip()] if args.users else None
    from ssviz.paths import check_outputs, ensure_writable
    check_outputs({"--db": args.db, "--cache-dir": args.cache_dir}, {"maildir": args.maildir})
    ensure_writable(args.db, "--db")
    from ssviz.cli.placement import resolved_json, training_placement
    with executor_or_inline(args) as executor, training_placement(args):
        rows = run_study(args.maildir, args.db, settings=settings, users=users, min_secrets=args.min_secrets,
                         executor=executor, cache_dir=args.cache_dir,
                         log=lambda msg: print(msg, file=sys.stderr, flush=True),
                         progress=progress_printer("users", not args.json))
    rows = result_rows(rows)
    emit(args, {"secrets": rows, **resolved_json(args)}, _table(rows))
    return 0


def _table(rows: list[dict]) -> str:
    from ssviz.redaction import stored_tail
    if not rows:
        return "no secrets found"
    lines = [f"{'user':<16} {'type':<4} {'last4':<5} {'times':>5} {'exposure':>9} {'method':<9} extracted"]
    for r in rows:
        exp = "-" if r["exposure"] is None else f"{r['exposure']:.1f}"
        tail = stored_tail(r["last4"], r["type"])  # at most a third of the secret
        lines.append(f"{r['user']:<16} {r['type']:<4} {tail:<5} {r['times_present']:>5} {exp:>9} "
                     f"{str(r['exposure_method'] or '-'):<9} {'yes' if r['extracted'] else 'no'}")
    return "\n".join(lines)


def run_synth(args) -> int:
    from ssviz.enron.synthetic import generate_maildir

    if args.users * args.messages > MAX_SYNTH_MESSAGES:  # each is a file: bound the disk and the time
        raise SsvizError(f"--users x --messages is {args.users * args.messages:,} mails; at most "
                         f"{MAX_SYNTH_MESSAGES:,}")
    times = _int_list(args.times)
    if max(times) > 10_000:
        raise SsvizError("--times: at most 10,000 copies of a secret")
    from pathlib import Path

    from ssviz.paths import ensure_writable
    ensure_writable(Path(args.out) / "ground_truth.json", "ground truth")  # OUT must be (or become) a folder
    truth = generate_maildir(args.out, users=args.users, messages=args.messages, seed=args.seed,
                             times=times)
    emit(args, truth, f"wrote {args.users} users' maildir under {args.out}/maildir and {args.out}/ground_truth.json")
    return 0


def run_show(args) -> int:
    from ssviz.store import Store

    # missing_ok=False: a mistyped --db is an error, not an empty study
    rows = [r.to_json() for r in Store(args.db, read_only=True, missing_ok=False).rows()]
    emit(args, {"secrets": rows}, _table(rows))
    return 0


def run_export(args) -> int:
    from ssviz.paths import check_outputs, ensure_writable
    from ssviz.store import Store

    from pathlib import Path

    from ssviz.csvcells import CsvSafeTables
    check_outputs({"--out": args.out}, {"--db": args.db})  # the export never replaces the store it reads
    ensure_writable(args.out, "--out")
    store = Store(args.db, read_only=True, missing_ok=False)
    if Path(args.out).suffix.lower() == ".csv":  # text cells a spreadsheet would run as formulas get a '
        store = CsvSafeTables(store)
    path = store.export(args.out, table=args.table)
    emit(args, {"path": str(path)}, f"wrote {path}")
    return 0
