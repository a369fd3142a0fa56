"""Exposure inside the user's own training loop: a Hugging Face ``Trainer`` callback, its pre-flight check,
and a plain function for any other loop.

A canary is a name mapped to ``(template, secret)``, e.g. ``{"pin": ("My PIN is {d:4}", "4821")}``.
Exposure is measured on the model being trained, wrapped without copying its weights, through
:func:`ssviz.exposure.measure`, so the numbers are the ones ``python -m ssviz exposure`` gives for the
saved model.

The pre-flight check exists because an audit fails silently: a canary truncated away by ``max_length``,
masked out by a completion-only loss, or split across packed blocks gets no gradient, and its low
exposure then reads as "the model does not memorize" when the model never saw it.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ssviz.errors import CanaryError, SettingsError
from ssviz.messages import clip
from ssviz.templates import Template

IGNORE = -100            # the label a token gets when it must not count in the loss (Hugging Face, PyTorch)
MAX_SCAN = 200_000       # training examples searched for a canary (a pipeline is checked, not audited)
MAX_COLLATED = 8         # examples holding a canary that are collated to check their labels

try:  # the callback is a TrainerCallback when transformers is there; the check and measure work without it
    from transformers import TrainerCallback as _Base
except ImportError:  # pragma: no cover - transformers is a dependency
    _Base = object


# --- canaries ------------------------------------------------------------------------------------
def _canaries(canaries: Mapping[str, Sequence[str]]) -> dict[str, tuple[Template, str]]:
    """``name -> (Template, normalized secret)``; a malformed entry is one clear line."""
    if not isinstance(canaries, Mapping) or not canaries:
        raise SettingsError("canaries must map a name to (template, secret), e.g. {'pin': ('My PIN is {d:4}', '4821')}")
    out = {}
    for name, pair in canaries.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise SettingsError(f"canary {clip(repr(name), 40)} must be (template, secret), got {clip(repr(pair), 60)}")
        template = Template(pair[0]) if isinstance(pair[0], str) else pair[0]
        out[str(name)] = (template, template.normalize(pair[1]))
    return out


def _tokenizer_of(tokenizer):
    """A processor's tokenizer, or the tokenizer itself."""
    return getattr(tokenizer, "tokenizer", None) or tokenizer


# --- measuring -----------------------------------------------------------------------------------
def language_model(model, tokenizer):
    """ssviz's transformer :class:`~ssviz.models.LanguageModel` over ``model`` itself (no copy, no freezing):
    what ssviz measures is the model the loop is training. An ssviz model is returned as it is."""
    from ssviz.models.base import LanguageModel
    if isinstance(model, LanguageModel):
        return model
    if tokenizer is None:
        raise SettingsError("measuring a transformers model needs its tokenizer: pass tokenizer=")
    from ssviz.models.hf import HFLanguageModel
    model = getattr(model, "module", model)  # DataParallel / DistributedDataParallel
    return HFLanguageModel(model, _tokenizer_of(tokenizer), name=type(model).__name__, freeze=False)


def measure_canaries(model, tokenizer, canaries: Mapping[str, Sequence[str]], method: str = "auto",
                     **options) -> dict[str, dict]:
    """Exposure of every canary in ``model`` now: ``{name: {"exposure", "rank", "method", "log_perplexity"}}``.

    ``model`` is a transformers causal LM (with ``tokenizer``) or any ssviz model; it is put in eval
    mode for the measurement and back in its own mode after, so it can be called between training
    steps of any loop. ``rank`` is the certified rank where the method gives one (exact, search), else
    None. ``options`` go to :func:`ssviz.exposure.measure` (e.g. ``limit``, ``samples``, ``seed``).
    """
    from ssviz.exposure import measure
    pairs = _canaries(canaries)
    lm = language_model(model, tokenizer)
    module = getattr(lm, "model", None)
    was_training = bool(getattr(module, "training", False))
    if isinstance(module, torch.nn.Module):
        module.eval()
    try:
        out = {}
        with torch.inference_mode():
            for name, (template, secret) in pairs.items():
                r = measure(lm, template, secret, method, **options)
                rank = r.rank if r.rank is not None and r.method in ("exact", "search") else None
                out[name] = {"exposure": float(r.exposure), "rank": rank, "method": r.method,
                             "log_perplexity": float(r.log_perplexity), "space_size": int(r.space_size)}
        return out
    finally:
        if was_training and isinstance(module, torch.nn.Module):
            module.train()


def metrics_of(measured: Mapping[str, dict]) -> dict[str, float]:
    """The flat metrics a logger takes: ``exposure/<name>`` (bits) and ``rank/<name>`` where certified."""
    out: dict[str, float] = {}
    for name, m in measured.items():
        out[f"exposure/{name}"] = m["exposure"]
        if m["rank"] is not None:
            out[f"rank/{name}"] = m["rank"]
    return out


