"""Unique features in image classifiers, the papers' own setting: data, the UF, classifiers, training, M2.

Nothing is downloaded: the default data are scikit-learn's bundled handwritten digits (8x8,
1,797 images); any ``.npz`` with ``images`` ([N, H, W], any range) and ``labels`` ([N] ints)
works too (optional ``ood``: the out-of-distribution images to measure on). The default OOD
inputs are grayscale patches of scikit-learn's two bundled photographs, block-averaged to the
data's size: natural images, but no digits.

The UF is a small binary pattern written over a fixed square near the top-left corner of one
training image (the authors: a 5x5 glyph of the letter "A" over pixels [1:6, 1:6] of a 28x28
image; here the glyph is scaled to the image: 3x3 at [0:3, 0:3] on 8x8 digits), before
normalization. Controls are patterns of the same shape and place that were never in training.

A classifier is saved as safetensors: the module's ``state_dict`` tensors plus a metadata
entry ``ssviz_classifier`` (JSON: ``arch``, ``height``, ``width``, ``classes``, ``batch_norm``,
``dropout``, ``mean``, ``std``); :func:`load_classifier` rebuilds it from that alone.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssviz.errors import CheckpointError, SettingsError, SsvizError, StoppedError
from ssviz.progress import check_stop, stop_requested
from ssviz.unique_features import score

ARCHS = ("mlp", "cnn")
SPLIT_SEED = 0            # the train/val/test split is the same for every training seed
MAX_PIXELS = 256 * 256    # an image larger than this is not what these small classifiers are for
META_KEY = "ssviz_classifier"
GLYPH_A5 = np.array([[0, 1, 1, 1, 0],
                     [1, 0, 0, 0, 1],
                     [1, 1, 1, 1, 1],
                     [1, 0, 0, 0, 1],
                     [1, 0, 0, 0, 1]], dtype=np.float32)
GLYPH_A3 = np.array([[0, 1, 0],
                     [1, 1, 1],
                     [1, 0, 1]], dtype=np.float32)


# --- data ---------------------------------------------------------------------------------------------
@dataclass
class ImageData:
    """Images in [0, 1] as float32 [N, H, W]; labels int64; the OOD inputs in [0, 1]."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    ood: np.ndarray
    classes: int

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def _split(x: np.ndarray, y: np.ndarray) -> tuple:
    """60 / 20 / 20 train / validation / test, shuffled once (the same split for every seed)."""
    idx = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    a, b = int(0.6 * len(x)), int(0.8 * len(x))
    return x[idx[:a]], y[idx[:a]], x[idx[a:b]], y[idx[a:b]], x[idx[b:]], y[idx[b:]]


