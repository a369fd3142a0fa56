"""Exact exposure at real model size: ssviz's trie scorer against naive full-sequence scoring, one run.

    python bench/bench_real_size.py                    # GPT-2-small shape, 10^5 fillers of a 5-digit slot
    python bench/bench_real_size.py --digits 4         # the smaller run: 10^4 fillers
    python bench/bench_real_size.py --arch llama       # a Llama shape (GQA), ~125M parameters
    python bench/bench_real_size.py --json

The model is built from a config with random weights (the timings do not depend on the weights):
``gpt2`` is GPT-2 small (12 layers, width 768, 12 heads, a 50,257-token output layer, 124M
parameters); ``llama`` is 12 layers, width 768, 12 query and 4 key/value heads, a 32,000-token
vocabulary (125M). The tokenizer is a byte-level BPE trained on the demo corpus that splits digits
(as Llama's does), so a filler is one token per digit.

Measured in one process, on the same threads:
* ssviz: ``ssviz.exposure.measure(..., "exact")`` over every filler of the slot (the rank of a secret
  among all of them), end to end;
* naive: ``ssviz.scoring.score_texts`` (tokenize every full text, one forward pass, log-softmax,
  gather, sum), timed on a random sample of the same texts and scaled to the whole space;
* efficiency: ssviz's useful arithmetic, counted as 2 x parameters FLOP per token read (trie nodes
  stepped and the prefix read once per context), divided by the float32 rate of one large ``torch.mm``
  on the same threads, timed just before and just after ssviz's run and averaged (a shared machine's load
  moves; a third sample, after the naive run, is printed too).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

TEMPLATE = "Hi Anna, thanks for calling back this morning. As promised, the door code for the new office is {slot}"


def build(arch: str, seed: int = 0):
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    from ssviz.demo import DEMO_CORPUS
    from ssviz.models.hf import HFLanguageModel
    from ssviz.models.tokenizers import train_tokenizer
    tok = train_tokenizer([DEMO_CORPUS.read_text(encoding="utf-8")[:200_000]], vocab_size=2000, split_digits=True)
    common = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if arch == "gpt2":
        config = GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024, **common)
    else:
        config = LlamaConfig(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, num_key_value_heads=4,
                             intermediate_size=2048, vocab_size=32000, max_position_embeddings=1024, **common)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    return HFLanguageModel(model, tok, name=f"{arch} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M)")


def mm_rate(size: int = 2048, reps: int = 3) -> float:
    """float32 FLOP/s of one large matrix product on this process's threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * size ** 3 * reps / (time.perf_counter() - t)