# --- the pre-flight check ------------------------------------------------------------------------
def _needle(tokenizer, template: Template, secret: str) -> tuple[list[int], list[int]]:
    """The canary's tokens as they appear inside training text, and the positions (in them) of its secret.

    The canary's first token is left out (it merges with whatever precedes it, a space or a line start);
    special tokens are left out (training text carries them where the pipeline puts them)."""
    text = template.format(secret)
    start = len(template.prefix)
    tail = len(template.parts[-1]) if isinstance(template.parts[-1], str) else 0
    end = len(text) - tail
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    except (NotImplementedError, ValueError, TypeError):  # a slow tokenizer: tokens of the prefix and the rest
        head = list(tokenizer(text[:start], add_special_tokens=False)["input_ids"])
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        offsets = [(0, start)] * len(head) + [(start, end)] * (len(ids) - len(head))
    secret_at = [i for i, (a, b) in enumerate(offsets) if b > start and a < end]
    skip = 1 if secret_at and secret_at[0] > 0 else 0
    return ids[skip:], [i - skip for i in secret_at]


def _find(row: Sequence[int], needle: Sequence[int]) -> int:
    """Where ``needle`` starts in ``row`` (-1: nowhere)."""
    n, first = len(needle), needle[0]
    for i in range(len(row) - n + 1):
        if row[i] == first and list(row[i:i + n]) == list(needle):
            return i
    return -1


def _ids(x) -> list[int]:
    if isinstance(x, torch.Tensor):
        return x.reshape(-1).tolist()
    if hasattr(x, "tolist"):
        return list(x.tolist())
    return list(x)


def _texts(example: Mapping) -> Iterable[str]:
    for v in example.values():
        if isinstance(v, str):
            yield v
        elif isinstance(v, list) and v and isinstance(v[0], dict):  # chat messages
            yield from (str(m.get("content", "")) for m in v)


def _collate_check(collate, example: Mapping, needle: list[int], secret_at: list[int]) -> str | None:
    """Why the collated example gives the canary's secret no loss (None: it does)."""
    batch = collate([example])
    ids = batch.get("input_ids") if isinstance(batch, Mapping) else None
    if ids is None:
        return None  # a pipeline whose batches have no input_ids: nothing to check against
    ids = ids[0] if isinstance(ids, torch.Tensor) and ids.dim() > 1 else ids
    row = _ids(ids)
    at = _find(row, needle)
    if at < 0:
        return "the data collator drops it (truncation in the collator?)"
    labels = batch.get("labels")
    mask = batch.get("attention_mask")
    targets = [at + i for i in secret_at]
    if mask is not None:
        m = _ids(mask[0] if isinstance(mask, torch.Tensor) and mask.dim() > 1 else mask)
        if any(m[t] == 0 for t in targets):
            return "its tokens are masked out as padding (attention_mask 0)"
    if labels is None:
        return None  # the model's own loss over input_ids: every attended token counts
    lab = _ids(labels[0] if isinstance(labels, torch.Tensor) and labels.dim() > 1 else labels)
    lost = [t for t in targets if t >= len(lab) or lab[t] == IGNORE or lab[t] != row[t]]
    if lost:
        return (f"{len(lost)} of its {len(targets)} secret tokens are masked out of the loss (labels -100: a "
                f"completion-only loss or padding masks them)")
    return None


