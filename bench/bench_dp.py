"""How much slower is DP-SGD (Opacus DPLSTM) than plain training?

Prints seconds per epoch for plain RMSProp training and for DP-SGD on the same
1-layer LSTM and corpus slice (no canary, so only training is timed), with
per-example gradients from Opacus' hooks (one outer product per time step)
and from ssviz's vectorized pass (:class:`ssviz.defenses.dp.PerSampleGradients`),
and the noise multiplier and epsilon Opacus' RDP accountant reports for each
(they must agree). Opacus is imported before timing.

``--arch gpt2`` or ``llama`` times a small transformer instead (width ``--hidden``,
2 blocks, 4 heads, 800-token BPE, windows of 64 tokens, batch 32, AdamW): plain
training against DP-SGD with Opacus' hooks (functorch for the layers it has no
rule for) and with functorch for every layer.

    nice python bench/bench_dp.py [--arch lstm] [--kb 100] [--hidden 128] [--epochs 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace


import opacus  # noqa: F401  (imported before timing: its import takes seconds)
import torch

from ssviz.defenses import dp
from ssviz.demo import DEMO_CORPUS
from ssviz.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lstm", choices=["lstm", "gpt2", "llama"])
    ap.add_argument("--kb", type=int, default=100, help="corpus slice in KB")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = DEMO_CORPUS.read_text(encoding="utf-8")[:args.kb * 1000]
    if args.arch != "lstm":
        base = TrainConfig(arch=args.arch, layers=2, hidden=args.hidden, heads=4, vocab_size=800,
                           epochs=args.epochs, batch_size=32, seq_len=64, lr=0.003, patience=None)
        print(f"corpus {len(text):,} chars, {args.arch} 2x{args.hidden}, batch 32 x 64 tokens, {args.epochs} "
              f"epoch(s), {args.threads} torch thread(s)")
        cfg = replace(base, dp_noise=1.0)
        rows = [("plain AdamW", base, None), ("DP noise=1.0 opacus hooks", cfg, "hooks"),
                ("DP noise=1.0 functorch", cfg, "functorch")]
    else:
        base = TrainConfig(layers=1, hidden=args.hidden, embedding_dim=32, epochs=args.epochs, batch_size=128,
                           lr=0.005, patience=None)
        print(f"corpus {len(text):,} chars, 1x{args.hidden} LSTM, batch 128, {args.epochs} epoch(s), "
              f"{args.threads} torch thread(s)")
        rows = [("plain RMSProp", base, None)]
        for label, cfg in (("DP noise=1.0 clip=1", replace(base, dp_noise=1.0)),
                           ("DP target eps=8", replace(base, dp_epsilon=8.0))):
            rows += [(f"{label} opacus hooks", cfg, "hooks"), (f"{label} vectorized", cfg, "vectorized")]
    plain = None
    for label, cfg, mode in rows:
        if args.arch != "lstm":
            dp.DPBackend.uncovered_grad_sample_mode = mode or "hooks"
        else:
            dp.DPBackend.grad_sample_mode = mode or "vectorized"
        t = time.perf_counter()
        res = train(text, cfg)
        per_epoch = (time.perf_counter() - t) / len(res.epochs)
        plain = plain or per_epoch
        eps = "" if res.epsilon is None else f"  epsilon {res.epsilon:.2f} (delta {cfg.dp_delta:g}, sigma {res.dp_noise:.2f})"
        print(f"{label:34s} {per_epoch:7.2f} s/epoch  x{per_epoch / plain:5.1f}  test loss {res.test_loss:.3f}{eps}",
              flush=True)


if __name__ == "__main__":
    main()
