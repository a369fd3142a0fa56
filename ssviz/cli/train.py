"""The ``train`` subcommand: train a char-LM or a small transformer, optionally with an inserted canary and a
defense.

Outputs are checked before training starts (not the input, not an unrelated
file or folder, writable). A transformer is saved as a folder plain transformers
loads. A training whose loss stops being finite saves the last finite model,
says so on stderr and exits with status 2.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

from ssviz.cli import emit
from ssviz.errors import CheckpointError, SsvizError
from ssviz.paths import check_outputs, ensure_writable, same_file  # noqa: F401 (same_file: re-exported)
from ssviz.templates import parse_template
from ssviz.train import Canary, TrainConfig, option_specs, read_corpus, train, whole_number


def add_training_options(p) -> None:
    """Options shared by every command that trains (train, enron, sweeps, sanitize), from TrainConfig's fields."""
    groups = {}
    for name, spec in option_specs().items():
        if not spec["cli"]:
            continue
        target = p if spec["group"] is None else groups.setdefault(spec["group"], p.add_argument_group(spec["group"]))
        kind = spec["kind"]
        if kind is bool:  # a switch: off by default
            target.add_argument("--" + name.replace("_", "-"), action="store_true", help=spec["help"])
            continue
        kwargs = {"default": spec["default"], "metavar": spec["metavar"],
                  "help": spec["help"] + ("" if spec["default"] is None else f" (default: {spec['default']})")}
        if spec["cli_choices"] or spec["choices"]:
            kwargs["choices"] = list(spec["cli_choices"] or spec["choices"])
        kwargs["type"] = _whole_number if kind is int else kind
        target.add_argument("--" + name.replace("_", "-"), **kwargs)


def _whole_number(text: str) -> int:
    return whole_number(text)


_whole_number.__name__ = "int"  # argparse names the type in "invalid int value"


def config_from_args(args) -> TrainConfig:
    """A validated TrainConfig from parsed options (options a parser lacks keep their defaults)."""
    values = {name: getattr(args, name) for name, spec in option_specs().items()
              if spec["cli"] and hasattr(args, name)}
    if "patience" in values:
        values["patience"] = values["patience"] or None  # 0 disables early stopping (stored as None)
    return TrainConfig(**values).validate()


def check_output(path, *, inputs=(), what: str = "--out", checkpoint: bool = False, force: bool = False,
                 folder: bool = False) -> Path:
    """Refuse an output that is one of the ``inputs`` or (``checkpoint``) an existing non-checkpoint file
    unless ``force``; then check it is writable. Called before any long work starts.

    ``folder``: the output is a model folder (a transformer's), checked by :func:`check_folder_output`.
    """
    path = Path(path)
    check_outputs({what: path}, [("input", src) for src in inputs])
    if folder:
        return check_folder_output(path, inputs=inputs, what=what, force=force)
    if checkpoint and path.is_file() and not force:
        from ssviz.models import load_checkpoint
        try:
            load_checkpoint(path)
        except CheckpointError:
            raise SsvizError(f"{what} {path} exists and is not a checkpoint: refusing to overwrite it "
                             f"(choose another file, or --force)") from None
    return ensure_writable(path, what)


def check_folder_output(path: Path, *, inputs=(), what: str = "--out", force: bool = False) -> Path:
    """A model folder may replace a missing folder, an empty one or another saved model (nothing else is
    in it); a folder holding other files only with ``force``, and then only the model's files are added
    (:meth:`ssviz.models.hf.HFLanguageModel.save` never removes a file it did not write). Never a file, never
    over an input, and the folder beside it must be writable (the model is written there, then moved in)."""
    from ssviz.models.hf import is_model_file, is_model_folder
    if path.exists() and not path.is_dir():
        raise SsvizError(f"{what} {path} exists and is a file: a transformer is saved as a folder; choose a "
                         f"folder name")
    blocker = next((a for a in path.parents if a.exists() and not a.is_dir()), None)
    if blocker is not None:
        raise SsvizError(f"cannot write {what} {path}: {blocker} is a file, not a folder")
    if path.is_dir():
        for src in inputs:
            if Path(src).resolve().parent == path.resolve() and is_model_file(Path(src).name):
                raise SsvizError(f"{what} {path} holds the input file {src} under a name the model's files "
                                 f"take: choose another folder")
        if not force and not is_model_folder(path):
            raise SsvizError(f"{what} {path} is a folder holding other files than a saved model's: refusing to "
                             f"write into it (choose another folder, or --force to add the model's files)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for where in [path.parent] + ([path] if path.is_dir() else []):
            os.rmdir(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".probe", dir=where))
    except OSError as e:
        raise SsvizError(f"cannot write {what} {path}: {e.strerror or e}") from None
    return path


