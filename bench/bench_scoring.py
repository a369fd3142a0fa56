"""Trie scorer vs naive batched full-sequence scoring, same fillers, same model (2x200 LSTM).

    python bench/bench_scoring.py            # full: 10^6 exhaustive 6-digit, 10^5 random 9-digit
    python bench/bench_scoring.py --quick    # 10x smaller, for a smoke run

Naive scoring is linear in the number of fillers, so on the exhaustive space it
is timed on a random subset and scaled (printed as such).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


from ssviz.models import CharRNN
from ssviz.scoring import score_digits, score_space, score_texts
from ssviz.templates import Template


def bench_model() -> CharRNN:
    from ssviz.demo import DEMO_CHECKPOINT
    if DEMO_CHECKPOINT.exists():
        from ssviz.models import load_checkpoint
        return load_checkpoint(DEMO_CHECKPOINT)  # the demo is a 2x200 LSTM
    torch.manual_seed(0)
    return CharRNN([chr(c) for c in range(32, 127)], hidden_size=200, num_layers=2).eval()


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def naive(model, template, digits, batch_size=4096):
    texts = [template.format(f) for f in template.digits_to_fillers(digits)]
    return score_texts(model, texts, batch_size=batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--naive-subset", type=int, default=50_000)
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    model = bench_model()
    report = {"torch_threads": torch.get_num_threads(), "model": model.description}

    t6 = Template("The random number is {d:6}")
    if args.quick:
        t6 = Template("The random number is {d:5}")
    fast, fast_s = timed(lambda: score_space(model, t6))
    rng = np.random.default_rng(0)
    sub = rng.choice(t6.space_size, size=min(args.naive_subset // scale, t6.space_size), replace=False)
    digits = t6.digits_of_indices(np.sort(sub))
    ref, naive_s = timed(lambda: naive(model, t6, digits))
    naive_full = naive_s * t6.space_size / len(sub)
    report["exhaustive"] = {"template": t6.text, "fillers": t6.space_size, "trie_seconds": fast_s,
                            "trie_fillers_per_second": t6.space_size / fast_s,
                            "naive_seconds_measured": naive_s, "naive_subset": len(sub),
                            "naive_seconds_scaled": naive_full, "speedup": naive_full / fast_s,
                            "max_abs_diff_bits": float(np.abs(fast[np.sort(sub)] - ref).max())}

    t9 = Template("The random number is {d:9}")
    n = 100_000 // scale
    digits = t9.random_digits(n, np.random.default_rng(1))
    fast, fast_s = timed(lambda: score_digits(model, t9, digits))
    ref, naive_s = timed(lambda: naive(model, t9, digits))
    report["random"] = {"template": t9.text, "fillers": n, "trie_seconds": fast_s, "naive_seconds": naive_s,
                        "speedup": naive_s / fast_s, "max_abs_diff_bits": float(np.abs(fast - ref).max())}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
