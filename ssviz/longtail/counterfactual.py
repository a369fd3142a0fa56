"""Counterfactual memorization and influence over a pool of models (Zhang et al. 2021; Feldman 2020).

M models are trained, each on a seeded random subset of the examples (lines or paragraphs of a
corpus); every model then reads every training and validation example. An example is memorized
when the models trained with it predict it far better than the models trained without it
(:mod:`ssviz.longtail.estimators`). The pool folder holds everything needed to recompute without
retraining, in the files the membership-inference audit also reads (LiRA on the same models):

* ``inclusion.parquet``: ``model``, ``example``, ``included`` (every model of the pool, written first);
* ``metrics.parquet``: ``model``, ``example``, ``split`` (train | validation), ``accuracy`` (the share of
  the example's predicted units that were the model's top choice) and ``log_likelihood`` (the mean
  natural-log probability of its predicted units; the first unit is context, as everywhere);
* ``memorization.csv``: ``example``, ``text``, ``mem_accuracy`` and ``mem_log_likelihood`` (bits), each
  with ``_se``, ``_low`` and ``_high`` (a bootstrap interval over models);
* ``models/model-NNNN.*``: each model's weights, written atomically as its task finishes, so a run
  that was killed resumes with the models already trained; ``pool.json``: settings and times.

``example`` is the 0-based index of the line (or paragraph) in its file. Each model is one task on
an executor (this process, local processes or Ray): a killed worker loses at most its model.
Every model shares one vocabulary (a transformer: one tokenizer, trained on the whole pool's text),
so every model reads an example as the same units.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field, replace
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ssviz.errors import SettingsError, SsvizError, StoppedError
from ssviz.longtail import estimators
from ssviz.progress import stop_requested

UNITS = ("line", "paragraph")
INCLUSION, METRICS, MEMORIZATION, INFLUENCE, POOL_JSON, MODELS = (
    "inclusion.parquet", "metrics.parquet", "memorization.csv", "influence.csv", "pool.json", "models")
LN2 = math.log(2.0)
MAX_MODELS = 10_000
TOP = 10


# --- examples ----------------------------------------------------------------------------------------
def split_examples(text: str, unit: str = "line") -> list[tuple[int, str]]:
    """``(index, text)`` of every non-blank line (or paragraph: lines between blank lines) of ``text``;
    ``index`` counts every line (paragraph) of the file from 0, so it names the example in the file."""
    if unit not in UNITS:
        raise SettingsError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    if unit == "line":
        parts = text.split("\n")
        if parts and parts[-1] == "":
            parts.pop()
        return [(i, p) for i, p in enumerate(parts) if p.strip()]
    paras = [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text)]
    return [(i, p) for i, p in enumerate(p for p in paras if p.strip())]


def joined(texts, unit: str) -> str:
    """A training text from examples: one per line (paragraphs separated by a blank line)."""
    sep = "\n" if unit == "line" else "\n\n"
    return "".join(t + sep for t in texts)


def inclusion_mask(models: int, examples: int, subset: float, seed: int = 0) -> np.ndarray:
    """``[models, examples]``: model m trains on round(subset x examples) examples drawn from its own
    seeded stream, so model m's subset never depends on how many models the pool has (a pool can grow)."""
    if not 0 < subset < 1:
        raise SettingsError(f"--subset must be between 0 and 1 (exclusive), got {subset}")
    if examples < 2:
        raise SettingsError(f"a pool needs at least 2 examples, got {examples}")
    k = min(examples - 1, max(1, round(subset * examples)))
    mask = np.zeros((models, examples), dtype=bool)
    for m in range(models):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(m,)))
        mask[m, rng.choice(examples, size=k, replace=False)] = True
    return mask


