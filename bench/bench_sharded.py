"""Sharded exact enumeration: scorer efficiency against the hardware limit, shard throughput, scaling, big spaces.

    python bench/bench_sharded.py                 # everything local (about 10 CPU-minutes)
    python bench/bench_sharded.py --quick         # smaller spaces, a smoke run
    python bench/bench_sharded.py --ray           # also 1 vs 2 Ray workers (in a loopback-only network
                                                  # namespace: needs root or user namespaces, unshare, ip)
    python bench/bench_sharded.py --big 8         # exact exposure over 10^8 fillers (9: 10^9)
    python bench/bench_sharded.py --ray --only-ray --ray-digits 8 --ray-shard 0   # Ray scaling, 10^8, 4M shards

The hardware limit is measured as in the calibration notes: a 2048x2048 float32
matrix product on the same threads, against the FLOPs of the batched LSTM steps
the trie scorer must do (one per trie node; elementwise work not counted).
Every time is given as wall time and, for one thread, CPU time of this process:
on a machine shared with other work, CPU time is the stable measure of
efficiency (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ssviz import exposure
from ssviz.demo import DEMO_CANARY, load_demo_model
from ssviz.executor import LocalExecutor
from ssviz.scoring import SPACE_CHUNK, score_space
from ssviz.templates import Template

SECRET_TEMPLATE = "The secret code is {d:%d}"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def matmul_gflops(threads: int, n: int = 2048, reps: int = 6) -> dict:
    """Best of a few rounds of an n x n float32 product, as wall and (1 thread) CPU rates."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best_w = best_c = 0.0
    for _ in range(3):
        _, w, c = timed(lambda: [a @ b for _ in range(reps)])
        best_w, best_c = max(best_w, 2 * n ** 3 * reps / w / 1e9), max(best_c, 2 * n ** 3 * reps / c / 1e9)
    torch.set_num_threads(old)
    return {"threads": threads, "wall_gflops": best_w, "cpu_gflops": best_c if threads == 1 else None}


def step_flops(model) -> float:
    """FLOPs of one batched step per row: the recurrent layers' matrix products and the head."""
    gates = {"lstm": 4, "gru": 3}[model.arch]
    e, h, v, layers = model.embedding_dim, model.hidden_size, len(model.vocab), model.num_layers
    return 2 * gates * h * (e + h) + (layers - 1) * 2 * gates * h * (2 * h) + 2 * h * v


