"""Core subcommands: score and exposure."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ssviz import exposure as exposure_mod
from ssviz.cli import count, emit, nonnegative_int, positive_int, progress_printer
from ssviz.cli.cluster import add_executor_options, executor_from_args
from ssviz.cli.placement import add_placement_options, load_from_args, placement_json
from ssviz.errors import MissingFileError, SettingsError, SsvizError
from ssviz.memory import ensure_memory
from ssviz.paths import check_outputs, data_path, ensure_writable
from ssviz.scoring import human_seconds, score_fillers
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
    p.add_argument("--method", default="auto", choices=[*exposure_mod.ESTIMATES, "search"])
    p.add_argument("--samples", type=positive_int, default=10_000)
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--max-nodes", type=positive_int, default=200_000, help="node budget for --method search")
    g = add_executor_options(p, "sharded exact enumeration (--method exact over spaces up to 10^10)")
    g.add_argument("--shard-size", type=count(100_000_000), default=None, help="fillers per task (default: about 4M)")
    g.add_argument("--shards-db", metavar="FILE", default=None,
                   help="finished shards, to resume a stopped run (default: exact-shards.duckdb in the data folder)")
    p.set_defaults(run=run_exposure)
    for name in ("score", "exposure"):
        add_placement_options(sub.choices[name], adapter=True)
        sub.choices[name].add_argument("--threads", type=count(1_000_000), default=None,
                                       help="torch CPU threads (1 is often fastest on a shared machine)")


def _set_threads(args) -> None:
    if args.threads is not None:
        from ssviz.memory import cap_to_cpus
        torch.set_num_threads(cap_to_cpus(args.threads, "--threads"))  # 10^4 threads hang, 10^5 panic


def run_score(args) -> int:
    _set_threads(args)
    model = load_from_args(args)
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
    emit(args, {"results": results, **placement_json(model)}, "\n".join(f"{r['filler']}\t{r['log_perplexity']:.4f}" for r in results))
    return 0


SHARD_OPTIONS = ("executor", "address", "workers", "shard_size", "shards_db")


def _sharded(args, template) -> bool:
    """Whether this exposure runs as sharded enumeration: asked for with any of its options (never by
    itself: beyond 10^7 fillers the refusal names ``--executor``, rather than starting hours of work)."""
    given = [f"--{o.replace('_', '-')}" for o in SHARD_OPTIONS if getattr(args, o) is not None]
    if given and args.method not in ("exact", "auto"):
        raise SettingsError(f"{given[0]} applies to --method exact (sharded enumeration), not {args.method}")
    return bool(given)


def rate_printer(enabled: bool):
    """Progress on stderr in fillers per second, with the time left (a sharded run can take hours)."""
    if not enabled:
        return None
    start: list[float] = []

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if not start:
            start.extend([now, done])
        rate = (done - start[1]) / (now - start[0]) if now > start[0] else 0.0
        left = f", about {human_seconds((total - done) / rate)} left" if rate > 0 and done < total else ""
        sys.stderr.write(f"\rscoring: {done:,}/{total:,} ({100 * done / max(total, 1):.0f}%), "
                         f"{rate:,.0f} fillers/s{left}   ")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return report


def run_exposure(args) -> int:
    _set_threads(args)
    store = args.shards_db or data_path("exact-shards.duckdb")
    check_outputs({"--shards-db": store}, {"--checkpoint": args.checkpoint})  # before loading anything
    model = load_from_args(args)
    template = parse_template(args.template)
    progress = progress_printer("scoring", not args.json)
    if _sharded(args, template):
        template.check_vocab(model.vocab)
        secret = template.normalize(args.secret)
        store = ensure_writable(store, "shards file")
        with executor_from_args(args) as executor:
            res = exposure_mod.exact(model, template, secret, executor=executor, shard_size=args.shard_size,
                                     store=store, progress=rate_printer(not args.json))
    else:
        res = exposure_mod.measure(model, template, args.secret, args.method, samples=args.samples,
                                   seed=args.seed, max_nodes=args.max_nodes, progress=progress,
                                   announce=None if args.json else _announce)
    payload = {**res.to_json(), **placement_json(model)}
    run = (f"; {res.shards['shards']:,} shards on {res.shards['executor']['kind']}, "
           f"{res.shards['fillers_per_second'] or 0:,.0f} fillers/s") if res.shards else ""
    emit(args, payload, f"exposure {res.exposure:.2f} bits ({res.method}; log2|R| = {payload['log2_space_size']:.1f}"
                        + (f", rank {res.rank}" if res.rank else "") + run + ")\n  " + res.quality()
                        + (f"\n  warning: {res.warning}" if res.warning else ""))
    return 0


def _announce(plan) -> None:
    print(f"auto: {plan.method}, because {plan.reason}", file=sys.stderr, flush=True)