# --- metrics of one model --------------------------------------------------------------------------------
def example_metrics(model, texts) -> tuple[list[float], list[float]]:
    """Per text: (per-unit accuracy, mean natural-log likelihood of the predicted units); NaN for a text
    of fewer than two units (nothing predicted). A text longer than the model's context is read up to it
    (its first ``max_positions`` units), the same for every model of a pool."""
    from ssviz.scoring import read_ids
    rows = model.encode_batch(list(texts))
    if model.max_positions:
        rows = [list(r)[:model.max_positions] for r in rows]
    acc, ll = [], []
    for r in read_ids(model, rows):
        acc.append(float(np.mean(r.correct)) if len(r.correct) else float("nan"))
        ll.append(float(np.mean(r.logp)) if len(r.logp) else float("nan"))
    return acc, ll


def train_task(task: dict) -> dict:
    """One model of the pool on an executor's worker: train on its subset, read every example.

    The examples and the shared base model (vocabulary or tokenizer) come by content hash; what
    comes back is plain data: the weights' bytes and the two metrics per example."""
    from ssviz.corpus import Split
    from ssviz.executor import fetch, shared_model, stop_flag
    from ssviz.models import model_bytes
    from ssviz.train import TrainConfig, new_model, train

    t0 = time.perf_counter()
    data = json.loads(fetch(task["examples"]).decode("utf-8"))
    train_texts, val_texts, unit = data["train"], data["validation"], data["unit"]
    chosen = [train_texts[i] for i in task["subset"]]
    chosen_set = set(task["subset"])
    others = [t for i, t in enumerate(train_texts) if i not in chosen_set]
    held = joined(val_texts or others, unit)  # early stopping watches held-out text, never the subset
    split = Split(joined(chosen, unit), held, held)
    config = TrainConfig.from_dict(task["config"]).validate()
    base = shared_model(task["base"], "the pool's base model")
    model = new_model(config, split, like=base)
    result = train(split, config, model=model, stop=stop_flag())
    if result.stopped:
        raise StoppedError("stopped by the user")
    model = result.model
    acc, ll = example_metrics(model, train_texts)
    vacc, vll = example_metrics(model, val_texts) if val_texts else ([], [])
    return {"model": task["model"], "weights": model_bytes(model), "accuracy": acc, "log_likelihood": ll,
            "val_accuracy": vacc, "val_log_likelihood": vll, "epochs": len(result.epochs),
            "test_loss": result.test_loss, "train_seconds": result.seconds, "seconds": time.perf_counter() - t0}


# --- the pool on disk ---------------------------------------------------------------------------------
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()


def _weights_name(m: int, data: bytes) -> str:
    return f"model-{m:04d}" + (".zip" if data[:2] == b"PK" else ".safetensors")


def model_path(out: Path, m: int) -> Path | None:
    """The stored weights of model ``m`` (None when it was not trained yet)."""
    for ext in (".safetensors", ".zip"):
        p = Path(out) / MODELS / f"model-{m:04d}{ext}"
        if p.is_file():
            return p
    return None


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


@dataclass
class PoolResult:
    """A finished (or stopped) pool run: the folder and what the CLI's JSON reports."""

    out: Path
    models: int
    examples: int
    validation: int
    trained: int
    reused: int
    seconds: float
    model_seconds: list[float]
    stopped: bool = False
    top: list[dict] = field(default_factory=list)
    pairs: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        times = [s for s in self.model_seconds if s is not None]
        return {"out": str(self.out), "models": self.models, "examples": self.examples,
                "validation_examples": self.validation, "trained": self.trained, "reused": self.reused,
                "seconds": self.seconds, "seconds_per_model": float(np.mean(times)) if times else None,
                "stopped": self.stopped, "top": self.top, "influence": self.pairs}


