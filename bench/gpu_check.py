"""One prepared GPU check (under 10 minutes on one H100): agreement with the CPU, 10^6 fillers, 10^9 projected.

    python bench/gpu_check.py              # on a CUDA machine: the GPT-2-small shape (124M), table + JSON
    python bench/gpu_check.py --smoke      # anywhere (CPU): a tiny model and small counts, to keep it working

1. float32 on the device scores a random sample of fillers as the CPU does (trie scorer, max difference
   at most 1e-3 bits);
2. exact exposure over the 10^6 fillers of a 6-digit slot, in bfloat16 (target: under 30 s on an H100);
3. a measured slice of the 10^8-filler space of an 8-digit slot, scored shard by shard as a sharded
   exact run scores it (``count_range``), and the rate projected to 10^8 and 10^9 fillers (target:
   10^9 under 15 minutes).

The table is printed; the JSON goes to ``$OUT/gpu_check.json`` when ``$OUT`` is set (and to stdout with
``--json``). The model is built from a config with random weights: the timings do not depend on them.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

def _sibling(name: str):
    """A module of this folder by its file (bench scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_real_size = _sibling("bench_real_size")
TEMPLATE, build = _real_size.TEMPLATE, _real_size.build


def place(lm, device: str, dtype: torch.dtype):
    """The model on ``device`` in ``dtype``: through ``LanguageModel.place`` where the model has it; else the
    weights are moved here and the model's reads are wrapped to take CPU tokens and give CPU log-probabilities."""
    fn = getattr(lm, "place", None)
    if fn is not None:
        return fn(device=device, dtype=str(dtype).removeprefix("torch."))
    lm.model.to(device=device, dtype=dtype)
    run = type(lm).run

    def run_on(tokens, state):
        lp, state = run(lm, tokens.to(device), state)
        return lp.float().cpu(), state
    lm.run = run_on
    return lm


@functools.cache
def tiny_tokenizer():
    from ssviz.demo import DEMO_CORPUS
    from ssviz.models.tokenizers import train_tokenizer
    return train_tokenizer([DEMO_CORPUS.read_text(encoding="utf-8")[:30_000]], vocab_size=400, split_digits=True)


def tiny(seed: int = 0):
    from ssviz.models.hf import HFLanguageModel
    return HFLanguageModel.build("gpt2", tiny_tokenizer(), layers=2, heads=2, hidden=32, context=128, seed=seed)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny model, small counts (runs on the CPU)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--arch", choices=["gpt2", "llama"], default="gpt2")
    ap.add_argument("--sample", type=int, default=256, help="fillers compared with the CPU")
    ap.add_argument("--slice-seconds", type=float, default=150.0, help="time spent on the 10^8 space's slice")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    from ssviz.exposure import measure
    from ssviz.exposure.sharded import count_range, shard_plan
    from ssviz.scoring import score_digits
    from ssviz.templates import Template

    smoke = args.smoke
    make = tiny if smoke else (lambda: build(args.arch))
    digits_exact, digits_sharded = (3, 4) if smoke else (6, 8)
    sample_n = min(args.sample, 16) if smoke else args.sample
    slice_seconds = min(args.slice_seconds, 0.5) if smoke else args.slice_seconds
    report: dict = {"device": device, "smoke": smoke, "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None}
    t_all = time.perf_counter()

    # 1. float32 on the device equals the CPU
    cpu = make()
    report["model"] = cpu.name
    report["parameters"] = cpu.parameter_count
    t1 = Template(TEMPLATE.format(slot=f"{{d:{digits_exact}}}"))
    rng = np.random.default_rng(0)
    digits = t1.digits_of_indices(np.sort(rng.choice(t1.space_size, size=min(sample_n, t1.space_size),
                                                     replace=False)))
    ref = score_digits(cpu, t1, digits)
    dev32 = place(make(), device, torch.float32)
    got = score_digits(dev32, t1, digits)
    diff = float(np.abs(got - ref).max())
    report["float32_max_diff_bits"] = diff
    report["float32_equal"] = diff <= 1e-3
    del dev32

    # 2. exact exposure over 10^digits fillers in bfloat16
    lm = place(cpu, device, torch.bfloat16)
    secret = "7" * digits_exact
    measure(lm, Template(TEMPLATE.format(slot="{d:2}")), "77", "exact")  # warm-up (kernels, allocator)
    sync(device)
    t0 = time.perf_counter()
    result = measure(lm, t1, secret, "exact")
    sync(device)
    exact_s = time.perf_counter() - t0
    report.update({"exact_fillers": t1.space_size, "exact_seconds": exact_s, "exact_exposure_bits": result.exposure,
                   "exact_rank": result.rank, "exact_fillers_per_s": t1.space_size / exact_s})

    # 3. a slice of the 10^8 space, shard by shard as a sharded run scores it; projected
    t8 = Template(TEMPLATE.format(slot=f"{{d:{digits_sharded}}}"))
    chunk, shard = shard_plan(t8.space_size)
    done, t0 = 0, time.perf_counter()
    while done < t8.space_size and (time.perf_counter() - t0 < slice_seconds or done == 0):
        hi = min(done + shard, t8.space_size)
        count_range(lm, t8, done, hi, [0.0], chunk_size=chunk)
        done = hi
    sync(device)
    slice_s = time.perf_counter() - t0
    rate = done / slice_s
    report.update({"sharded_space": t8.space_size, "sharded_shard": shard, "sharded_slice_fillers": done,
                   "sharded_slice_seconds": slice_s, "sharded_fillers_per_s": rate,
                   "projected_1e8_seconds": 1e8 / rate, "projected_1e9_seconds": 1e9 / rate,
                   "total_seconds": time.perf_counter() - t_all})
    rows = [("device", f"{device}{' (' + report['gpu'] + ')' if report['gpu'] else ''}"),
            ("model", f"{report['model']}, {report['parameters'] / 1e6:.1f}M parameters"),
            ("float32 vs CPU", f"max {diff:.2e} bits on {len(digits)} fillers: "
                               f"{'equal' if report['float32_equal'] else 'DIFFERENT'} (<= 1e-3)"),
            (f"exact, 10^{digits_exact} fillers, bf16", f"{exact_s:.1f} s ({t1.space_size / exact_s:,.0f} fillers/s; "
                                                        f"target < 30 s for 10^6)"),
            (f"sharded slice of 10^{digits_sharded}", f"{done:,} fillers in {slice_s:.1f} s ({rate:,.0f}/s)"),
            ("projected 10^8", f"{1e8 / rate / 60:.1f} min"),
            ("projected 10^9", f"{1e9 / rate / 60:.1f} min (target < 15 min)"),
            ("total", f"{report['total_seconds']:.0f} s")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if args.json:
        print(json.dumps(report, indent=2))
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_check.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
