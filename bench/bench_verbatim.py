"""Greedy decoding of verbatim extraction vs transformers' ``generate(do_sample=False)``, same prompts, same model.

    python bench/bench_verbatim.py                    # the bundled demo transformer, 256 demo-corpus lines, 32 + 32
    python bench/bench_verbatim.py --quick            # 64 lines, for a smoke run
    python bench/bench_verbatim.py --model DIR        # any model directory (a transformer: generate is its reference)

Prompts are the first K tokens of demo-corpus lines at least K + L tokens long (the lines ``verbatim``
tests); both sides decode L tokens for the same batches of prompts of one length (no padding), with EOS
stopping off in ``generate`` so both run the full L steps. The tokens must be equal, and are checked.
"ours" is :func:`ssviz.longtail.verbatim.greedy_decode` alone and again with the teacher-forced read of
the true suffix (what the ``verbatim`` command runs); wall and CPU seconds are printed (the wall time
is noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ssviz.longtail.verbatim import greedy_decode


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def generate(model, prompts, steps, batch_size):
    out = np.zeros((len(prompts), steps), dtype=np.int64)
    with torch.inference_mode():
        for lo in range(0, len(prompts), batch_size):
            ids = torch.tensor(prompts[lo:lo + batch_size])
            ref = model.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, do_sample=False,
                                       eos_token_id=None, pad_token_id=0)
            out[lo:lo + len(ids)] = ref[:, ids.shape[1]:].numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the bundled demo transformer)")
    ap.add_argument("--prefix", type=int, default=32)
    ap.add_argument("--suffix", type=int, default=32)
    ap.add_argument("--lines", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each side (the best is kept)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from ssviz.demo import DEMO_CORPUS, DEMO_TRANSFORMER
    from ssviz.models import load_model
    model = load_model(args.model or DEMO_TRANSFORMER)
    lines = args.lines // 4 if args.quick else args.lines
    need = args.prefix + args.suffix
    rows = [r for r in model.encode_batch(DEMO_CORPUS.read_text(encoding="utf-8").split("\n")) if len(r) >= need]
    rows = rows[:lines]
    prompts = [r[:args.prefix] for r in rows]
    targets = [r[args.prefix:need] for r in rows]
    best: dict[str, tuple] = {}
    for _ in range(args.repeats):
        for name, fn in (("generate", lambda: generate(model, prompts, args.suffix, args.batch_size)),
                         ("ours", lambda: greedy_decode(model, prompts, args.suffix, batch_size=args.batch_size).tokens),
                         ("ours_with_log_p", lambda: greedy_decode(model, prompts, args.suffix, targets=targets,
                                                                   batch_size=args.batch_size).tokens)):
            out, wall, cpu = timed(fn)
            if name not in best or wall < best[name][1]:
                best[name] = out, wall, cpu
    ref = best["generate"][0]
    for name in ("ours", "ours_with_log_p"):
        if not np.array_equal(best[name][0], ref):
            raise SystemExit(f"{name}: tokens differ from generate in {int((best[name][0] != ref).any(1).sum())} rows")
    tokens = len(prompts) * args.suffix
    report = {"model": str(args.model or DEMO_TRANSFORMER), "parameters": model.parameter_count, "lines": len(prompts),
              "prefix": args.prefix, "suffix": args.suffix, "batch_size": args.batch_size, "threads": args.threads,
              "equal_to_generate": True}
    for name, (_out, wall, cpu) in best.items():
        report[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "tokens_per_s": round(tokens / wall)}
    report["speedup_vs_generate"] = round(best["generate"][1] / best["ours"][1], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
