"""Refuse work whose memory would exceed the machine, before allocating it.

A sample count or a space typed by a user turns into arrays of that many rows;
numpy's own failure ("Unable to allocate 8 TiB") comes late, as a traceback, or
not at all while the machine swaps. Callers estimate their bytes and ask here.
"""

from __future__ import annotations

import os

from ssviz.errors import SpaceTooLargeError

# never plan to use more than this share of the memory available right now
BUDGET_FRACTION = 0.5


def available_bytes() -> int:
    """Memory available to this process now (MemAvailable on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def free_bytes(device=None) -> int:
    """Memory free for new tensors on ``device`` now: a CUDA GPU's free memory (``mem_get_info``), else the
    RAM available to this process (the CPU, and Apple's MPS, whose memory is the machine's)."""
    kind = getattr(device, "type", None) or str(device or "cpu").split(":")[0]
    if kind == "cuda":
        import torch
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError, ValueError):
            return 0
    return available_bytes()


def device_budget(device=None) -> int:
    """Bytes a computation on ``device`` may plan to hold at once (a share of :func:`free_bytes`): scorers
    and searches size their batches from it and a model's bytes per row."""
    return int(free_bytes(device) * BUDGET_FRACTION)


def gigabytes(n: float) -> str:
    """``16.1 GB`` (decimal, as disks and GPU specifications count)."""
    return f"{n / 1e9:.1f} GB"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PB"


def ensure_memory(nbytes: float, what: str, hint: str = "") -> None:
    """Raise :class:`SpaceTooLargeError` when ``what`` would need more than the memory budget."""
    budget = available_bytes() * BUDGET_FRACTION
    if nbytes > budget:
        raise SpaceTooLargeError(f"{what} would need about {human_bytes(nbytes)} of memory, more than the "
                                 f"{human_bytes(budget)} this machine can spare" + (f": {hint}" if hint else ""))


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cap_to_cpus(count: int, what: str) -> int:
    """``count`` (processes or threads asked for) capped at :func:`available_cpus`, with one line on stderr
    saying so: a count beyond the CPUs only costs memory (a queue slot, a spawned process, a thread stack
    each) and time, and a typo such as 10^9 would exhaust the machine before any work."""
    cpus = available_cpus()
    if count > cpus:
        import sys
        print(f"note: {what} {count:,} capped at the {cpus} CPU(s) available", file=sys.stderr, flush=True)
        return cpus
    return count
