"""Benchmark the per-user study: generation, ingestion, scanning, and time per user by stage.

    nice python bench/bench_enron.py                       # 2 users, 1x128 LSTM, 5 epochs
    nice python bench/bench_enron.py --users 3 --epochs 10 --workers 2
    python bench/bench_enron.py --users 4 --executor local --workers 1    # then --workers 2: study scaling
    nice python bench/bench_enron.py --hostile                # ingestion seconds per MB of crafted mail

Prints one line per measurement. Time per user is split into training,
each exposure method and extraction, read back from the store the run wrote.
``--hostile`` times cleaning (parse, quote cut, normalize) and scanning of
one message per shape of adversarial line, against benign mail of the same size.
"""

from __future__ import annotations

import argparse
import time

from ssviz.enron.maildir import build_corpora, clean_message
from ssviz.enron.pipeline import StudySettings, run_study
from ssviz.scan import scan
from ssviz.enron.synthetic import generate_maildir
from ssviz.executor import make_executor
from ssviz.store import Store
from ssviz.tempfiles import private_dir
from ssviz.train import TrainConfig

HOSTILE = {  # one line of crafted text per shape (n characters)
    "benign 60-char lines": lambda n: ("I talked to Bob about the Acme deal this morning, thanks. ok\n" * (n // 60 + 1))[:n],
    "a@a@a@... (the reported attack)": lambda n: "a@" * (n // 2),
    "a@b tokens": lambda n: "a@b " * (n // 4),
    "spaces": lambda n: " " * n + "x",
    "digits": lambda n: "1" * n,
    "dashes": lambda n: "-" * n,
    "From: repeated": lambda n: "From: " * (n // 6),
    "name <addr repeated": lambda n: "a <a " * (n // 5),
    "wrote: repeated": lambda n: "wrote: " * (n // 7),
    "blank lines": lambda n: "\n" * n,
    "dashed SSNs": lambda n: "My SSN is 123-45-6789. " * (n // 23),
    "card numbers": lambda n: "4111 1111 1111 1111\n" * (n // 20),
}


def hostile(megabytes: float) -> None:
    n = int(megabytes * 1_000_000)
    for shape, make in HOSTILE.items():
        body = make(n)
        data = f"From: jane@enron.com\nTo: bob@enron.com\nSubject: hi\n\n{body}\n".encode()
        t0 = time.perf_counter()
        clean_message(data)
        t1 = time.perf_counter()
        scan(body)
        t2 = time.perf_counter()
        print(f"hostile {shape:<32} clean {(t1 - t0) / megabytes:6.3f} s/MB   scan {(t2 - t1) / megabytes:6.3f} s/MB",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2)
    ap.add_argument("--messages", type=int, default=250)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--executor", choices=["local", "ray"], help="users as tasks on this executor (--workers CPUs): "
                    "the fair 1 vs 2 comparison, one torch thread per user either way")
    ap.add_argument("--nodes", type=int, default=20_000, help="search and extraction node budgets")
    ap.add_argument("--hostile", action="store_true", help="time ingestion of crafted mail instead of a study")
    ap.add_argument("--megabytes", type=float, default=1.0, help="size of each crafted message (--hostile)")
    args = ap.parse_args()
    if args.hostile:
        hostile(args.megabytes)
        return
    with private_dir("bench") as tmp:
        t0 = time.perf_counter()
        generate_maildir(tmp, users=args.users, messages=args.messages, seed=0, times=(50, 20, 5, 1))
        print(f"generate: {args.users} users x {args.messages} messages in {time.perf_counter() - t0:.2f} s")
        t0 = time.perf_counter()
        corpora = build_corpora(tmp, tmp / "corpora")
        dt = time.perf_counter() - t0
        n = sum(c.messages for c in corpora.values())
        chars = sum(c.chars for c in corpora.values())
        print(f"ingest: {n} kept messages, {chars:,} chars in {dt:.2f} s ({n / dt:,.0f} messages/s)")
        text = "".join(c.text() for c in corpora.values())
        t0 = time.perf_counter()
        for _ in range(5):
            scan(text)
        dt = (time.perf_counter() - t0) / 5
        print(f"scan: {len(text) / dt / 1e6:.2f} M chars/s")
        settings = StudySettings(train=TrainConfig(layers=1, hidden=args.hidden, embedding_dim=32,
                                                   epochs=args.epochs, batch_size=64, seq_len=40, lr=0.004,
                                                   patience=None),
                                 search_nodes=args.nodes, extraction_nodes=args.nodes)
        t0 = time.perf_counter()
        if args.executor:
            with make_executor(args.executor, workers=args.workers) as executor:
                t0 = time.perf_counter()  # the executor's processes are started: time the study alone
                run_study(tmp, tmp / "r.duckdb", settings=settings, cache_dir=tmp / "cache", executor=executor)
                wall = time.perf_counter() - t0
        else:
            run_study(tmp, tmp / "r.duckdb", settings=settings, cache_dir=tmp / "cache", workers=args.workers)
            wall = time.perf_counter() - t0
        store = Store(tmp / "r.duckdb", read_only=True)
        users, meas, ext = store.table("users"), store.table("measurements"), store.table("extractions")
        print(f"study: {len(users)} users in {wall:.1f} s wall ({wall / max(len(users), 1):.1f} s per user, "
              f"{args.workers} worker(s))")
        for _, u in users.iterrows():
            m = meas[meas.user == u.user].groupby("method").seconds.sum()
            e = ext[ext.user == u.user]
            parts = ", ".join(f"{k} {v:.1f} s" for k, v in m.items())
            print(f"  {u.user}: {u.corpus_chars:,} chars, total {u.seconds:.1f} s: train {u.train_seconds:.1f} s, "
                  f"{parts}, extraction {e.seconds.sum():.1f} s ({int(e.nodes.sum())} nodes)")


if __name__ == "__main__":
    main()