def register(sub, parent) -> None:
    p = sub.add_parser("train", parents=[parent],
                       help="train a char-LM or a small transformer, optionally with an inserted canary",
                       description="Trains on the first part of CORPUS; the held-out rest is split into a "
                                   "validation part (early stopping) and a test part (test_loss). --arch gpt2 or "
                                   "llama builds a small transformer from a config (no download) with a byte-level "
                                   "BPE tokenizer trained on the corpus, and saves a folder plain transformers "
                                   "loads. If the loss stops being finite, the last finite model is saved and the "
                                   "exit status is 2.")
    p.add_argument("corpus", help="UTF-8 text file")
    p.add_argument("--out", required=True,
                   help="checkpoint to write (.safetensors); for --arch gpt2 or llama, a model folder")
    p.add_argument("--force", action="store_true",
                   help="overwrite --out even if it exists and is not a checkpoint (a folder: add the model's files)")
    p.add_argument("--canary", metavar="TEMPLATE", help="canary template, e.g. 'The random number is {d:9}'")
    p.add_argument("--secret", metavar="FILLER", help="the canary's filler (default: a random one)")
    p.add_argument("--insertions", type=_whole_number, default=1, help="times the canary is inserted (default: 1)")
    add_training_options(p)
    from ssviz.cli.placement import add_placement_options
    add_placement_options(p)
    p.set_defaults(run=run_train)


def canary_from_args(args) -> Canary | None:
    if args.canary:
        template = parse_template(args.canary)
        secret = args.secret or template.random_fillers(1, seed=args.seed + 7919)[0]
        return Canary(template, secret, args.insertions)
    if args.secret:
        raise SsvizError("--secret needs --canary TEMPLATE")
    return None


def run_train(args) -> int:
    config = config_from_args(args)
    text = read_corpus(args.corpus)
    canary = canary_from_args(args)
    check_output(args.out, inputs=[args.corpus], checkpoint=True, force=args.force, folder=config.transformer)
    on_epoch = None if args.json else (lambda r: print(
        f"epoch {r['epoch']}: train {r['train_loss']:.4f} val {r['val_loss']:.4f}"
        + (f" exposure {r['exposure']:.2f}" if r.get("exposure") is not None else "")
        + (f" epsilon {r['epsilon']:.3g}" if r.get("epsilon") is not None else ""), flush=True))
    from ssviz.cli.placement import training_placement
    with training_placement(args):
        result = train(text, config, canary, on_epoch=on_epoch)
    path = result.save(args.out)
    # JSON has no infinity: clipping-only DP (noise 0) reports epsilon null with dp.noise_multiplier 0
    epsilon = result.epsilon if result.epsilon is not None and math.isfinite(result.epsilon) else None
    dp = ({"delta": config.dp_delta, "clip": config.dp_clip, "target_epsilon": config.dp_epsilon,
           "noise_multiplier": result.dp_noise} if config.uses_dp else None)
    for r in result.epochs:
        if r.get("epsilon") is not None and not math.isfinite(r["epsilon"]):
            r["epsilon"] = None
    payload = {"checkpoint": str(path), "epochs": result.epochs, "test_loss": result.test_loss,
               "epsilon": epsilon, "dp": dp,
               "exposure": (result.final or {}).get("exposure"), "quantization": result.quantization,
               "seconds": result.seconds, "canary": result.canary.to_json() if result.canary else None,
               "device": result.device, "dtype": result.dtype}
    summary = f"saved {path}: test loss {result.test_loss:.4f}"
    if payload["exposure"] is not None:
        summary += f", canary exposure {payload['exposure']:.2f} bits"
    if config.uses_dp:
        summary += f", epsilon {result.epsilon:.3g} (delta {config.dp_delta:g}, noise {result.dp_noise:.3g})"
    emit(args, payload, summary)
    if result.diverged is not None:
        print(f"error: {result.warning}; saved it to {path}", file=sys.stderr)
        return 2
    return 0