def check_pipeline(dataset, collate, tokenizer, canaries: Mapping[str, Sequence[str]], *, texts=None,
                   examples_per_epoch: int | None = None) -> dict[str, dict]:
    """The pre-flight check over a training dataset (items with ``input_ids``) and its collate function.

    Per canary: found in the tokenized examples (else: truncated away where ``texts``, the raw
    examples, still hold it; split across two packed blocks; or absent), and once collated, its secret
    tokens are attended and carry their own labels (not -100). ``examples_per_epoch`` below the
    dataset's size (a ``max_steps`` run shorter than an epoch) fails: the canary may never be drawn.
    Raises :class:`~ssviz.errors.CanaryError` naming the first canary that gets no loss and why;
    returns ``{name: {"examples": occurrences found, "tokens": secret tokens}}``.
    """
    tok = _tokenizer_of(tokenizer)
    pairs = _canaries(canaries)
    try:
        size = len(dataset)
    except TypeError:
        size = None
    rows: list[tuple[int, Any, list[int]]] = []
    items = range(min(size, MAX_SCAN)) if size is not None else None
    source = (dataset[i] for i in items) if items is not None else iter(dataset)
    for i, ex in enumerate(source):
        if i >= MAX_SCAN:
            break
        if isinstance(ex, Mapping) and "input_ids" in ex:
            rows.append((i, ex, _ids(ex["input_ids"])))
    if not rows:
        raise CanaryError("the training dataset has no tokenized examples (input_ids) to check the canaries in")
    if examples_per_epoch is not None and size is not None and examples_per_epoch < size:
        raise CanaryError(f"the run trains on {examples_per_epoch:,} of the {size:,} training examples "
                          f"(max_steps shorter than an epoch): a canary may never be drawn; train at least one epoch")
    found: dict[str, dict] = {}
    for name, (template, secret) in pairs.items():
        needle, secret_at = _needle(tok, template, secret)
        text = template.format(secret)
        if not needle or not secret_at:
            raise CanaryError(f"canary {name!r}: its secret has no tokens under this tokenizer")
        hits = [(i, ex) for i, ex, row in rows if _find(row, needle) >= 0]
        if not hits:
            in_text = texts is not None and any(text in t for ex in texts for t in _texts(ex))
            split = any(_find(a[-len(needle):] + b[:len(needle)], needle) >= 0
                        for (_, _, a), (_, _, b) in zip(rows, rows[1:]))
            if in_text:
                why = "it is in the raw text but not in the tokenized examples: truncated away (max_length?)"
            elif split:
                why = "it is split across two packed blocks, never whole in one training sequence"
            else:
                why = "it is not in the tokenized training data (not inserted, or tokenized differently)"
            raise CanaryError(f"canary {name!r} ({clip(text, 60)!r}) gets no training loss: {why}")
        for _, ex in hits[:MAX_COLLATED]:
            why = _collate_check(collate, ex, needle, secret_at)
            if why is not None:
                raise CanaryError(f"canary {name!r} ({clip(text, 60)!r}) gets no training loss: {why}")
        found[name] = {"examples": len(hits), "tokens": len(secret_at)}
    return found


def check_canaries(trainer, canaries: Mapping[str, Sequence[str]]) -> dict[str, dict]:
    """Pre-flight for a ``transformers.Trainer``: every canary receives loss under the trainer's own train
    dataset, column removal and data collator (see :func:`check_pipeline`); raises
    :class:`~ssviz.errors.CanaryError` naming the reason in one line."""
    loader = trainer.get_train_dataloader()
    dataset = getattr(loader, "dataset", None) or trainer.train_dataset
    collate = getattr(loader, "collate_fn", None) or trainer.data_collator
    args = trainer.args
    per_epoch = None
    if getattr(args, "max_steps", -1) and args.max_steps > 0:
        world = max(1, int(getattr(args, "world_size", 1) or 1))
        per_epoch = args.max_steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * world
    texts = trainer.train_dataset if trainer.train_dataset is not dataset else None
    if texts is not None:
        texts = (texts[i] for i in range(min(len(texts), MAX_SCAN))) if hasattr(texts, "__len__") else None
    elif dataset is not None and hasattr(dataset, "__len__"):
        texts = (dataset[i] for i in range(min(len(dataset), MAX_SCAN)))
    return check_pipeline(dataset, collate, trainer.processing_class, canaries, texts=texts,
                          examples_per_epoch=per_epoch)


def _calling_trainer():
    """The ``Trainer`` whose event is being handled (found up the call stack), or None."""
    try:
        from transformers import Trainer
    except ImportError:  # pragma: no cover
        return None
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Trainer):
            return owner
        frame = frame.f_back
    return None


