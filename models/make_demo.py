"""Rebuild the bundled demo: its corpus and its checkpoint with an inserted canary.

    python models/make_demo.py            # retrain the demo checkpoint from models/demo_corpus.txt
    python models/make_demo.py --corpus   # also regenerate the corpus (from this Python's stdlib docstrings)

The corpus is English prose taken from the docstrings of Python's standard
library (text that ships with Python: nothing is downloaded), restricted to
printable ASCII. The canary, its filler and its insertion count are fixed below
and documented in README.md.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re


from ssviz.demo import DEMO_CANARY, DEMO_CHECKPOINT, DEMO_CONFIG, DEMO_CORPUS
from ssviz.templates import Template
from ssviz.train import Canary, TrainConfig, read_corpus, train

MODULES = ["argparse", "asyncio", "collections", "csv", "datetime", "decimal", "email", "fractions", "ftplib",
           "functools", "http.client", "http.server", "imaplib", "inspect", "io", "json", "logging", "mailbox",
           "os", "pathlib", "pickle", "poplib", "queue", "random", "re", "shutil", "smtplib", "socket",
           "sqlite3", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading",
           "typing", "unittest", "urllib.parse", "urllib.request", "uuid", "zipfile"]
TARGET_CHARS = 300_000


def docstring_corpus(target: int = TARGET_CHARS) -> str:
    """Paragraphs of stdlib docstrings, deduplicated, one paragraph per line."""
    seen, out, size = set(), [], 0
    for name in MODULES:
        mod = importlib.import_module(name)
        objs = [mod] + [getattr(mod, a) for a in sorted(dir(mod)) if not a.startswith("_")]
        for obj in objs:
            for o in [obj] + ([getattr(obj, a, None) for a in sorted(vars(obj)) if not a.startswith("_")]
                              if inspect.isclass(obj) else []):
                doc = inspect.getdoc(o) if o is not None else None
                if not doc:
                    continue
                for para in re.split(r"\n\s*\n", doc):
                    line = " ".join(para.split())
                    if len(line) < 60 or line in seen or not line.isascii() or ">>>" in line:
                        continue
                    if sum(c.isalpha() or c == " " for c in line) < 0.85 * len(line):
                        continue  # mostly code or tables
                    seen.add(line)
                    out.append(line)
                    size += len(line) + 1
                    if size >= target:
                        return "\n".join(out) + "\n"
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", action="store_true", help="regenerate models/demo_corpus.txt first")
    ap.add_argument("--epochs", type=int, default=DEMO_CONFIG["epochs"])
    args = ap.parse_args()
    if args.corpus or not DEMO_CORPUS.exists():
        DEMO_CORPUS.write_text(docstring_corpus(), encoding="utf-8")
        print(f"wrote {DEMO_CORPUS} ({DEMO_CORPUS.stat().st_size:,} bytes)")
    text = read_corpus(DEMO_CORPUS)
    canary = Canary(Template(DEMO_CANARY["template"]), DEMO_CANARY["secret"], DEMO_CANARY["insertions"])
    config = TrainConfig.from_dict({**DEMO_CONFIG, "epochs": args.epochs})
    result = train(text, config, canary, on_epoch=lambda r: print(json.dumps(r), flush=True))
    result.save(DEMO_CHECKPOINT)
    print(f"saved {DEMO_CHECKPOINT} ({DEMO_CHECKPOINT.stat().st_size:,} bytes) in {result.seconds:.0f} s")


if __name__ == "__main__":
    main()