def photo_patches(n: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` grayscale patches of scikit-learn's bundled photographs, block-averaged to ``shape``, in [0, 1]."""
    from sklearn.datasets import load_sample_images
    photos = [im.astype(np.float32).mean(-1) / 255.0 for im in load_sample_images().images]
    h, w = shape
    f = max(1, min(4, min(photos[0].shape) // (2 * max(h, w))))  # each OOD pixel averages f x f photo pixels
    rng = np.random.default_rng([seed, 0x00D])
    out = np.empty((n, h, w), dtype=np.float32)
    for i in range(n):
        ph = photos[i % len(photos)]
        r = rng.integers(0, ph.shape[0] - h * f + 1)
        c = rng.integers(0, ph.shape[1] - w * f + 1)
        out[i] = ph[r:r + h * f, c:c + w * f].reshape(h, f, w, f).mean((1, 3))
    return out


def load_data(source: str = "digits", *, ood: int = 200, seed: int = 0) -> ImageData:
    """``digits`` (scikit-learn's bundled 8x8 digits) or a ``.npz`` path or its bytes (see the module doc)."""
    if isinstance(source, str) and source == "digits":
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y, name, given_ood = d.images.astype(np.float32) / 16.0, d.target.astype(np.int64), "digits", None
    else:
        x, y, given_ood, name = _read_npz(source)
    xs = _split(x, y)
    classes = int(y.max()) + 1
    shape = tuple(x.shape[1:])
    ood_images = given_ood if given_ood is not None else photo_patches(ood, shape, seed)
    return ImageData(name, *xs, ood=ood_images[:ood] if given_ood is None else ood_images, classes=classes)


def _read_npz(source) -> tuple:
    name = "uploaded .npz" if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        raw = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    except OSError as e:
        from ssviz.errors import MissingFileError
        raise MissingFileError(f"{name}: {e.strerror or e}") from None
    try:
        with raw, np.load(raw, allow_pickle=False) as z:
            if "images" not in z or "labels" not in z:
                raise SsvizError(f"{name} needs arrays 'images' [N, H, W] and 'labels' [N] (found: "
                                 f"{', '.join(sorted(z.files)[:8]) or 'none'})")
            x, y = np.asarray(z["images"]), np.asarray(z["labels"])
            ood = np.asarray(z["ood"]) if "ood" in z else None
    except (ValueError, OSError, EOFError) as e:
        raise SsvizError(f"{name} is not a readable .npz file ({str(e)[:80]})") from None
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1] * x.shape[2] > MAX_PIXELS or min(x.shape[1:]) < 4:
        raise SsvizError(f"{name}: images must be grayscale [N, H, W] with 4 <= H, W and H * W <= {MAX_PIXELS}, "
                         f"got shape {x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min(initial=0) < 0 or y.max() > 999:
        raise SsvizError(f"{name}: labels must be {len(x)} whole numbers from 0 to 999")
    if len(x) < 50 or len(np.unique(y)) < 2:
        raise SsvizError(f"{name}: at least 50 images of at least 2 classes are needed")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise SsvizError(f"{name}: images hold non-finite values")
    lo, hi = float(x.min()), float(x.max())
    scale = lambda a: (a.astype(np.float32) - lo) / (hi - lo if hi > lo else 1.0)  # noqa: E731
    if ood is not None:
        if ood.ndim == 4 and ood.shape[-1] == 1:
            ood = ood[..., 0]
        if ood.shape[1:] != x.shape[1:] or len(ood) < 2 or not np.isfinite(ood.astype(np.float32)).all():
            raise SsvizError(f"{name}: 'ood' must be finite images of the same size as 'images'")
        ood = np.clip(scale(ood), 0, 1)
    return scale(x), y.astype(np.int64), ood, name


# --- the unique feature and its controls ----------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """Where the UF (and every control and random feature) is written: a rectangle of pixels."""
    row: int
    col: int
    height: int
    width: int

    def to_json(self) -> list[int]:
        return [self.row, self.col, self.height, self.width]


def feature_size(shape: tuple[int, int]) -> int:
    """The authors' 5 pixels on 28, scaled to the image (at least 3)."""
    return max(3, round(5 * min(shape) / 28))


def feature_place(shape: tuple[int, int], x_train: np.ndarray | None = None) -> Place:
    """The authors' square: 5x5 at [1:6, 1:6] on 28x28, scaled to the image. On small images (under 16
    pixels a side) no square of even 3x3 is blank (the 8x8 digits' strokes reach row 0 and column 2), so
    the UF goes where the training images are blank, as the authors' corner is on MNIST: the edge column
    (first or last) with the least ink, top to bottom."""
    h, w = shape
    if min(shape) >= 16:
        s = feature_size(shape)
        return Place(1, 1, s, s)
    col = 0
    if x_train is not None and len(x_train):
        col = 0 if float(x_train[:, :, 0].mean()) <= float(x_train[:, :, w - 1].mean()) else w - 1
    return Place(0, col, h, 1)


def uf_pattern(place: Place) -> np.ndarray:
    """The UF: the letter "A" glyph on a square; on an edge strip a fixed code of on and off pixels."""
    if place.height == place.width:
        s = place.height
        if s == 3:
            return GLYPH_A3.copy()
        idx = np.minimum((np.arange(s) * 5) // s, 4)
        return GLYPH_A5[np.ix_(idx, idx)].copy()
    n = place.height * place.width
    code = np.array([1, 0, 1, 1, 0, 1, 1, 0] * (n // 8 + 1), dtype=np.float32)[:n]
    return code.reshape(place.height, place.width)


def random_patterns(n: int, place: Place, rng: np.random.Generator, exclude=()) -> np.ndarray:
    """``n`` distinct Bernoulli(0.5) patterns, none equal to an excluded one and none blank."""
    seen = {p.astype(np.uint8).tobytes() for p in exclude}
    out = []
    shape = (place.height, place.width)
    limit = 2 ** (place.height * place.width) - 1 - len(seen)
    if n > limit:
        raise SettingsError(f"only {limit} distinct {shape[0]}x{shape[1]} control patterns exist: ask for fewer "
                            f"controls")
    while len(out) < n:
        p = (rng.random(shape) < 0.5).astype(np.float32)
        key = p.astype(np.uint8).tobytes()
        if p.any() and key not in seen:
            seen.add(key)
            out.append(p)
    return np.stack(out) if out else np.zeros((0, *shape), np.float32)


def random_patterns_any(n: int, place: Place, rng: np.random.Generator) -> np.ndarray:
    """``n`` Bernoulli(0.5) patterns, repeats allowed: the fresh random feature r_i of each input."""
    return (rng.random((n, place.height, place.width)) < 0.5).astype(np.float32)


def insert(images: np.ndarray, pattern: np.ndarray, place: Place) -> np.ndarray:
    """Copies of ``images`` with ``pattern`` written over ``place`` (one pattern for all, or one per image
    when ``pattern`` is [N, h, w]); on = the brightest value 1, off = 0."""
    out = np.array(images, dtype=np.float32, copy=True)
    out[:, place.row:place.row + place.height, place.col:place.col + place.width] = pattern
    return out


# --- classifiers ----------------------------------------------------------------------------------------
class Normalize(nn.Module):
    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x):
        return (x - self.mean) / self.std


def build_classifier(arch: str, shape: tuple[int, int], classes: int, *, batch_norm: bool = False,
                     dropout: float = 0.0, mean: float = 0.0, std: float = 1.0) -> nn.Module:
    """The authors' classifiers scaled to the input: an MLP 784-512-256-C (hidden widths x pixels/784) or a
    CNN of two conv blocks (3x3 conv, [batch norm], ReLU, 2x2 max-pool) and a dense layer. Input: [N, H, W]
    in [0, 1]; normalization (the training set's mean and std) is the first layer."""
    h, w = shape
    d = h * w
    bn = (lambda n, two=False: (nn.BatchNorm2d(n) if two else nn.BatchNorm1d(n)) if batch_norm else nn.Identity())
    drop = (lambda: nn.Dropout(dropout) if dropout > 0 else nn.Identity())
    if arch == "mlp":
        h1, h2 = max(32, round(512 * d / 784)), max(16, round(256 * d / 784))
        body = [nn.Flatten(), nn.Linear(d, h1), bn(h1), nn.ReLU(), drop(), nn.Linear(h1, h2), bn(h2), nn.ReLU(),
                drop(), nn.Linear(h2, classes)]
    elif arch == "cnn":
        c1, c2 = (32, 64) if min(shape) >= 16 else (16, 32)
        dense = 128 if min(shape) >= 16 else 64
        body = [nn.Unflatten(1, (1, h)), nn.Conv2d(1, c1, 3, padding=1), bn(c1, True), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3, padding=1), bn(c2, True), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                nn.Linear(c2 * (h // 4) * (w // 4), dense), nn.ReLU(), drop(), nn.Linear(dense, classes)]
    else:
        raise SettingsError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    model = nn.Sequential(Normalize(mean, std), *body)
    model.meta = {"arch": arch, "height": h, "width": w, "classes": classes, "batch_norm": bool(batch_norm),
                  "dropout": float(dropout), "mean": float(mean), "std": float(std)}
    return model


def classifier_bytes(model: nn.Module) -> bytes:
    from safetensors.torch import save
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    return save(tensors, metadata={META_KEY: json.dumps(model.meta)})


def load_classifier(source) -> nn.Module:
    """A classifier from safetensors (a path or bytes) in the layout of the module doc; nothing else is read."""
    from safetensors.torch import load
    data = Path(source).read_bytes() if not isinstance(source, (bytes, bytearray)) else bytes(source)
    try:
        tensors = load(data)
        # the metadata lives in the file's JSON header: 8 bytes of little-endian length, then the header
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        meta = json.loads((header.get("__metadata__") or {}).get(META_KEY, "null"))
    except Exception as e:  # a truncated or foreign file: one line
        raise CheckpointError(f"not a safetensors classifier ({type(e).__name__}: {str(e)[:80]})") from None
    if not isinstance(meta, dict) or meta.get("arch") not in ARCHS:
        raise CheckpointError(f"the safetensors file has no '{META_KEY}' metadata naming arch mlp or cnn")
    try:
        model = build_classifier(meta["arch"], (int(meta["height"]), int(meta["width"])), int(meta["classes"]),
                                 batch_norm=bool(meta.get("batch_norm")), dropout=float(meta.get("dropout", 0)),
                                 mean=float(meta.get("mean", 0)), std=float(meta.get("std", 1)))
        model.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"the classifier's tensors do not match its metadata ({str(e)[:100]})") from None
    return model.eval()


def log_probs(model: nn.Module, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """The classifier's log-softmax outputs [N, C] (eval mode: dropout off, batch-norm running statistics)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for lo in range(0, len(images), batch):
            out.append(torch.log_softmax(model(torch.as_tensor(images[lo:lo + batch])).double(), -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


# --- training -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSettings:
    """One experiment: a data set, a classifier, its regularizers and the measurement."""
    data: str = "digits"
    arch: str = "mlp"
    insertions: int = 1          # training images that carry the UF (0: the contrast without it)
    controls: int = 50
    ood: int = 200
    early_stopping: bool = True  # patience 10 on the validation loss, best weights restored
    weight_decay: float = 0.0
    dropout: float = 0.0
    batch_norm: bool = False
    epochs: int = 200            # the most epochs (all of them without early stopping)
    lr: float = 3e-4
    batch_size: int = 128
    patience: int = 10

    def validate(self) -> "ImageSettings":
        if self.arch not in ARCHS:
            raise SettingsError(f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        for name, low in (("insertions", 0), ("controls", 2), ("ood", 2), ("epochs", 1), ("batch_size", 1),
                          ("patience", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise SettingsError(f"{name} must be a whole number >= {low}, got {v!r}")
        if self.controls > 10_000 or self.ood > 100_000 or self.epochs > 10_000:
            raise SettingsError("at most 10,000 controls, 100,000 OOD inputs and 10,000 epochs")
        if not 0 <= self.dropout < 1:
            raise SettingsError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not (0 <= self.weight_decay < 10) or not (0 < self.lr < 1):
            raise SettingsError("weight decay must be in [0, 10) and the learning rate in (0, 1)")
        return self

    @property
    def label(self) -> str:
        parts = [f"weight decay {self.weight_decay:g}" if self.weight_decay else "",
                 f"dropout {self.dropout:g}" if self.dropout else "", "batch norm" if self.batch_norm else "",
                 "early stopping" if self.early_stopping else ""]
        return ", ".join(p for p in parts if p) or "no regularizer"


@dataclass
class Trained:
    model: nn.Module
    uf_indices: list[int]   # training images that carry the UF
    uf_class: int | None
    epochs: int
    val_loss: float
    test_accuracy: float
    seconds: float
    history: list[float] = field(default_factory=list)


def plant(data: ImageData, settings: ImageSettings, seed: int) -> tuple[np.ndarray, list[int], int | None]:
    """The training images with the UF written into ``insertions`` of them, all of one class (the class of the
    first, drawn at random): ``(x_train, indices, class)``. Without insertions the class is still drawn: the
    contrast tests the same class as the seed's UF model."""
    x = data.x_train.copy()
    rng = np.random.default_rng([seed, 0x0F])
    first = int(rng.integers(len(x)))
    k = int(data.y_train[first])
    if settings.insertions == 0:  # the contrast: the class the UF would have had, so its class test is comparable
        return x, [], k
    same = np.flatnonzero(data.y_train == k)
    others = rng.permutation(same[same != first])[:settings.insertions - 1]
    idx = [first, *map(int, others)]
    if len(idx) < settings.insertions:
        raise SettingsError(f"class {k} has only {len(idx)} training images: fewer than {settings.insertions} insertions")
    place = feature_place(data.shape, data.x_train)
    x[idx] = insert(x[idx], uf_pattern(place), place)
    return x, idx, k


def train_classifier(data: ImageData, settings: ImageSettings, seed: int, *, stop=None, on_epoch=None) -> Trained:
    """Adam, batch 128, cross-entropy; early stopping on the validation loss with the best weights restored."""
    settings = settings.validate()
    t0 = time.perf_counter()
    x, idx, k = plant(data, settings, seed)
    torch.manual_seed(seed)
    model = build_classifier(settings.arch, data.shape, data.classes, batch_norm=settings.batch_norm,
                             dropout=settings.dropout, mean=float(x.mean()), std=float(x.std()) or 1.0)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    xt, yt = torch.as_tensor(x), torch.as_tensor(data.y_train)
    xv, yv = torch.as_tensor(data.x_val), torch.as_tensor(data.y_val)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    best, best_state, waited, history, epoch = float("inf"), None, 0, [], 0
    for epoch in range(1, settings.epochs + 1):
        check_stop(stop)
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for lo in range(0, len(order), settings.batch_size):
            b = order[lo:lo + settings.batch_size]
            if settings.batch_norm and len(b) < 2:
                continue
            opt.zero_grad()
            loss_fn(model(xt[b]), yt[b]).backward()
            opt.step()
        model.eval()
        with torch.inference_mode():
            val = float(loss_fn(model(xv), yv))
        history.append(val)
        if on_epoch:
            on_epoch(epoch, settings.epochs)
        if val < best - 1e-6:
            best, waited = val, 0
            best_state = {n: t.detach().clone() for n, t in model.state_dict().items()}
        else:
            waited += 1
            if settings.early_stopping and waited >= settings.patience:
                break
    if settings.early_stopping and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    with torch.inference_mode():
        acc = float((model(torch.as_tensor(data.x_test)).argmax(1).numpy() == data.y_test).mean())
    return Trained(model, idx, k, epoch, best if settings.early_stopping else history[-1], acc,
                   time.perf_counter() - t0, history)


# --- measuring --------------------------------------------------------------------------------------------
def measure(model: nn.Module, ood: np.ndarray, place: Place, settings: ImageSettings, seed: int, *,
            uf_class: int | None = None) -> dict:
    """M2 of the UF and of ``settings.controls`` control patterns on ``model`` over the OOD images.

    Each (feature, input) gets its own fresh random pattern r_i (seeded), as the paper draws one per input.
    Returns the per-seed record: ``seed``, ``m2``, ``m2_ci``, ``controls``, ``rank``, ``p_value`` (class
    test of the UF's class; black-box max over classes when the class is unknown) and the per-input rows."""
    uf = uf_pattern(place)
    rng = np.random.default_rng([seed, 0xC0])
    controls = random_patterns(settings.controls, place, rng, exclude=[uf])
    features = [("uf", uf)] + [(f"control-{i}", p) for i, p in enumerate(controls)]
    clean = log_probs(model, ood)
    rows, m2s = [], {}
    uf_logp = None
    for name, pat in features:
        randoms = random_patterns_any(len(ood), place, rng)
        lf = log_probs(model, insert(ood, pat, place))
        lr = log_probs(model, insert(ood, randoms, place))
        kf, kr = score.kl_rows(clean, lf), score.kl_rows(clean, lr)
        m2s[name] = score.m2(kf, kr)
        rows += [{"seed": seed, "feature": name, "input": i, "kl_feature": float(a), "kl_random": float(b)}
                 for i, (a, b) in enumerate(zip(kf, kr))]
        if name == "uf":
            uf_logp, uf_kl = lf, (kf, kr)
    ctl = [m2s[n] for n, _ in features[1:]]
    test = score.class_probability_test(clean, uf_logp, uf_class)
    blind = score.class_probability_test(clean, uf_logp, None)
    lo, hi = score.bootstrap_m2(*uf_kl, seed=seed)
    return {"seed": seed, "m2": m2s["uf"], "controls": ctl, "rank": score.rank(m2s["uf"], ctl),
            "p_value": test.p_value, "m2_ci": [lo, hi], "control_p_value": score.control_p_value(m2s["uf"], ctl),
            "uf_class": uf_class, "class_score": test.score, "blackbox_class": blind.k,
            "blackbox_score": blind.score, "blackbox_p_value": blind.p_value, "rows": rows}


def run_seed(data: ImageData, settings: ImageSettings, seed: int, *, stop=None, on_epoch=None) -> dict:
    """Train one classifier with the UF and measure it: the per-seed record plus training facts and weights.

    One torch thread: these models are tiny, and a second thread on a shared machine makes each step slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_seed(data, settings, seed, stop=stop, on_epoch=on_epoch)
    finally:
        torch.set_num_threads(threads)


def _run_seed(data: ImageData, settings: ImageSettings, seed: int, *, stop=None, on_epoch=None) -> dict:
    trained = train_classifier(data, settings, seed, stop=stop, on_epoch=on_epoch)
    rec = measure(trained.model, data.ood, feature_place(data.shape, data.x_train), settings, seed,
                  uf_class=trained.uf_class)
    rec.update({"epochs": trained.epochs, "val_loss": trained.val_loss, "test_accuracy": trained.test_accuracy,
                "train_seconds": trained.seconds, "uf_images": trained.uf_indices,
                "weights": classifier_bytes(trained.model)})
    return rec


def seed_task(task: dict) -> dict:
    """One seed on an executor's worker (module-level, sent by name): data rebuilt there, record returned."""
    from ssviz.executor import fetch, stop_flag
    source = task["data"] if isinstance(task["data"], str) else fetch(task["data"])
    settings = ImageSettings(**task["settings"])
    data = load_data(source, ood=settings.ood, seed=0)
    return run_seed(data, settings, task["seed"], stop=stop_flag())


def run_seeds(settings: ImageSettings, seeds: list[int], *, data_bytes: bytes | None = None, executor=None,
              progress=None, stop=None) -> list[dict]:
    """Every seed as a task on ``executor`` (inline when None); records in seed order."""
    from ssviz.executor import InlineExecutor
    settings = settings.validate()
    executor = executor or InlineExecutor()
    source = executor.share(data_bytes) if data_bytes is not None else settings.data
    tasks = [{"data": source, "settings": asdict(settings), "seed": s} for s in seeds]
    got: dict[int, dict] = {}

    def arrived(i: int, rec: dict) -> None:
        got[rec["seed"]] = rec
        if progress:
            progress(len(got), len(seeds))

    if progress:
        progress(0, len(seeds))
    report = executor.map(seed_task, tasks, on_result=arrived, stop=stop, fail_fast=True)
    if report.failed:
        raise report.failed[0].exception()
    if report.stopped or stop_requested(stop):
        if not got:
            raise StoppedError("stopped before the first seed finished")
    return [got[s] for s in seeds if s in got]