def run_pool(text: str, config, out, *, models: int = 16, subset: float = 0.5, unit: str = "line",
             validation: str | None = None, seed: int | None = None, inclusion=None, executor=None, progress=None,
             stop=None, log=None, bootstrap: int = estimators.DEFAULT_BOOTSTRAP, top: int = TOP) -> PoolResult:
    """Train and read a pool of ``models`` models on subsets of ``text``'s examples; write ``out``.

    ``inclusion`` (``[models, examples]`` booleans) replaces the seeded subsets (a designed
    experiment, e.g. exact leave-one-out); model m trains with seed ``config.seed + m``. A folder
    that already holds this pool (same examples, unit, subset, seed, training settings) is resumed:
    models whose weights are stored are read again, never retrained. ``seed`` (default ``config.seed``)
    draws the subsets; ``progress(done, total)`` counts models, ``stop`` ends the run after the models in
    flight (they are lost, the others kept: a re-run resumes).
    """
    from ssviz.corpus import Split
    from ssviz.executor import InlineExecutor
    from ssviz.models import load_model
    from ssviz.tempfiles import atomic_write
    from ssviz.train import new_model

    t0 = time.perf_counter()
    seed = config.seed if seed is None else seed
    if not isinstance(models, int) or not 1 < models <= MAX_MODELS:
        raise SettingsError(f"--models must be a whole number from 2 to {MAX_MODELS:,}, got {models}")
    out = Path(out)
    train_ex = split_examples(text, unit)
    val_ex = split_examples(validation, unit) if validation else []
    train_texts, val_texts = [t for _, t in train_ex], [t for _, t in val_ex]
    if inclusion is None:
        mask = inclusion_mask(models, len(train_ex), subset, seed)
    else:
        mask = np.asarray(inclusion, dtype=bool)
        if mask.shape != (models, len(train_ex)) or not mask.any(1).all():
            raise SettingsError(f"the inclusion mask must be [models={models}, examples={len(train_ex)}] with at "
                                f"least one example per model, got {mask.shape}")
    settings = {"examples": _digest(train_texts), "validation": _digest(val_texts), "unit": unit,
                "subset": subset, "seed": seed, "config": asdict(config),
                "design": None if inclusion is None else _digest(mask.astype(int).tolist())}
    out.mkdir(parents=True, exist_ok=True)
    (out / MODELS).mkdir(exist_ok=True)
    old = _read_json(out / POOL_JSON)
    if old is not None and old.get("settings") != json.loads(json.dumps(settings)):
        raise SettingsError(f"{out} holds a pool made with other examples or settings: choose another --out "
                            f"(or the same corpus, --unit, --subset, --seed and training options to resume it)")
    model_seconds: list = list((old or {}).get("model_seconds", []))[:models]
    model_seconds += [None] * (models - len(model_seconds))
    index = pd.DataFrame({"model": np.repeat(np.arange(models), len(train_ex)),
                          "example": np.tile([i for i, _ in train_ex], models), "included": mask.ravel()})
    atomic_write(out / INCLUSION, _parquet_bytes(index))
    rows = _stored_metrics(out)
    rows = {m: r for m, r in rows.items() if m < models and model_path(out, m) is not None}

    def write_state(done: bool = False) -> None:
        frames = [rows[m] for m in sorted(rows)]
        df = pd.concat(frames, ignore_index=True) if frames else _empty_metrics()
        atomic_write(out / METRICS, _parquet_bytes(df))
        atomic_write(out / POOL_JSON, json.dumps({"settings": settings, "models": models, "examples": len(train_ex),
                                                  "validation_examples": len(val_ex), "finished": done,
                                                  "model_seconds": model_seconds}, indent=1, default=str))

    def frame(m: int, acc, ll, vacc, vll) -> pd.DataFrame:
        return pd.DataFrame({"model": m, "example": [i for i, _ in train_ex] + [i for i, _ in val_ex],
                             "split": ["train"] * len(train_ex) + ["validation"] * len(val_ex),
                             "accuracy": list(acc) + list(vacc), "log_likelihood": list(ll) + list(vll)})

    reused = 0
    for m in range(models):  # weights stored but no metrics (killed between the two writes): read again
        p = model_path(out, m)
        if p is not None and m not in rows:
            model = load_model(p)
            acc, ll = example_metrics(model, train_texts)
            vacc, vll = example_metrics(model, val_texts) if val_texts else ([], [])
            rows[m] = frame(m, acc, ll, vacc, vll)
        if p is not None:
            reused += 1
    write_state()
    todo = [m for m in range(models) if m not in rows]
    if log and reused:
        log(f"resuming: {reused} model(s) already trained in {out}")
    executor = executor or InlineExecutor()
    held = joined(val_texts or train_texts, unit)
    base = new_model(config, Split(joined(train_texts, unit), held, held))
    payload = json.dumps({"train": train_texts, "validation": val_texts, "unit": unit}).encode("utf-8")
    blob, base_blob = executor.share(payload), executor.share_model(base)
    tasks = [{"model": m, "subset": np.flatnonzero(mask[m]).tolist(), "examples": blob, "base": base_blob,
              "config": asdict(replace(config, seed=(config.seed + m) % (2 ** 63)))} for m in todo]
    done = [0]

    def on_result(i: int, res: dict) -> None:
        m = res["model"]
        atomic_write(out / MODELS / _weights_name(m, res["weights"]), res["weights"])
        rows[m] = frame(m, res["accuracy"], res["log_likelihood"], res["val_accuracy"], res["val_log_likelihood"])
        model_seconds[m] = res["seconds"]
        write_state()
        done[0] += 1
        if progress:
            progress(reused + done[0], models)
        if log:
            log(f"model {m}: {res['epochs']} epoch(s) in {res['seconds']:.1f} s")

    if progress:
        progress(reused, models)
    report = executor.map(train_task, tasks, on_result=on_result, stop=stop, fail_fast=True)
    stopped = report.stopped and not report.failed
    if report.failed:
        raise report.failed[0].exception()
    if stopped or stop_requested(stop):
        write_state()
        raise StoppedError(f"stopped by the user: {len(rows)} of {models} models are trained and stored in {out}; "
                           f"run again to resume")
    write_state(done=True)
    pool = load_pool(out, texts={"train": train_texts, "validation": val_texts})
    mem = memorization_table(pool, bootstrap=bootstrap, seed=seed)
    from ssviz.csvcells import safe_frame
    atomic_write(out / MEMORIZATION, safe_frame(mem).to_csv(index=False))
    pairs = influence_pairs(pool)
    atomic_write(out / INFLUENCE, safe_frame(pd.DataFrame(pairs, columns=PAIR_COLUMNS)).to_csv(index=False))
    return PoolResult(out, models, len(train_ex), len(val_ex), len(todo), reused, time.perf_counter() - t0,
                      model_seconds, top=top_examples(mem, top), pairs=pairs[:TOP])


