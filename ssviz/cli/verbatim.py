"""The ``verbatim`` subcommand: which training lines does a model complete verbatim from their prefix?"""

from __future__ import annotations

from ssviz.cli import count, emit, nonnegative_int, progress_printer
from ssviz.cli.placement import add_placement_options, load_from_args, placement_json
from ssviz.errors import SettingsError

MAX_UNITS = 100_000  # a prefix or suffix beyond any context a model here reads: a typo, refused at once


def register(sub, parent) -> None:
    from ssviz.longtail.verbatim import DEFAULT_BATCH, DEFAULT_PREFIX, DEFAULT_SUFFIX
    p = sub.add_parser("verbatim", parents=[parent],
                       help="verbatim and (n, p) extraction of a corpus's lines: greedy completion from a K-unit "
                            "prefix, rates by duplicate count")
    p.add_argument("corpus", help="UTF-8 text file, one example per line (the model's training data)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--prefix", type=count(MAX_UNITS), default=DEFAULT_PREFIX, metavar="K",
                   help=f"units of the line given as the prompt, a BOS included where the tokenizer adds one "
                        f"(default {DEFAULT_PREFIX})")
    p.add_argument("--suffix", type=count(MAX_UNITS), default=DEFAULT_SUFFIX, metavar="L",
                   help=f"units decoded greedily and compared with the line's next L units (default {DEFAULT_SUFFIX})")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for verbatim.csv and verbatim.json")
    p.add_argument("--prefixes", default=None, metavar="K1,K2,...",
                   help="also measure the extractable rate at these prefix lengths, on the lines long enough for "
                        "the longest (the rate against K)")
    p.add_argument("--max-per-count", type=count(10 ** 9), default=None, metavar="N",
                   help="test at most N lines per duplicate count, a seeded random choice (default: every line)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the --max-per-count choice")
    p.add_argument("--batch-size", type=count(65_536), default=DEFAULT_BATCH, help="prompts decoded together")
    add_placement_options(p, adapter=True)
    p.set_defaults(run=run_verbatim)


def parse_prefixes(text: str | None) -> list[int]:
    if text is None:
        return []
    out = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        if not word.isdigit() or not 1 <= int(word) <= MAX_UNITS:
            raise SettingsError(f"--prefixes: expected whole numbers from 1 to {MAX_UNITS:,} separated by commas, "
                                f"got {word[:40]!r}")
        out.append(int(word))
    if not out:
        raise SettingsError("--prefixes: give at least one prefix length, e.g. --prefixes 8,16,32")
    return out


def run_verbatim(args) -> int:
    from pathlib import Path

    from ssviz.corpus import read_corpus
    from ssviz.longtail.verbatim import save, verbatim
    from ssviz.paths import check_outputs, ensure_writable

    prefixes = parse_prefixes(args.prefixes)
    out = Path(args.out)
    outputs = [("--out", out / "verbatim.csv"), ("--out", out / "verbatim.json")]
    check_outputs(outputs, {"corpus": args.corpus, "--checkpoint": args.checkpoint})
    for _what, path in outputs:
        ensure_writable(path, "--out")
    text = read_corpus(args.corpus)
    model = load_from_args(args)
    progress = progress_printer("decoding", not args.json)
    result = verbatim(model, text, prefix=args.prefix, suffix=args.suffix, prefixes=prefixes,
                      max_per_count=args.max_per_count, seed=args.seed, batch_size=args.batch_size,
                      progress=progress)
    payload = save(result, out, {"corpus": args.corpus, "checkpoint": args.checkpoint, **placement_json(model),
                                       "out": str(out)})
    lines = [f"{result.tested:,} of {result.distinct:,} distinct lines tested ({result.short:,} shorter than "
             f"{args.prefix} + {args.suffix} units" + (f", {result.unencodable:,} unreadable by the model"
                                                        if result.unencodable else "")
             + (f", {result.left_out:,} left out by --max-per-count" if result.left_out else "")
             + f") in {result.seconds:.1f} s; rows in {out / 'verbatim.csv'}",
             "copies  lines  extractable  rate   match  P(extracted in 1 / 1000 samples)"]
    if not result.tested:
        lines[1] = f"no line has {args.prefix} + {args.suffix} units: give a smaller --prefix or --suffix"
    for g in payload["by_duplicates"]:
        p = g["extraction_probability"]
        lines.append(f"{g['duplicates']:>6}  {g['texts']:>5}  {g['extractable']:>11}  {g['rate']:5.1%}  "
                     f"{g['mean_match_fraction']:5.1%}  {p['1']:.3g} / {p['1000']:.3g}")
    for r in payload.get("by_prefix", []):
        lines.append(f"prefix {r['prefix']:>4}: {r['rate']:.1%} extractable of {r['texts']:,} lines")
    emit(args, payload, "\n".join(lines))
    return 0
