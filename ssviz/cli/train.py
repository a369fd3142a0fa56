"""The ``train`` subcommand: train a char-LM, optionally with an inserted canary and a defense."""

from __future__ import annotations

import math

from ssviz.cli import emit
from ssviz.errors import SsvizError
from ssviz.templates import parse_template
from ssviz.train import Canary, TrainConfig, read_corpus, train


def add_training_options(p) -> None:
    """Options shared by every command that trains (train, enron, sweeps, sanitize)."""
    d = TrainConfig()
    p.add_argument("--arch", choices=["lstm", "gru"], default=d.arch)
    p.add_argument("--layers", type=int, default=d.layers)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--embedding-dim", type=int, default=d.embedding_dim)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seq-len", type=int, default=d.seq_len)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--patience", type=int, default=d.patience,
                   help="early stopping patience in epochs (0 disables early stopping)")
    g = p.add_argument_group("defenses")
    g.add_argument("--dropout", type=float, default=d.dropout, metavar="P",
                   help="dropout probability on embeddings, RNN outputs and between layers")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, metavar="W", help="L2 weight decay")
    g.add_argument("--quantize", type=int, choices=[8], default=None, metavar="8",
                   help="quantize the trained weights to 8 bits (Appendix D); reports before/after")
    g.add_argument("--dp-epsilon", type=float, default=None, metavar="E",
                   help="DP-SGD (Opacus) with this target epsilon over --epochs")
    g.add_argument("--dp-noise", type=float, default=None, metavar="SIGMA",
                   help="DP-SGD with this noise multiplier instead of a target epsilon (0 = clipping only)")
    g.add_argument("--dp-delta", type=float, default=d.dp_delta, metavar="D")
    g.add_argument("--dp-clip", type=float, default=d.dp_clip, metavar="C", help="per-example clipping norm")


def config_from_args(args) -> TrainConfig:
    """A validated TrainConfig from parsed options (options a parser lacks keep their defaults)."""
    d = TrainConfig()
    names = ("arch", "layers", "hidden", "embedding_dim", "epochs", "batch_size", "seq_len", "lr", "seed",
             "dropout", "weight_decay", "quantize", "dp_epsilon", "dp_noise", "dp_delta", "dp_clip")
    config = TrainConfig(**{n: getattr(args, n, getattr(d, n)) for n in names})
    config.patience = getattr(args, "patience", d.patience) or None
    return config.validate()


def register(sub, parent) -> None:
    p = sub.add_parser("train", parents=[parent], help="train a char-LM, optionally with an inserted canary")
    p.add_argument("corpus", help="UTF-8 text file")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--canary", metavar="TEMPLATE", help="canary template, e.g. 'The random number is {d:9}'")
    p.add_argument("--secret", metavar="FILLER", help="the canary's filler (default: a random one)")
    p.add_argument("--insertions", type=int, default=1)
    add_training_options(p)
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
    text = read_corpus(args.corpus)
    canary = canary_from_args(args)
    config = config_from_args(args)
    on_epoch = None if args.json else (lambda r: print(
        f"epoch {r['epoch']}: train {r['train_loss']:.4f} val {r['val_loss']:.4f}"
        + (f" exposure {r['exposure']:.2f}" if r.get("exposure") is not None else "")
        + (f" epsilon {r['epsilon']:.3g}" if r.get("epsilon") is not None else ""), flush=True))
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
               "seconds": result.seconds, "canary": canary.to_json() if canary else None}
    summary = f"saved {path}: test loss {result.test_loss:.4f}"
    if payload["exposure"] is not None:
        summary += f", canary exposure {payload['exposure']:.2f} bits"
    if config.uses_dp:
        summary += f", epsilon {result.epsilon:.3g} (delta {config.dp_delta:g}, noise {result.dp_noise:.3g})"
    emit(args, payload, summary)
    return 0