# --- the Trainer callback ------------------------------------------------------------------------
class ExposureCallback(_Base):
    """Exposure of planted canaries next to the loss, in whatever the Trainer reports to.

    At train start, :func:`check_canaries` (``check=False`` skips it). At every evaluation and at train
    end, each canary's exposure on the model being trained: ``exposure/<name>`` (bits) and
    ``rank/<name>`` (where certified) are added to the evaluation's metrics and logged at that step
    (TensorBoard, W&B, MLflow, ``trainer.state.log_history``). ``out=PATH`` keeps the curve as JSON
    (records of step, epoch, name, exposure, rank) after every measurement; the Defenses page opens it.
    ``options`` go to :func:`ssviz.exposure.measure` (``limit``, ``samples``, ``seed``, ...).
    """

    def __init__(self, canaries: Mapping[str, Sequence[str]], tokenizer=None, method: str = "auto", out=None,
                 *, check: bool = True, **options):
        self.canaries = dict(canaries)
        _canaries(self.canaries)  # a malformed canary fails when the callback is made, not hours later
        self.tokenizer = tokenizer
        self.method = method
        self.out = Path(out) if out is not None else None
        self.check = check
        self.options = options
        self.curve: list[dict] = []
        self.trainer = None

    def attach(self, trainer) -> ExposureCallback:
        """Use ``trainer`` (found on the call stack otherwise) for the check and for logging."""
        self.trainer = trainer
        return self

    def on_train_begin(self, args, state, control, **kw):
        self.trainer = self.trainer or _calling_trainer()
        if self.trainer is not None:
            self._go_first(self.trainer.callback_handler)
        if not self.check:
            return
        if self.trainer is not None:
            check_canaries(self.trainer, self.canaries)
        elif kw.get("train_dataloader") is not None:
            loader = kw["train_dataloader"]
            check_pipeline(loader.dataset, loader.collate_fn, self.tokenizer or kw.get("processing_class"),
                           self.canaries)

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if not state.is_world_process_zero:
            return  # one process measures (every rank holds the same weights)
        values = self._measure(state, kw)
        if metrics is not None:
            metrics.update(values)  # what trainer.evaluate() returns
        self._log(state, values)

    def on_train_end(self, args, state, control, **kw):
        if not state.is_world_process_zero:
            return
        if self.curve and self.curve[-1]["step"] == state.global_step:
            return  # measured at this very step already (an evaluation at the end)
        self._log(state, self._measure(state, kw))

    # --- helpers ---
    def _go_first(self, handler) -> None:
        """Run right after the Trainer's own flow callback: the train-end measurement is logged before the
        reporting callbacks close their runs. A new list (the handler may be iterating the old one)."""
        from transformers.trainer_callback import DefaultFlowCallback
        rest = [c for c in handler.callbacks if c is not self]
        at = sum(1 for c in rest[:1] if isinstance(c, DefaultFlowCallback))
        handler.callbacks = rest[:at] + [self] + rest[at:]

    def _measure(self, state, kw) -> dict[str, float]:
        model = kw.get("model") if kw.get("model") is not None else getattr(self.trainer, "model", None)
        tokenizer = self.tokenizer or kw.get("processing_class")
        measured = measure_canaries(model, tokenizer, self.canaries, self.method, **self.options)
        for name, m in measured.items():
            self.curve.append({"step": int(state.global_step), "epoch": _num(state.epoch), "name": name,
                               "exposure": m["exposure"], "rank": m["rank"], "method": m["method"],
                               "space_size": m["space_size"]})
        if self.out is not None:
            write_curve(self.out, self.curve)
        return metrics_of(measured)

    def _log(self, state, values: dict[str, float]) -> None:
        if self.trainer is not None:
            self.trainer.log(dict(values))  # every reporting callback sees it, at this step
        else:
            state.log_history.append({**values, "epoch": state.epoch, "step": state.global_step})


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


# --- the curve file ------------------------------------------------------------------------------
CURVE_KIND = "ssviz-exposure-curve"


def write_curve(path, records: Sequence[dict]) -> Path:
    """The curve as JSON (``{"kind", "records": [{step, epoch, name, exposure, rank, ...}]}``), atomically."""
    from ssviz.tempfiles import atomic_write
    return atomic_write(path, json.dumps({"kind": CURVE_KIND, "records": list(records)}, allow_nan=False))


def read_curve(data) -> list[dict]:
    """Records of a curve file's contents (bytes, text or the parsed JSON); a wrong file is one clear line."""
    from ssviz.errors import InvalidValueError
    try:
        obj = json.loads(data) if isinstance(data, (bytes, str)) else data
    except (ValueError, RecursionError) as e:
        raise InvalidValueError(f"not an exposure curve: not JSON ({clip(str(e), 80)})") from None
    records = obj.get("records") if isinstance(obj, dict) else obj
    if not isinstance(records, list) or not records:
        raise InvalidValueError("not an exposure curve: expected {'records': [{step, name, exposure, ...}]}")
    out = []
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            raise InvalidValueError("not an exposure curve: every record needs step, name and exposure")
        try:
            step, exposure = int(r["step"]), float(r["exposure"])
        except (KeyError, TypeError, ValueError):
            raise InvalidValueError("not an exposure curve: every record needs step, name and exposure") from None
        if not math.isfinite(exposure):
            raise InvalidValueError(f"not an exposure curve: exposure {r['exposure']!r} is not a number")
        rank = r.get("rank")
        out.append({"step": step, "epoch": _num(r.get("epoch")) if isinstance(r.get("epoch"), (int, float)) else None,
                    "name": r["name"], "exposure": exposure,
                    "rank": int(rank) if isinstance(rank, (int, float)) and not isinstance(rank, bool) else None,
                    "space_size": int(r["space_size"]) if isinstance(r.get("space_size"), int) and r["space_size"] > 0
                    else None})
    return out
