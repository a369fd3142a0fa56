"""Token trie scorer vs naive batched full-sequence scoring over tokens, same fillers, same transformer.

    python bench/bench_token_scoring.py                  # 10^6 exhaustive 6-digit, 10^5 random 9-digit
    python bench/bench_token_scoring.py --quick          # 10x smaller, for a smoke run
    python bench/bench_token_scoring.py --merge-digits   # a GPT-2-style tokenizer (digit runs merge)
    python bench/bench_token_scoring.py --model DIR      # any model directory, e.g. the bundled demo transformer

Without ``--model`` the model is a Llama-style decoder built from a config (4
layers, width 128, 0.85 M parameters or 3.4 MB, the size of a demo model) with a
byte-level BPE trained on the demo corpus; its weights are untrained, which does
not change the timings. "Naive" is what a user writes with transformers:
tokenize every text, ``model(ids).logits``, ``log_softmax``, gather, sum,
batched by token length (:func:`ssviz.scoring.score_texts`). It is linear
in the number of fillers, so on the exhaustive space it is timed on a random
subset and scaled (printed as such).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ssviz.templates import Template
from ssviz.scoring import score_digits, score_space, score_texts


def bench_model(args):
    if args.model:
        from ssviz.models.loading import load_model
        return load_model(args.model)
    from ssviz.demo import DEMO_CORPUS
    from ssviz.models.hf import HFLanguageModel
    from ssviz.models.tokenizers import train_tokenizer
    tokenizer = train_tokenizer([DEMO_CORPUS.read_text(encoding="utf-8")], vocab_size=1024,
                                split_digits=not args.merge_digits)
    return HFLanguageModel.build(args.arch, tokenizer, layers=4, heads=4, hidden=128, context=128, seed=0)


CPU = {}  # CPU seconds of the last timed call: wall time is noisy on a shared machine


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    CPU["last"] = time.process_time() - c
    return out, time.perf_counter() - t


def naive(model, template, digits, batch_size):
    texts = [template.format(f) for f in template.digits_to_fillers(digits)]
    return score_texts(model, texts, batch_size=batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", help="a model directory or zip (default: built from a config)")
    ap.add_argument("--arch", choices=["llama", "gpt2"], default="llama")
    ap.add_argument("--merge-digits", action="store_true", help="GPT-2-style tokenizer: digit runs merge")
    ap.add_argument("--naive-subset", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=256, help="naive batch size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-random", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scale = 10 if args.quick else 1
    model = bench_model(args)
    t6 = Template("The random number is {d:5}" if args.quick else "The random number is {d:6}")
    from ssviz.models.tokenizers import TokenTemplate
    tt = model.template_units(t6)
    report = {"torch_threads": torch.get_num_threads(), "model": model.description,
              "tokens_per_text": int(tt.rows(np.zeros((1, t6.filler_length), dtype=np.int64))[1][0]),
              "one_token_per_digit": tt.composition is not None}

    fast, fast_s = timed(lambda: score_space(model, t6))
    fast_cpu = CPU["last"]
    rng = np.random.default_rng(0)
    sub = np.sort(rng.choice(t6.space_size, size=min(args.naive_subset // scale, t6.space_size), replace=False))
    digits = t6.digits_of_indices(sub)
    ref, naive_s = timed(lambda: naive(model, t6, digits, args.batch_size))
    naive_full = naive_s * t6.space_size / len(sub)
    naive_cpu = CPU["last"] * t6.space_size / len(sub)
    report["exhaustive"] = {"template": t6.text, "fillers": t6.space_size, "trie_seconds": round(fast_s, 2),
                            "trie_fillers_per_second": round(t6.space_size / fast_s),
                            "naive_seconds_measured": round(naive_s, 2), "naive_subset": len(sub),
                            "naive_seconds_scaled": round(naive_full, 1), "speedup": round(naive_full / fast_s, 1),
                            "max_abs_diff_bits": float(np.abs(fast[sub] - ref).max()),
                            "trie_cpu_seconds": round(fast_cpu, 2), "naive_cpu_seconds_scaled": round(naive_cpu, 1),
                            "speedup_cpu": round(naive_cpu / fast_cpu, 1)}
    print(json.dumps(report, indent=2), flush=True)

    if not args.skip_random:
        t9 = Template("The random number is {d:9}")
        n = 100_000 // scale
        digits = t9.random_digits(n, np.random.default_rng(1))
        fast, fast_s = timed(lambda: score_digits(model, t9, digits))
        fast_cpu = CPU["last"]
        m = min(n, args.naive_subset // scale)
        ref, naive_s = timed(lambda: naive(model, t9, digits[:m], args.batch_size))
        report["random"] = {"template": t9.text, "fillers": n, "trie_seconds": round(fast_s, 2),
                            "naive_seconds_measured": round(naive_s, 2), "naive_subset": m,
                            "naive_seconds_scaled": round(naive_s * n / m, 1),
                            "speedup": round(naive_s * n / m / fast_s, 1),
                            "max_abs_diff_bits": float(np.abs(fast[:m] - ref).max()),
                            "speedup_cpu": round(CPU["last"] * n / m / fast_cpu, 1)}
        print(json.dumps(report["random"], indent=2))


if __name__ == "__main__":
    main()