def _read_json(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SsvizError(f"{path} is not a pool's JSON file") from None


def _empty_metrics() -> pd.DataFrame:
    return pd.DataFrame({"model": pd.Series(dtype="int64"), "example": pd.Series(dtype="int64"),
                         "split": pd.Series(dtype=str), "accuracy": pd.Series(dtype=float),
                         "log_likelihood": pd.Series(dtype=float)})


def _stored_metrics(out: Path) -> dict[int, pd.DataFrame]:
    p = out / METRICS
    if not p.is_file():
        return {}
    df = pd.read_parquet(p)
    return {int(m): g.reset_index(drop=True) for m, g in df.groupby("model")}


# --- reading a pool back ------------------------------------------------------------------------------
@dataclass
class Pool:
    """A pool's matrices, over the models that finished: what every number is computed from."""

    folder: Path | None
    models: np.ndarray           # model ids with metrics, ascending
    examples: np.ndarray         # training example indices (line numbers)
    texts: list[str]
    included: np.ndarray         # [models, examples] bool
    accuracy: np.ndarray         # [models, examples]
    log_likelihood: np.ndarray   # [models, examples], nats per unit
    val_examples: np.ndarray
    val_texts: list[str]
    val_accuracy: np.ndarray     # [models, validation examples]
    val_log_likelihood: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def frequency(self) -> np.ndarray:
        """How many training examples have exactly this example's text (1 = unique)."""
        counts = pd.Series(self.texts).value_counts()
        return np.array([counts[t] for t in self.texts])

    def out_log_likelihood(self) -> np.ndarray:
        """Mean log-likelihood (bits per unit) of each example under the models trained without it."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (np.where(self.included, 0, self.log_likelihood).sum(0) / (~self.included).sum(0)) / LN2


def load_pool(folder, texts: dict | None = None) -> Pool:
    """A pool folder's matrices (``inclusion.parquet``, ``metrics.parquet``; texts from ``memorization.csv``
    when ``texts`` is not given as ``{"train": [...], "validation": [...]}``)."""
    folder = Path(folder)
    for name in (INCLUSION, METRICS):
        if not (folder / name).is_file():
            raise SsvizError(f"{folder} is not a counterfactual pool: {name} is missing")
    try:
        inc = pd.read_parquet(folder / INCLUSION)
        met = pd.read_parquet(folder / METRICS)
    except Exception as e:
        raise SsvizError(f"{folder}: cannot read the pool's files ({type(e).__name__})") from None
    for df, cols, name in ((inc, ("model", "example", "included"), INCLUSION),
                           (met, ("model", "example", "split", "accuracy", "log_likelihood"), METRICS)):
        if not set(cols) <= set(df.columns):
            raise SsvizError(f"{folder / name} lacks the columns {', '.join(cols)}")
    info = _read_json(folder / POOL_JSON) or {}
    tr = met[met["split"] == "train"]
    va = met[met["split"] == "validation"]
    models = np.array(sorted(tr["model"].unique()), dtype=int)
    examples = np.array(sorted(inc["example"].unique()), dtype=int)
    included = (inc.pivot(index="model", columns="example", values="included")
                .reindex(index=models, columns=examples).to_numpy(dtype=bool))
    acc = tr.pivot(index="model", columns="example", values="accuracy").reindex(index=models, columns=examples)
    ll = tr.pivot(index="model", columns="example", values="log_likelihood").reindex(index=models, columns=examples)
    val_examples = np.array(sorted(va["example"].unique()), dtype=int)
    vacc = va.pivot(index="model", columns="example", values="accuracy").reindex(index=models, columns=val_examples)
    vll = va.pivot(index="model", columns="example", values="log_likelihood").reindex(index=models,
                                                                                      columns=val_examples)
    if texts is None:
        texts = {"train": [""] * len(examples), "validation": [""] * len(val_examples)}
        if (folder / MEMORIZATION).is_file():
            mem = pd.read_csv(folder / MEMORIZATION, keep_default_na=False)
            by = dict(zip(mem["example"].astype(int), mem["text"].astype(str)))
            texts["train"] = [_unquote(by.get(int(e), "")) for e in examples]
        if (folder / INFLUENCE).is_file():
            pairs = pd.read_csv(folder / INFLUENCE, keep_default_na=False)
            by = dict(zip(pairs["validation_example"].astype(int), pairs["validation_text"].astype(str)))
            texts["validation"] = [_unquote(by.get(int(e), "")) for e in val_examples]
    return Pool(folder, models, examples, list(texts["train"]), included, acc.to_numpy(float), ll.to_numpy(float),
                val_examples, list(texts["validation"]), vacc.to_numpy(float), vll.to_numpy(float), info)


def _unquote(cell: str) -> str:
    """A CSV text cell as written before :func:`ssviz.csvcells.neutralize` guarded it."""
    from ssviz.csvcells import FORMULA_START
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


MEM_COLUMNS = ("example", "text", "mem_accuracy", "mem_accuracy_se", "mem_accuracy_low", "mem_accuracy_high",
               "mem_log_likelihood", "mem_log_likelihood_se", "mem_log_likelihood_low", "mem_log_likelihood_high")
PAIR_COLUMNS = ("train_example", "train_text", "validation_example", "validation_text", "influence_accuracy",
                "influence_accuracy_se", "influence_log_likelihood", "influence_log_likelihood_se")


def memorization_table(pool: Pool, *, bootstrap: int = estimators.DEFAULT_BOOTSTRAP, seed: int = 0) -> pd.DataFrame:
    """``memorization.csv``'s rows: mem under both metrics (log-likelihood in bits per unit)."""
    a = estimators.memorization(pool.included, pool.accuracy, bootstrap=bootstrap, seed=seed)
    b = estimators.memorization(pool.included, pool.log_likelihood / LN2, bootstrap=bootstrap, seed=seed)
    return pd.DataFrame({"example": pool.examples, "text": pool.texts,
                         "mem_accuracy": a.value, "mem_accuracy_se": a.se, "mem_accuracy_low": a.low,
                         "mem_accuracy_high": a.high,
                         "mem_log_likelihood": b.value, "mem_log_likelihood_se": b.se,
                         "mem_log_likelihood_low": b.low, "mem_log_likelihood_high": b.high})[list(MEM_COLUMNS)]


