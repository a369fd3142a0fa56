"""``python -m ssviz``: one subcommand per module in this package.

Errors a user caused print one line on stderr and exit with status 2; ``--json``
prints machine-readable results on stdout.

Only the chosen subcommand's module is imported (most pull in torch, scipy or DuckDB): the other
subcommands are listed from :data:`COMMANDS`, so ``--help`` and a mistyped command answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import sys

from ssviz.errors import SsvizError, StoppedError
from ssviz.jsonable import finite_json
from ssviz.messages import hide_credentials

# each module defines register(subparsers, parent) and sets a handler via set_defaults(run=...)
COMMAND_MODULES = ("train", "core", "extract", "enron", "defenses", "audit", "report", "scan", "verbatim", "mia",
                   "counterfactual", "unique_features")
# what each module registers, in order, with its one-line help: `python -m ssviz --help` lists these without
# importing the modules (tests/cli/test_cli_core.py checks the table against every module's register)
COMMANDS = {
    "train": (("train", "train a char-LM or a small transformer, optionally with an inserted canary"),),
    "core": (("score", "log-perplexity (bits) of fillers of a template"),
             ("exposure", "exposure of a secret")),
    "extract": (("extract", "extract the most likely fillers of a template"),),
    "enron": (("enron", "per-user study of a maildir: train per user, measure and extract found secrets"),
              ("enron-synth", "write a synthetic Enron-style maildir with known secrets"),
              ("enron-show", "print the per-user comparison (Table 5) of a results store"),
              ("enron-export", "export a results store to .csv or .parquet")),
    "defenses": (("sanitize", "remove likely secrets from a corpus before training"),
                 ("sweep", "train over a grid of one or two settings x seeds (DuckDB)")),
    "audit": (("audit", "privacy audit: train once with random canaries, report ROC, AUC and an epsilon lower "
                        "bound (Steinke, Nasr, Jagielski 2023)"),),
    "report": (("report", "a one-file HTML report of a model's memorized secrets"),),
    "scan": (("scan", "find the secrets in a corpus (SSNs, cards, phones, AWS keys, GitHub tokens) and measure "
                      "each in a model: exposure, extracted?"),),
    "verbatim": (("verbatim", "verbatim and (n, p) extraction of a corpus's lines: greedy completion from a K-unit "
                              "prefix, rates by duplicate count"),),
    "mia": (("mia", "membership attacks (loss, zlib, lowercase, Min-K, Min-K++, reference, LiRA) with a blind "
                    "baseline"),),
    "counterfactual": (("counterfactual", "counterfactual memorization and influence of every training example "
                                          "over a pool of models (Zhang et al.)"),),
    "unique_features": (("unique-features", "unique features: does the model react to a feature it saw once (images "
                                            "or text; Hartley & Tsaftaris)"),),
}


_json_out: list = []  # with --json: the real stdout, kept for the JSON alone (see main)


def emit(args, payload: dict, text: str | None = None) -> None:
    """Print JSON with --json, otherwise a human summary (falls back to indented JSON)."""
    if getattr(args, "json", False) or text is None:
        print(json.dumps(finite_json(payload), indent=None if getattr(args, "json", False) else 2,
                         default=_jsonable, allow_nan=False), file=_json_out[-1] if _json_out else sys.stdout)
    else:
        print(text)


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def progress_printer(label: str, enabled: bool):
    """A progress callback writing a carriage-return line on stderr (silent when disabled)."""
    if not enabled:
        return None

    def report(done: int, total: int, status: str | None = None) -> None:
        line = f"{label}: {status}" if status else f"{label}: {done:,}/{total:,} ({100 * done / max(total, 1):.0f}%)"
        sys.stderr.write(f"\r{line}\033[K")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    report.describes = True
    return report


def bounded_number(kind, low: float | None, low_open: bool, what: str, high: float | None = None,
                   high_open: bool = False):
    """An argparse type: parsed, finite, and within range where the option is declared."""
    def parse(text: str):
        try:
            value = kind(text) if kind is float else int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text[:40]!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text[:40]!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text[:40]!r}")
        if high is not None and (value >= high if high_open else value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text[:40]!r}")
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = bounded_number(int, 0, True, "a whole number >= 1")
nonnegative_int = bounded_number(int, 0, False, "a whole number >= 0")
positive_float = bounded_number(float, 0, True, "a finite number > 0")
nonnegative_float = bounded_number(float, 0, False, "a finite number >= 0")
finite_float = bounded_number(float, None, False, "a finite number")
probability = bounded_number(float, 0, True, "a number strictly between 0 and 1", 1, high_open=True)


def count(high: int, low: int = 1):
    """An argparse type for a count option with an upper bound the machine can hold (a typo such as 10^9
    users, seeds or results is refused at once, not after it filled the memory or the disk)."""
    return bounded_number(int, low, False, f"a whole number from {low:,} to {high:,}", high)


def build_parser(only: str | None = "") -> argparse.ArgumentParser:
    """The whole parser (every module imported and registered), or with ``only`` (a module name, or None for
    no module) that module's subcommands in full and the others as bare entries (name and help) that
    list them in ``--help`` and never parse anything."""
    parser = argparse.ArgumentParser(prog="python -m ssviz", description="Measure and extract secrets memorized by language models (The Secret Sharer).")
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parent.add_argument("--debug", action="store_true", help="show a traceback on unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        if only == "" or name == only:
            importlib.import_module(f"ssviz.cli.{name}").register(sub, parent)
        else:
            for command, helptext in COMMANDS[name]:
                sub.add_parser(command, help=helptext)
    return parser


def command_module(argv: list[str]) -> str | None:
    """The module of the subcommand ``argv`` names (its first positional argument; top-level options are
    -h/--help only), or None when it names none (help, a mistyped command, nothing)."""
    words = iter(argv)
    for word in words:
        if word == "--":
            word = next(words, "")
        elif word.startswith("-"):
            continue
        return next((m for m, cmds in COMMANDS.items() if any(word == c for c, _ in cmds)), None)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_module(argv))
    args = parser.parse_args(argv)
    if getattr(args, "json", False):  # stdout holds the JSON only: what libraries print (Ray's notices) goes to stderr
        _json_out.append(sys.stdout)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                return _run(args)
        finally:
            _json_out.pop()
    return _run(args)


def _run(args) -> int:
    try:
        return int(args.run(args) or 0)
    except StoppedError as e:
        print(f"stopped: {hide_credentials(e)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("stopped: interrupted", file=sys.stderr)
        return 130
    except SsvizError as e:
        print(f"error: {hide_credentials(e)}", file=sys.stderr)  # never a password typed in an address
        return 2
    except MemoryError:
        print("error: out of memory: ask for a smaller space, fewer samples or a smaller batch", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: one line unless asked for detail
        if getattr(args, "debug", False):
            raise
        print(f"internal error: {type(e).__name__}: {hide_credentials(e)} (rerun with --debug for a traceback)",
              file=sys.stderr)
        return 1
