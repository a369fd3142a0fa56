"""The executor options every many-task command shares: ``--executor``, ``--address``, ``--workers``.

The study, sweeps, repeated audits and sharded exact enumeration all take the same three
options, so a user who knows one knows them all (see :mod:`ssviz.executor`).
"""

from __future__ import annotations

from ssviz.cli import positive_int

EXECUTOR_OPTIONS = ("executor", "address", "workers")


def add_executor_options(p, title: str, workers_help: str = "CPUs to use (default: all)"):
    """The options in their own argument group (returned, so a command can add its own next to them)."""
    from ssviz.executor import EXECUTORS
    g = p.add_argument_group(title)
    g.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="run the tasks on this machine's processes (local) or on a Ray cluster (ray)")
    g.add_argument("--address", metavar="HOST:PORT", default=None,
                   help="Ray cluster to join (HOST:PORT or auto); without it --executor ray starts Ray here")
    g.add_argument("--workers", type=positive_int, default=None, help=workers_help)
    return g


def executor_given(args) -> bool:
    return args.executor is not None or args.address is not None


def executor_from_args(args, default: str = "local"):
    """The executor the options ask for (a context manager; ``--address`` needs ``--executor ray``)."""
    from ssviz.executor import make_executor
    return make_executor(args.executor or default, address=args.address, workers=args.workers)


def executor_or_inline(args):
    """The executor the options ask for, or this process's inline one when none is given and ``--workers`` is 1
    (a context manager either way)."""
    if executor_given(args) or (args.workers or 1) > 1:
        return executor_from_args(args)
    from ssviz.executor import InlineExecutor
    return InlineExecutor()