def influence_pairs(pool: Pool, k: int | None = None) -> list[dict]:
    """Each validation example with the training example whose inclusion raises its accuracy most, largest
    influence first (influence in accuracy, and in log-likelihood bits per unit for the same pair)."""
    if pool.val_accuracy.size == 0:
        return []
    ia, sa = estimators.influence(pool.included, pool.val_accuracy)
    il, sl = estimators.influence(pool.included, pool.val_log_likelihood / LN2)
    out = []
    for i, j, v, s in estimators.top_pairs(ia, sa, k or ia.shape[1]):
        out.append({"train_example": int(pool.examples[i]), "train_text": pool.texts[i],
                    "validation_example": int(pool.val_examples[j]), "validation_text": pool.val_texts[j],
                    "influence_accuracy": v, "influence_accuracy_se": s,
                    "influence_log_likelihood": float(il[i, j]), "influence_log_likelihood_se": float(sl[i, j])})
    return out


def top_examples(mem: pd.DataFrame, k: int = TOP, by: str = "mem_accuracy") -> list[dict]:
    """The ``k`` most memorized examples (NaN last) as plain records."""
    rows = mem.sort_values(by, ascending=False, na_position="last", kind="stable").head(k)
    return [{c: (None if isinstance(v, float) and not math.isfinite(v) else v) for c, v in r.items()}
            for r in rows.to_dict(orient="records")]


