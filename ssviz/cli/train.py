"""The ``train`` subcommand: train a char-LM, optionally with an inserted canary."""

from __future__ import annotations

from ssviz.cli import emit
from ssviz.errors import SsvizError
from ssviz.templates import parse_template
from ssviz.train import Canary, TrainConfig, read_corpus, train


def add_training_options(p) -> None:
    """Options shared by every command that trains (train, enron, sweeps)."""
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


def config_from_args(args) -> TrainConfig:
    return TrainConfig(arch=args.arch, layers=args.layers, hidden=args.hidden, embedding_dim=args.embedding_dim,
                       epochs=args.epochs, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                       seed=args.seed, patience=args.patience or None)


def register(sub, parent) -> None:
    p = sub.add_parser("train", parents=[parent], help="train a char-LM, optionally with an inserted canary")
    p.add_argument("corpus", help="UTF-8 text file")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--canary", metavar="TEMPLATE", help="canary template, e.g. 'The random number is {d:9}'")
    p.add_argument("--secret", metavar="FILLER", help="the canary's filler (default: a random one)")
    p.add_argument("--insertions", type=int, default=1)
    add_training_options(p)
    p.set_defaults(run=run_train)


def run_train(args) -> int:
    text = read_corpus(args.corpus)
    canary = None
    if args.canary:
        template = parse_template(args.canary)
        secret = args.secret or template.random_fillers(1, seed=args.seed + 7919)[0]
        canary = Canary(template, secret, args.insertions)
    elif args.secret:
        raise SsvizError("--secret needs --canary TEMPLATE")
    config = config_from_args(args)
    on_epoch = None if args.json else (lambda r: print(
        f"epoch {r['epoch']}: train {r['train_loss']:.4f} val {r['val_loss']:.4f}"
        + (f" exposure {r['exposure']:.2f}" if r.get("exposure") is not None else ""), flush=True))
    result = train(text, config, canary, on_epoch=on_epoch)
    path = result.save(args.out)
    payload = {"checkpoint": str(path), "epochs": result.epochs, "test_loss": result.test_loss,
               "seconds": result.seconds, "canary": canary.to_json() if canary else None}
    emit(args, payload, f"saved {path}")
    return 0
