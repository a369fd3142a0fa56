"""Where a model runs and in which precision: the one place ``device`` and ``dtype`` names are resolved.

``auto`` picks what a user with that machine would: CUDA in bfloat16 where a GPU is present (bfloat16
keeps float32's range, so log-probabilities never overflow as float16's can), else Apple's MPS in
float32, else the CPU in float32, the reference every other placement is compared against. Whatever
the weights' precision, log-probabilities are computed by a log-softmax over float32 logits and summed
in float32 or float64: bfloat16 rounds each weight, not the accumulation.
"""

from __future__ import annotations

import contextvars
import re

import torch

from ssviz.errors import SettingsError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
DTYPE_BYTES = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2, torch.float64: 8}
_CUDA = re.compile(r"cuda(?::(\d{1,3}))?")


class PlacementError(SettingsError):
    """A device that is not there, or a precision the device cannot run."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device ``device`` names (``auto|cpu|cuda|cuda:N|mps``), refusing one this machine lacks."""
    if isinstance(device, torch.device):
        device = str(device)
    name = str(device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise PlacementError("device mps is not available here (it needs Apple silicon and a torch built "
                                 "with MPS): use --device cpu or auto")
        return torch.device("mps")
    m = _CUDA.fullmatch(name)
    if m is None:
        raise PlacementError(f"unknown device {str(device)[:40]!r}: expected one of {', '.join(DEVICE_CHOICES)}")
    if not torch.cuda.is_available():
        raise PlacementError(f"device {name} is not available: this torch sees no CUDA GPU (use --device cpu or "
                             "auto)")
    index = int(m.group(1)) if m.group(1) else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise PlacementError(f"device cuda:{index} is not available: this machine has {count} CUDA GPU(s), "
                             f"cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def resolve_dtype(dtype: str | torch.dtype | None = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """The weights' precision ``dtype`` names on ``device`` (``auto``: bfloat16 on CUDA where the GPU has it,
    float32 elsewhere), refusing a precision the device cannot run."""
    device = torch.device(device) if not isinstance(device, torch.device) else device
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise PlacementError(f"dtype {dtype} is not supported: expected one of {', '.join(DTYPE_CHOICES)}")
        name = next(k for k, v in DTYPES.items() if v == dtype)
    else:
        name = str(dtype or "auto").strip().lower()
    if name == "auto":
        if device.type == "cuda" and _bf16_on(device):
            return torch.bfloat16
        if device.type == "cuda":
            return torch.float16
        return torch.float32
    if name not in DTYPES:
        raise PlacementError(f"unknown dtype {str(dtype)[:40]!r}: expected one of {', '.join(DTYPE_CHOICES)}")
    if name == "bfloat16" and device.type == "cuda" and not _bf16_on(device):
        raise PlacementError(f"{device} cannot run bfloat16 (it needs compute capability 8.0 or later): use "
                             "--dtype float16 or float32")
    return DTYPES[name]


def _bf16_on(device: torch.device) -> bool:
    try:
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported())
    except (RuntimeError, AssertionError):
        return False


def resolve(device: str | torch.device | None = "auto",
            dtype: str | torch.dtype | None = "auto") -> tuple[torch.device, torch.dtype]:
    """``(device, dtype)`` resolved together (``dtype`` ``auto`` depends on the device)."""
    dev = resolve_device(device)
    return dev, resolve_dtype(dtype, dev)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``: how JSON outputs and pages name a precision."""
    return str(dtype).removeprefix("torch.")


def device_name(device: torch.device) -> str:
    return str(device)


def placement_record(model) -> dict:
    """``{"device": ..., "dtype": ...}`` of a model: what every JSON output records it ran on."""
    return {"device": device_name(model.device), "dtype": dtype_name(model.dtype)}


def module_placement(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of a module's weights (the CPU in float32 for one without weights)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision for a training step where it applies (CUDA or CPU in 16-bit weights' precision);
    a no-op context in float32. Weights are kept in float32 when trained (optimizer states need it), so
    bfloat16 and float16 enter as autocast's compute precision."""
    import contextlib
    if dtype == torch.float32 or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype != torch.bfloat16:
        return contextlib.nullcontext()  # CPU autocast is bfloat16 only
    return torch.autocast(device_type=device.type, dtype=dtype)


# what work started without naming a placement uses (training inside a study, a sweep or an audit): set by
# the CLI or the app around that work; threads and processes started elsewhere use ``auto``
_DEFAULT: contextvars.ContextVar = contextvars.ContextVar("ssviz_placement", default=("auto", "auto"))


def default_placement() -> tuple[str, str]:
    """The ``(device, dtype)`` names work uses when it is not given any."""
    return _DEFAULT.get()


class use_placement:
    """``with use_placement("cuda", "bfloat16"): ...``: the default placement of the work inside."""

    def __init__(self, device="auto", dtype="auto"):
        resolve(device, dtype)  # refused here, before any work
        self.value = (str(device), dtype_name(dtype) if isinstance(dtype, torch.dtype) else str(dtype))

    def __enter__(self):
        self.token = _DEFAULT.set(self.value)
        return self

    def __exit__(self, *exc):
        _DEFAULT.reset(self.token)
        return False