def unit_gains(folder, text: str, included: Sequence[bool], models: Sequence[int]) -> tuple[list[str], list]:
    """Each unit of ``text`` with how many bits more likely the models trained with it find it than the
    models trained without it (mean log2-probability IN - OUT; None for the first unit, which is
    context). ``included[i]`` says whether model ``models[i]`` (stored in ``folder``) trained on the text."""
    from ssviz.models import load_model
    from ssviz.scoring import read_texts
    sides: dict[bool, list[np.ndarray]] = {True: [], False: []}
    units = None
    for m, inc in zip(models, included):
        path = model_path(Path(folder), int(m))
        if path is None:
            raise SsvizError(f"{folder} holds no weights for model {m}: the per-unit view needs the models")
        model = load_model(path)
        r = read_texts(model, [text])[0]
        units = units or [model.unit_text(int(i)) for i in r.ids]
        sides[bool(inc)].append(r.logp / LN2)
    if not sides[True] or not sides[False]:
        raise SsvizError("the per-unit view needs models trained with and without the text")
    gain = np.mean(sides[True], 0) - np.mean(sides[False], 0)
    return list(units or []), [None] + gain.tolist()


def redact_text(text: str, reveal: bool = False) -> str:
    """``text`` with every secret the scan finds in it (SSNs, cards, phones, keys, tokens) shown as its
    redacted tail (:func:`ssviz.redaction.redact`), as everywhere else a secret meets people."""
    if reveal:
        return text
    from ssviz.redaction import redact
    from ssviz.scan import KINDS, find_secrets
    out, pos = [], 0
    for f in find_secrets(text, kinds=tuple(KINDS)):
        if f.start < pos:
            continue
        out += [text[pos:f.start], redact(f.text)]
        pos = f.start + len(f.text)
    return "".join(out) + text[pos:]