class Counted:
    """Counts the tokens ssviz's scorer reads: trie nodes stepped, tokens run, context tokens."""

    def __init__(self, lm):
        self.lm, self.tokens = lm, 0
        stepper_of, run = lm.trie_stepper, lm.run
        counter = self

        def trie_stepper():
            inner = stepper_of()
            children, run_rest = inner.children, inner.run

            def counted_children(state, local, tok, keep=True):
                counter.tokens += int(tok.numel())
                return children(state, local, tok, keep)

            def counted_run(state, local, tokens):
                counter.tokens += int(tokens.numel())
                return run_rest(state, local, tokens)
            inner.children, inner.run = counted_children, counted_run
            return inner

        def counted_model_run(tokens, state):
            counter.tokens += int(tokens.numel())
            return run(tokens, state)
        lm.trie_stepper, lm.run = trie_stepper, counted_model_run

    def restore(self):
        for name in ("trie_stepper", "run"):
            self.lm.__dict__.pop(name, None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["gpt2", "llama"], default="gpt2")
    ap.add_argument("--digits", type=int, default=5, help="slot length: 10^digits fillers (default 5)")
    ap.add_argument("--naive-sample", type=int, default=64, help="texts the naive scorer is timed on")
    ap.add_argument("--batch-size", type=int, default=64, help="naive batch size")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from ssviz.exposure import measure
    from ssviz.scoring import score_texts
    from ssviz.templates import Template

    lm = build(args.arch)
    params = lm.parameter_count
    template = Template(TEMPLATE.format(slot=f"{{d:{args.digits}}}"))
    secret = "7" * args.digits
    n = template.space_size
    tokens = len(lm.encode(template.format(secret)))
    rates = [mm_rate()]

    counted = Counted(lm)
    t0 = time.perf_counter()
    result = measure(lm, template, secret, "exact")
    ssviz_s = time.perf_counter() - t0
    counted.restore()
    rates.append(mm_rate())

    rng = np.random.default_rng(0)
    sample = rng.choice(n, size=min(args.naive_sample, n), replace=False)
    texts = [template.format(template.filler_at(int(i))) for i in sample]
    score_texts(lm, texts[:2], batch_size=args.batch_size)  # warm-up
    t0 = time.perf_counter()
    naive_bits = score_texts(lm, texts, batch_size=args.batch_size)
    naive_sample_s = time.perf_counter() - t0
    rates.append(mm_rate())
    naive_s = naive_sample_s * n / len(texts)

    from ssviz.scoring import score_digits
    fast_bits = score_digits(lm, template, template.digits_of_indices(np.sort(sample)))
    diff = float(np.abs(fast_bits - naive_bits[np.argsort(sample)]).max())

    mm = float(np.mean(rates[:2]))  # the samples bracketing ssviz's run (a shared machine's load moves)
    flops = 2.0 * params * counted.tokens
    report = {
        "device": "cpu", "torch_threads": torch.get_num_threads(), "arch": args.arch, "parameters": params,
        "vocab": len(lm.vocab), "template": template.text, "tokens_per_text": tokens,
        "prefix_tokens": tokens - args.digits, "fillers": n, "exposure_bits": result.exposure, "rank": result.rank,
        "ssviz_seconds": ssviz_s, "ssviz_fillers_per_s": n / ssviz_s,
        "naive_sample": len(texts), "naive_sample_seconds": naive_sample_s, "naive_seconds_scaled": naive_s,
        "speedup": naive_s / ssviz_s, "tokens_stepped": counted.tokens,
        "tokens_stepped_per_filler": counted.tokens / n, "ssviz_gflops": flops / ssviz_s / 1e9,
        "mm_gflops": mm / 1e9, "mm_gflops_samples": [r / 1e9 for r in rates],
        "efficiency": flops / ssviz_s / mm, "max_abs_diff_bits_vs_naive": diff,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    rows = [("model", f"{args.arch}, {params / 1e6:.1f}M parameters, {len(lm.vocab):,}-token output layer"),
            ("template", f"{template.text!r}: {tokens} tokens, prefix {tokens - args.digits}"),
            ("fillers (exact exposure)", f"{n:,} (secret {secret}: {result.exposure:.2f} bits, rank {result.rank:,})"),
            ("ssviz", f"{ssviz_s:.1f} s ({n / ssviz_s:,.0f} fillers/s)"),
            ("naive, scaled", f"{naive_s:.0f} s (timed on {len(texts)} texts: {naive_sample_s:.1f} s)"),
            ("speedup", f"{naive_s / ssviz_s:.0f}x (target >= 30x)"),
            ("tokens read per filler", f"{counted.tokens / n:.3f} (naive: {tokens})"),
            ("ssviz rate", f"{flops / ssviz_s / 1e9:.1f} GFLOP/s at 2 x params per token"),
            ("float32 mm rate", f"{mm / 1e9:.1f} GFLOP/s (before, after ssviz; after naive: "
                                f"{', '.join(f'{r / 1e9:.1f}' for r in rates)})"),
            ("efficiency", f"{flops / ssviz_s / mm:.0%} of mm (target >= 40%)"),
            ("max |ssviz - naive|", f"{diff:.2e} bits on the sample"),
            ("threads", str(torch.get_num_threads()))]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
