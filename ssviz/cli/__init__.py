"""``python -m ssviz``: one subcommand per module in this package.

Errors a user caused print one line on stderr and exit with status 2; ``--json``
prints machine-readable results on stdout.
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

# each module defines register(subparsers, parent) and sets a handler via set_defaults(run=...)
COMMAND_MODULES = ("train", "core", "extract", "enron", "defenses", "audit", "report", "scan")


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

    def report(done: int, total: int) -> None:
        sys.stderr.write(f"\r{label}: {done:,}/{total:,} ({100 * done / max(total, 1):.0f}%)")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return report


def _number(kind, low: float | None, low_open: bool, what: str):
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
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, 0, True, "a whole number >= 1")
nonnegative_int = _number(int, 0, False, "a whole number >= 0")
positive_float = _number(float, 0, True, "a finite number > 0")
nonnegative_float = _number(float, 0, False, "a finite number >= 0")
finite_float = _number(float, None, False, "a finite number")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ssviz", description="Measure and extract secrets memorized by language models (The Secret Sharer).")
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parent.add_argument("--debug", action="store_true", help="show a traceback on unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"ssviz.cli.{name}").register(sub, parent)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
        print(f"stopped: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("stopped: interrupted", file=sys.stderr)
        return 130
    except SsvizError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory: ask for a smaller space, fewer samples or a smaller batch", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: one line unless asked for detail
        if getattr(args, "debug", False):
            raise
        print(f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)", file=sys.stderr)
        return 1
