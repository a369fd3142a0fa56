"""Trie scorer vs naive batched full-sequence scoring, same fillers, same model (2x200 LSTM).

    python bench/bench_scoring.py            # full: 10^6 exhaustive 6-digit, 10^5 random 9-digit
    python bench/bench_scoring.py --quick    # 10x smaller, for a smoke run
    python bench/bench_scoring.py --limit    # the scorer against the matrix-product limit only

``--limit`` (also part of the full run) measures, on this process's torch threads, a 2048x2048
float32 matrix product (GFLOP/s) and the trie scorer over the whole 10^6 space of the demo's template:
trie steps (one per node above the last level: 111,110 for 6 digits) x the nominal FLOPs of one
LSTM step (1.1 MFLOP for the 2x200 demo) / seconds, as a percentage of the matrix product. Each is the
best of ``--repeat`` runs (the machine may be shared). The fast LSTM path does fewer FLOPs than the
nominal count (shared recurrent projections, a lookup for the first layer's input): the nominal rate is
the one compared, the rate of FLOPs actually done is printed beside it.

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


def matmul_gflops(n: int = 2048, repeat: int = 5) -> float:
    """Best-of-``repeat`` float32 ``n x n`` matrix product, GFLOP/s (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm up
    best = min(timed(lambda: torch.mm(a, b, out=out))[1] for _ in range(repeat))
    return 2 * n ** 3 / best / 1e9


def trie_steps(template: Template) -> int:
    """Trie nodes stepped when the whole space is enumerated: every distinct prefix of the characters after
    the template's literal prefix, short of full length (the last character is only looked up)."""
    steps, width = 0, 1
    for alphabet in template.positions[:-1]:
        width *= len(alphabet)
        steps += width
    return steps


def step_flops(model) -> dict:
    """FLOPs of one LSTM step: nominal (input and recurrent products of every layer, and the head) and what
    the fast path does per child when ``fanout`` children share a node (digits: 10)."""
    e, h, v, layers = model.embedding_dim, model.hidden_size, len(model.vocab), model.num_layers
    nominal = 2 * (e * 4 * h + (layers - 1) * h * 4 * h + layers * h * 4 * h + h * v)
    return {"nominal": nominal, "per_child": 2 * ((layers - 1) * h * 4 * h + h * v),
            "per_node": 2 * layers * h * 4 * h}


def limit(model, repeat: int = 3, template: str = "The secret code is {d:6}") -> dict:
    """The scorer's rate over a whole 6-digit space against the matrix-product limit (best of ``repeat``)."""
    t = Template(template)
    score_space(model, Template(template.replace("{d:6}", "{d:3}")))  # warm up
    gemm = matmul_gflops()
    best = min(timed(lambda: score_space(model, t))[1] for _ in range(repeat))
    gemm = max(gemm, matmul_gflops())  # measured before and after: the better of the two
    steps = trie_steps(t)
    f = step_flops(model)
    nodes = steps // 10 + 1  # nodes with children: one per 10 children (digits)
    rate = steps * f["nominal"] / best / 1e9
    done = (steps * f["per_child"] + nodes * f["per_node"]) / best / 1e9
    return {"template": t.text, "fillers": t.space_size, "torch_threads": torch.get_num_threads(),
            "repeat": repeat, "seconds": best, "trie_steps": steps, "nominal_flops_per_step": f["nominal"],
            "nominal_gflops": rate, "matmul_gflops_2048": gemm, "percent_of_matmul": 100 * rate / gemm,
            "gflops_actually_done": done}


def naive(model, template, digits, batch_size=4096):
    texts = [template.format(f) for f in template.digits_to_fillers(digits)]
    return score_texts(model, texts, batch_size=batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--naive-subset", type=int, default=50_000)
    ap.add_argument("--limit", action="store_true", help="only the scorer against the matrix-product limit")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    scale = 10 if args.quick else 1
    model = bench_model()
    report = {"torch_threads": torch.get_num_threads(), "model": model.description}
    if args.limit or not args.quick:
        report["limit"] = limit(model, args.repeat)
        print(f"scorer: {report['limit']['nominal_gflops']:.1f} GFLOP/s nominal = "
              f"{report['limit']['percent_of_matmul']:.0f}% of a {report['limit']['matmul_gflops_2048']:.1f} "
              f"GFLOP/s matrix product ({report['limit']['seconds']:.2f} s, best of {args.repeat})", flush=True)
        if args.limit:
            print(json.dumps(report, indent=2))
            return

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
