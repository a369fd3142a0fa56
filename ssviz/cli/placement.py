"""``--device`` and ``--dtype`` (and ``--adapter`` where a command reads ``--checkpoint``): one helper for every
command that runs a model, so they read the same, resolve the same and are recorded the same in JSON."""

from __future__ import annotations

import argparse

from ssviz.models.placement import DTYPE_CHOICES


def _device(text: str) -> str:
    """An argparse type: a device name (whether this machine has it is decided when the model is loaded)."""
    name = text.strip().lower()
    if name in ("auto", "cpu", "cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {text[:40]!r}")


_device.__name__ = "device"


def add_placement_options(p, *, adapter: bool = False) -> None:
    """``--device`` and ``--dtype`` on ``p``; ``adapter``: also ``--adapter DIR`` (over ``--checkpoint``)."""
    g = p.add_argument_group("device and precision")
    g.add_argument("--device", type=_device, default="auto", metavar="auto|cpu|cuda|cuda:N|mps",
                   help="where the model runs (default auto: CUDA where present, else MPS, else the CPU)")
    g.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                   help="the weights' precision (default auto: bfloat16 on CUDA, float32 elsewhere); "
                        "log-probabilities are float32 whatever it is")
    if adapter:
        p.add_argument("--adapter", metavar="DIR",
                       help="a PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) applied "
                            "over --checkpoint")


def load_from_args(args):
    """The model ``--checkpoint`` (a path or hf:NAME) names, with ``--adapter``, on ``--device`` in ``--dtype``."""
    from ssviz.models import load_model
    return load_model(args.checkpoint, device=args.device, dtype=args.dtype, adapter=getattr(args, "adapter", None))


def placement_json(model) -> dict:
    """``{"device": "cuda:0", "dtype": "bfloat16"}``: what every JSON output records it ran on."""
    from ssviz.models.placement import placement_record
    return placement_record(model)


def training_placement(args):
    """The context training commands run in: their models train on ``--device`` with ``--dtype``'s autocast."""
    from ssviz.models.placement import use_placement
    return use_placement(args.device, args.dtype)


def resolved_json(args) -> dict:
    """The placement the options resolve to on this machine (for commands whose models live in workers)."""
    from ssviz.models.placement import dtype_name, resolve
    dev, dt = resolve(args.device, args.dtype)
    return {"device": str(dev), "dtype": dtype_name(dt)}


__all__ = ["add_placement_options", "load_from_args", "placement_json", "training_placement", "resolved_json"]