def trie_steps(template: Template, lo: int = 0, hi: int | None = None) -> int:
    """Model steps the trie scorer needs over fillers lo..hi-1: one per distinct prefix (trie node) of
    every position but the last (whose distribution comes from its parent's step)."""
    hi = template.space_size if hi is None else hi
    steps, below = 0, 1
    sizes = [len(a) for a in template.positions]
    for p in range(len(sizes) - 1):
        below = int(np.prod(sizes[p + 1:], dtype=object)) if p + 1 < len(sizes) else 1
        steps += -(-hi // below) - lo // below  # prefixes of length p+1 that fillers lo..hi-1 touch
    return steps


def efficiency(template: Template, seconds: float, model, limit: float, lo: int = 0, hi: int | None = None) -> dict:
    flops = trie_steps(template, lo, hi) * step_flops(model)
    return {"gflops": flops / seconds / 1e9, "of_matmul_limit": flops / seconds / 1e9 / limit}


def bench_scorer(model, digits: int, limits: dict) -> dict:
    """score_space over a whole space (the Exposure page's exact path), 1 and 2 threads."""
    t = Template(SECRET_TEMPLATE % digits)
    out = {"template": t.text, "fillers": t.space_size, "trie_steps": trie_steps(t), "step_mflops": step_flops(model) / 1e6}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        score_space(model, t)  # warm
        best = min((timed(lambda: score_space(model, t)) for _ in range(2)), key=lambda r: r[1])
        _, wall, cpu = best
        row = {"wall_s": wall, "fillers_per_s": t.space_size / wall,
               "wall": efficiency(t, wall, model, limits[threads]["wall_gflops"])}
        if threads == 1:
            row.update(cpu_s=cpu, cpu=efficiency(t, cpu, model, limits[1]["cpu_gflops"]))
        out[f"threads_{threads}"] = row
    torch.set_num_threads(1)
    return out


def bench_shard(model, digits: int, fillers: int, limit_cpu: float) -> dict:
    """One shard of a big space on one CPU: what each worker does."""
    torch.set_num_threads(1)
    t = Template(SECRET_TEMPLATE % digits)
    lo = t.space_size // 3 // SPACE_CHUNK * SPACE_CHUNK
    hi = lo + fillers
    _, wall, cpu = timed(lambda: exposure.count_range(model, t, lo, hi, [60.0]))
    return {"template": t.text, "shard_fillers": fillers, "wall_s": wall, "cpu_s": cpu,
            "fillers_per_s_wall": fillers / wall, "fillers_per_s_cpu": fillers / cpu,
            "cpu": efficiency(t, cpu, model, limit_cpu, lo, hi)}


def run_sharded(model, executor, digits: int, shard_size: int | None = None) -> dict:
    t = Template(SECRET_TEMPLATE % digits)
    secret = DEMO_CANARY["secret"][:digits].ljust(digits, "0")
    res, wall, _ = timed(lambda: exposure.exact(model, t, secret, executor=executor, shard_size=shard_size))
    s = res.shards
    return {"fillers": t.space_size, "wall_s": wall, "scoring_wall_s": s["seconds"],
            "fillers_per_s": t.space_size / s["seconds"], "shards": s["shards"], "task_wall_s_sum": s["task_seconds"],
            "task_cpu_s_sum": s["task_cpu_seconds"], "cpu_per_filler_us": s["task_cpu_seconds"] / t.space_size * 1e6,
            "workers": executor.cpus, "rank": res.rank, "exposure": res.exposure}


def bench_scaling_local(model, digits: int, shard: int) -> dict:
    out = {}
    for workers in (1, 2):
        with LocalExecutor(workers) as ex:
            run_sharded(model, ex, 5, shard)  # start the processes (spawn imports torch)
            out[f"workers_{workers}"] = run_sharded(model, ex, digits, shard)
    _speedups(out)
    return out


def _speedups(out: dict) -> None:
    """Wall speed-up, and the speed-up the CPU work allows: 2 x (CPU per filler with one worker / with two).
    On a machine shared with other work the first is capped by the free cores; the second shows whether
    two workers slow each other down (memory, caches, scheduling of the driver)."""
    one, two = out["workers_1"], out["workers_2"]
    out["speedup"] = one["scoring_wall_s"] / two["scoring_wall_s"]
    out["speedup_cpu_bound"] = 2 * one["cpu_per_filler_us"] / two["cpu_per_filler_us"]
    out["free_cores_during_two"] = two["task_cpu_s_sum"] / two["scoring_wall_s"]


def bench_scaling_ray(model, digits: int, shard: int) -> dict:
    from ssviz.executor import RayExecutor
    t0 = time.perf_counter()
    with RayExecutor(workers=2) as ex2:  # starts a local Ray instance (2 CPUs)
        started = time.perf_counter() - t0
        out = {"ray_start_s": started}
        with RayExecutor(workers=1) as ex1:  # the same instance, one task at a time
            run_sharded(model, ex1, 5, shard)
            out["workers_1"] = run_sharded(model, ex1, digits, shard)
        run_sharded(model, ex2, 5, shard)
        out["workers_2"] = run_sharded(model, ex2, digits, shard)
    _speedups(out)
    return out


def exact_path_profile(model, digits: int) -> dict:
    """Where exact exposure's time goes outside scoring (the Exposure page's library part)."""
    torch.set_num_threads(1)
    t = Template(SECRET_TEMPLATE % digits)
    lps, score_s, _ = timed(lambda: score_space(model, t))
    secret_lp = lps[t.index_of(DEMO_CANARY["secret"][:digits])]
    _, rank_s, _ = timed(lambda: int(np.count_nonzero(lps <= secret_lp)))
    _, hist_s, _ = timed(lambda: exposure.Histogram.of(lps))
    _, fit_s, _ = timed(lambda: exposure.fit_subsample(lps))
    _, whole_s, _ = timed(lambda: exposure.measure(model, t, DEMO_CANARY["secret"][:digits], "exact"))
    return {"fillers": t.space_size, "score_s": score_s, "rank_s": rank_s, "histogram_s": hist_s, "fit_s": fit_s,
            "measure_total_s": whole_s}


def in_namespace(argv: list[str]) -> int:
    """Run this script again in a fresh network namespace with only loopback, then end what it left there."""
    ns_cmd = ["unshare", "-n" if os.geteuid() == 0 else "-rn", "--", "bash", "-c",
              "ip link set lo up && exec " + " ".join([sys.executable, *map(_quote, argv)])]
    env = {**os.environ, "SSVIZ_BENCH_NETNS": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "SSVIZ_HOST_NETNS": os.readlink("/proc/self/ns/net")}
    return subprocess.run(ns_cmd, env=env).returncode


def _quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


def private_namespace() -> bool:
    """Whether this process runs in the namespace ``--ray`` made (never the one it was started from)."""
    host = os.environ.get("SSVIZ_HOST_NETNS", "")
    ns = os.readlink("/proc/self/ns/net")
    try:
        init = os.readlink("/proc/1/ns/net")
    except OSError:
        init = host
    interfaces = {ln.split(":", 1)[0].strip() for ln in Path("/proc/self/net/dev").read_text().splitlines()[2:]}
    return (os.environ.get("SSVIZ_BENCH_NETNS") == "1" and bool(host) and ns not in (host, init)
            and interfaces == {"lo"})


def end_namespace_processes() -> None:
    """Everything else in this (private) namespace was started by this script: end it by pid."""
    ns = os.readlink("/proc/self/ns/net")
    if not private_namespace():
        raise SystemExit("not in a private network namespace: refusing to end processes")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in (os.getpid(), os.getppid()):
                try:
                    if os.readlink(entry / "ns" / "net") == ns:
                        os.kill(int(entry.name), sig)
                except OSError:
                    continue
        time.sleep(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller spaces")
    ap.add_argument("--ray", action="store_true", help="also measure 1 vs 2 Ray workers (loopback-only namespace)")
    ap.add_argument("--big", type=int, default=0, help="also exact exposure over 10^BIG fillers (8 or 9)")
    ap.add_argument("--ray-digits", type=int, default=7, help="Ray scaling over 10^N fillers (default 7)")
    ap.add_argument("--ray-shard", type=int, default=1 << 19, help="fillers per Ray task (0: the default, ~4M)")
    ap.add_argument("--only-ray", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ray and os.environ.get("SSVIZ_BENCH_NETNS") != "1":  # --only-ray here: skip the local part
        if not args.only_ray:
            local_argv = [a for a in sys.argv if a != "--ray"]
            subprocess.run([sys.executable, *local_argv], check=True)
        sys.exit(in_namespace([sys.argv[0], "--ray", "--only-ray", "--ray-digits", str(args.ray_digits),
                               "--ray-shard", str(args.ray_shard)] + (["--quick"] if args.quick else [])))

    if args.only_ray and not private_namespace():
        raise SystemExit("--only-ray runs inside the private namespace that --ray makes")
    model = load_demo_model()
    torch.set_num_threads(1)
    report = {"cores": os.cpu_count(), "load_at_start": load(), "model": model.description}
    scale = 1 if args.quick else 0
    if args.only_ray:
        report["ray_scaling"] = bench_scaling_ray(model, args.ray_digits - scale, args.ray_shard or None)
        end_namespace_processes()
    else:
        report["matmul_limit"] = {1: matmul_gflops(1), 2: matmul_gflops(2)}
        report["scorer"] = bench_scorer(model, 6 - scale, report["matmul_limit"])
        report["shard_one_cpu"] = bench_shard(model, 9, (1 << 22) >> (3 * scale), report["matmul_limit"][1]["cpu_gflops"])
        report["local_scaling"] = bench_scaling_local(model, 7 - scale, 1 << 19)
        report["exact_path"] = exact_path_profile(model, 6 - scale)
        if args.big:
            with LocalExecutor(2) as ex:
                report[f"exact_1e{args.big}"] = run_sharded(model, ex, args.big)
        per_core = report["shard_one_cpu"]["fillers_per_s_cpu"]
        report["projection_cpu_hours"] = {f"1e{k}": 10 ** k / per_core / 3600 for k in (8, 9, 10)}
    report["load_at_end"] = load()
    print(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
