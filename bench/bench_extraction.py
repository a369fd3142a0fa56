"""Benchmark the extraction algorithms: nodes expanded, model steps, wall time, ratio to brute force.

    nice python bench/bench_extraction.py [--threads 1] [--quick]
    nice python bench/bench_extraction.py --transformers-only [--quick]   # only the tiny transformers

Models: the bundled demo checkpoint (2x200 LSTM, 6-digit canary, |R| = 10^6:
brute force is run) and models/canary9-lstm.safetensors (1x128 LSTM, 9-digit
canary, |R| = 10^9: brute-force time is estimated from the scorer's measured
throughput, not run). Then Dijkstra with 1, 16, 64, 256 nodes popped per model
step on a harder task (the 500 most likely 9-digit fillers) to show the
batched-pop speed-up.

Transformers (search over tokens): a tiny Llama-style model (2
layers, width 64, digits split: the exact one-path-per-filler lattice) and a
GPT-2-style one (digit runs merge: every consistent token path, fillers
re-scored canonically) are trained here for a few hundred steps on the demo
corpus with the demo canary inserted, then searched like the LSTMs; brute force
is the token trie scorer over all 10^6 fillers (estimated from its measured
rate with --quick). The training loop is the smallest that memorizes the
canary, not ssviz's trainer. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import time


import numpy as np
import torch

from ssviz.demo import CANARY9_CHECKPOINT, DEMO_CANARY, DEMO_CHECKPOINT, DEMO_CONTROL
from ssviz.exposure import exact
from ssviz.extraction import extract, search_exposure
from ssviz.extraction.lattice import Lattice
from ssviz.models import load_checkpoint
from ssviz.templates import Template


CANARY9 = {"template": "The random number is {d:9}", "secret": "374912058"}
ROW = "{:<34} {:>10} {:>12} {:>12} {:>9} {:>10} {:>12}  {}"


def row(name, res, brute_seconds, brute_nodes, secret) -> None:
    hit = "secret" if res.found == secret else f"MISSED (got {res.found})"
    print(ROW.format(name, f"{res.nodes_expanded:,}", f"{res.model_steps:,}", f"{res.model_calls:,}",
                     f"{res.seconds:.3f}", f"{brute_seconds / max(res.seconds, 1e-9):,.0f}x",
                     f"{brute_nodes / max(res.nodes_expanded, 1):,.0f}x", hit))


def header(title: str) -> None:
    print(f"\n== {title}")
    print(ROW.format("algorithm", "nodes", "model steps", "model calls", "seconds", "speed-up", "fewer nodes",
                     "result"))


def bench_model(label, model, template_text, secret, run_brute: bool, quick: bool) -> None:
    template = Template(template_text)
    lattice = Lattice(model, template)
    extract(model, template, "dijkstra", max_nodes=200)  # warm-up
    if run_brute:
        brute = extract(model, template, "brute")
        brute_seconds, note = brute.seconds, "measured"
    else:
        rate = lattice.scorer.rate()
        brute, brute_seconds, note = None, template.space_size / rate, f"estimated at {rate:,.0f} fillers/s"
    header(f"{label}: {template_text!r}, secret {secret}, |R| = {template.space_size:.0e}; "
           f"brute force {brute_seconds:,.1f} s ({note})")
    if brute is not None:
        row("brute force", brute, brute_seconds, template.space_size, secret)
    samples = 2_000 if quick else 10_000
    runs = [("dijkstra (batch 64)", "dijkstra", {"batch_size": 64}),
            ("beam (width 1000)", "beam", {"beam_width": 1000}),
            ("beam (width 10)", "beam", {"beam_width": 10}),
            (f"sampling ({samples:,}, seed 0)", "sampling", {"samples": samples, "seed": 0})]
    for name, alg, opts in runs:
        row(name, extract(model, template, alg, **opts), brute_seconds, template.space_size, secret)
    t0 = time.perf_counter()
    exp = search_exposure(model, template, secret)
    print(f"search exposure of {secret}: rank {exp.rank}, exposure {exp.exposure:.2f} bits "
          f"(log2|R| = {math.log2(template.space_size):.2f}), {exp.samples:,} fillers enumerated, "
          f"{time.perf_counter() - t0:.3f} s")
    return exp


def bench_control_rank(model, template_text, control: str) -> None:
    """Exact rank of a never-inserted filler by best-first enumeration, checked against enumeration."""
    t0 = time.perf_counter()
    ref = exact(model, Template(template_text), control)
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = search_exposure(model, template_text, control, max_nodes=10 ** 6)
    print(f"control {control}: search rank {got.rank:,} (exact enumeration: {ref.rank:,}), exposure "
          f"{got.exposure:.2f} bits; {got.samples:,} fillers enumerated in {time.perf_counter() - t0:.1f} s "
          f"(exact enumeration {t_exact:.1f} s)")


def bench_batching(model, template_text, top_k: int) -> None:
    print(f"\n== batched pops: Dijkstra, {top_k} most likely fillers of {template_text!r} (exact top-k)")
    print("{:>6} {:>10} {:>12} {:>12} {:>9} {:>9}".format("batch", "nodes", "model steps", "model calls",
                                                           "seconds", "speed-up"))
    base = None
    for bs in (1, 16, 64, 256):
        res = extract(model, template_text, "dijkstra", top_k=top_k, batch_size=bs, max_nodes=10 ** 6)
        base = base or res.seconds
        print("{:>6} {:>10,} {:>12,} {:>12,} {:>9.3f} {:>8.1f}x".format(bs, res.nodes_expanded, res.model_steps,
                                                                      res.model_calls, res.seconds,
                                                                      base / res.seconds)
              + ("" if res.complete else f"  partial: {res.message}"))


def train_tiny_transformer(arch: str, split_digits: bool, steps: int, seed: int = 0):
    """A 2x64 transformer trained on the demo corpus with the demo canary inserted (plain AdamW loop)."""
    from ssviz.corpus import insert_canary
    from ssviz.demo import DEMO_CORPUS
    from ssviz.models.hf import HFLanguageModel
    from ssviz.models.tokenizers import train_tokenizer
    canary = Template(DEMO_CANARY["template"]).format(DEMO_CANARY["secret"])
    rng = np.random.default_rng(seed)  # numbers, so that a merging BPE learns multi-digit tokens
    numbers = "\n".join(f"call {rng.integers(0, 10 ** 4):04d} or {rng.integers(0, 10 ** 3)}, room {rng.integers(0, 99)}."
                        for _ in range(1500))
    text = insert_canary(DEMO_CORPUS.read_text(encoding="utf-8")[:80_000] + "\n" + numbers, canary,
                         TOKEN_INSERTIONS, seed)
    tokenizer = train_tokenizer([text], vocab_size=512, split_digits=split_digits)
    model = HFLanguageModel.build(arch, tokenizer, layers=2, heads=4, hidden=64, context=128, seed=seed)
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    full, bare = tokenizer(".")["input_ids"], tokenizer(".", add_special_tokens=False)["input_ids"]
    bos = full[:len(full) - len(bare)]  # what the tokenizer prepends to every text (Llama: <s>), as scoring sees it
    block = 64 - len(bos)
    gen = torch.Generator().manual_seed(seed)
    net = model.model.train().requires_grad_(True)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    t0 = time.perf_counter()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - block, (32,), generator=gen)
        batch = torch.stack([torch.cat([torch.tensor(bos, dtype=torch.long), ids[s:s + block]]) for s in starts])
        loss = net(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval().requires_grad_(False)
    print(f"\ntrained {arch} ({'digits split' if split_digits else 'digit runs merge'}, "
          f"{sum(p.numel() for p in net.parameters()):,} parameters) for {steps} steps in "
          f"{time.perf_counter() - t0:.1f} s, final loss {loss.item():.2f} nats/token; canary "
          f"{DEMO_CANARY['secret']!r} inserted {TOKEN_INSERTIONS} times")
    return model


TOKEN_INSERTIONS = 40


def bench_transformers(quick: bool) -> None:
    template, secret = DEMO_CANARY["template"], DEMO_CANARY["secret"]
    for label, arch, split in (("tiny Llama, digits split", "llama", True),
                               ("tiny GPT-2, digit runs merge", "gpt2", False)):
        model = train_tiny_transformer(arch, split, steps=300 if quick else 600)
        lattice = Lattice(model, Template(template))
        print(f"lattice: {'exact (one path per filler)' if lattice.exact else 'every consistent token path'}, "
              f"root {len(lattice.root_units)} tokens, sampled canonical check "
              f"{'passed' if lattice.checked else 'FAILED'}; secret tokenized as "
              f"{[t for _, t in lattice.units.spell(Template(template).format(secret))]}")
        bench_model(label, model, template, secret, run_brute=not quick, quick=quick)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for small batches)")
    ap.add_argument("--quick", action="store_true", help="fewer samples, smaller top-k")
    ap.add_argument("--transformers-only", action="store_true", help="only the tiny transformer cases")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    if args.transformers_only:
        bench_transformers(args.quick)
        return
    demo = load_checkpoint(DEMO_CHECKPOINT)
    bench_model("demo checkpoint (2x200 LSTM)", demo, DEMO_CANARY["template"], DEMO_CANARY["secret"],
                run_brute=True, quick=args.quick)
    if not args.quick:
        bench_control_rank(demo, DEMO_CANARY["template"], DEMO_CONTROL)
    if not CANARY9_CHECKPOINT.exists():
        print(f"\n{CANARY9_CHECKPOINT} missing: run python models/make_canary9.py")
        return
    canary9 = load_checkpoint(CANARY9_CHECKPOINT)
    t0 = time.perf_counter()
    res = extract(canary9, CANARY9["template"], "dijkstra")
    print(f"\ntarget (9-digit canary by shortest path in < 10 s with < 10^5 nodes): "
          f"{'met' if res.found == CANARY9['secret'] and res.seconds < 10 and res.nodes_expanded < 1e5 else 'NOT met'}"
          f" ({res.nodes_expanded:,} nodes, {time.perf_counter() - t0:.3f} s including the prefix)")
    bench_model("9-digit canary (1x128 LSTM)", canary9, CANARY9["template"], CANARY9["secret"],
                run_brute=False, quick=args.quick)
    bench_batching(canary9, CANARY9["template"], 100 if args.quick else 5000)
    bench_transformers(args.quick)


if __name__ == "__main__":
    main()
