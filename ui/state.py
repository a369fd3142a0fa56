"""What carries over between pages: the chosen model, corpus, template and secret.

Canonical values live under ``ssviz_*`` keys in ``st.session_state``. Widgets
use their own ``w_*`` keys, seeded from the canonical value when a page draws
them (Streamlit forgets a widget's state once a page no longer shows it), and
copy back on change (:func:`widget`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ssviz.demo import DEMO_CANARY, DEMO_CHECKPOINT, DEMO_CONTROL, DEMO_TRANSFORMER
from ssviz.errors import SsvizError
from ssviz.messages import clip
from ssviz.paths import data_path
from ui import cache

MODEL = "ssviz_model"          # key of the current model in the registry
MODELS = "ssviz_models"        # registry: key -> {"name", "source"}
TEMPLATE = "ssviz_template"
SECRET = "ssviz_secret"
EXTRA_SECRETS = "ssviz_extra_secrets"  # typed fillers compared on the exposure page
CORPUS = "ssviz_corpus"        # {"name", "text"} or None for the demo corpus
DEMO_KEY = "demo"
TRAINED_DIR = Path(os.environ.get("SSVIZ_TRAINED_DIR") or data_path("models"))  # models trained in the app


@dataclass
class CurrentModel:
    key: str
    name: str
    model: object

    @property
    def canary(self) -> dict | None:
        """The canary inserted when this model was trained (from the checkpoint), if recorded and valid.

        A checkpoint may come from anyone: its canary goes through template validation (size limits
        included) before it becomes the template under test; one that fails is ignored.
        """
        if self.key == DEMO_KEY:
            return dict(DEMO_CANARY)
        extra = getattr(self.model, "extra_config", None) or {}
        training = extra.get("training") if isinstance(extra, dict) else None
        canary = training.get("canary") if isinstance(training, dict) else None
        return _valid_canary(canary)


def _valid_canary(canary) -> dict | None:
    from ssviz.templates import parse_template
    if not isinstance(canary, dict) or not isinstance(canary.get("template"), str) or \
            not isinstance(canary.get("secret"), str):
        return None
    try:
        template = parse_template(canary["template"])
        secret = template.normalize(canary["secret"])
    except SsvizError:
        return None
    insertions = canary.get("insertions")
    return {"template": template.text, "secret": secret,
            "insertions": insertions if isinstance(insertions, int) and not isinstance(insertions, bool) else "?"}


DEMO_TRANSFORMER_KEY = "demo-transformer"


def default_models() -> dict:
    """The bundled models a new session offers: the LSTM demo, and the demo transformer when it is bundled."""
    registry = {DEMO_KEY: {"name": "Bundled demo (2x200 LSTM)", "source": str(DEMO_CHECKPOINT)}}
    if (DEMO_TRANSFORMER / "config.json").is_file():
        registry[DEMO_TRANSFORMER_KEY] = {"name": "Bundled demo transformer (Llama-style)",
                                          "source": str(DEMO_TRANSFORMER)}
    return registry


def init() -> None:
    """Defaults for a new session: the bundled demo, its canary template and secret."""
    ss = st.session_state
    ss.setdefault(MODELS, default_models())
    ss.setdefault(MODEL, DEMO_KEY)
    ss.setdefault(TEMPLATE, DEMO_CANARY["template"])
    ss.setdefault(SECRET, DEMO_CANARY["secret"])
    ss.setdefault(EXTRA_SECRETS, [DEMO_CONTROL])
    ss.setdefault(CORPUS, None)


def widget(name: str) -> str:
    """The widget key for canonical state ``name``, seeded with its value: pass ``key=widget(X)``."""
    wkey = "w_" + name
    if wkey not in st.session_state:
        st.session_state[wkey] = st.session_state[name]
    return wkey


def setting(wkey: str, default) -> dict:
    """Widget arguments for a page setting that survives a visit to another page (Streamlit drops the
    state of a widget a run did not draw, and with it the cached result the setting keys).

    The value lives under canonical ``ssviz_<name>``; the widget ``w_<name>`` is seeded from it and copies
    back on change. Use as ``st.selectbox(label, options, **state.setting("w_exp_method", "auto"))``,
    without a default value of the widget's own.
    """
    name = "ssviz_" + wkey.removeprefix("w_")
    st.session_state.setdefault(name, default)
    if wkey not in st.session_state:
        st.session_state[wkey] = st.session_state[name]
    return {"key": wkey, "on_change": _copy, "args": (wkey, name)}


def _copy(wkey: str, name: str) -> None:
    st.session_state[name] = st.session_state[wkey]


def sync(name: str) -> None:
    """Copy a widget's value (made with :func:`widget`) back to the canonical state."""
    st.session_state[name] = st.session_state["w_" + name]


def get(name: str):
    return st.session_state[name]


def put(name: str, value) -> None:
    """Set canonical state and any widget showing it."""
    st.session_state[name] = value
    st.session_state.pop("w_" + name, None)


def apply(settings: dict) -> None:
    """Set several values at once, as the workshop tour opens a page ready for its step.

    The model goes through :func:`select_model` and the template through :func:`template_changed` (in the
    dict's order, so a secret given after them wins); any other key is set and the widgets showing it
    (``w_<name>`` of :func:`widget`, ``w_<name without ssviz_>`` of :func:`setting`) are forgotten, so they
    are drawn with the new value.
    """
    for name, value in settings.items():
        if name == MODEL:
            select_model(value)
        elif name == TEMPLATE:
            put(TEMPLATE, value)
            template_changed()
        else:
            st.session_state[name] = value
            st.session_state.pop("w_" + name, None)
            if name.startswith("ssviz_"):
                st.session_state.pop("w_" + name.removeprefix("ssviz_"), None)


PRESENTER = "ssviz_presenter"  # large type and high contrast, for a projector (the sidebar's switch)


def presenter() -> bool:
    return bool(st.session_state.get(PRESENTER, False))


def typed_template() -> None:
    """A template typed in a widget made with ``widget(TEMPLATE)`` (the Template and Model pages)."""
    sync(TEMPLATE)
    template_changed()


OWN_SECRET = "ssviz_own_secret"  # the model for which the user typed the secret under test


def secret_not_chosen(current) -> bool:
    """Whether the current model (not the demo) records no canary and the user has not yet typed the secret
    to test in it: the demo's secret would otherwise be measured in a model that never saw it."""
    return current.key != DEMO_KEY and current.canary is None and st.session_state.get(OWN_SECRET) != current.key


def secret_typed(model_key: str) -> None:
    """The user typed the secret under test for ``model_key`` (a widget made with ``widget(SECRET)``)."""
    sync(SECRET)
    st.session_state[OWN_SECRET] = model_key


def template_changed() -> None:
    """After the template changed: keep the secret if it still fits, else use an example filler of the new one;
    keep only the compared fillers (exposure page) that still fit, so none is warned about on every visit."""
    from ssviz.templates import Template
    try:
        template = Template(st.session_state[TEMPLATE])
    except SsvizError:
        return  # the page shows the template's error
    try:
        template.normalize(st.session_state[SECRET])
    except SsvizError:
        put(SECRET, template.random_fillers(1, seed=0)[0])
    put(EXTRA_SECRETS, [f for f in st.session_state.get(EXTRA_SECRETS, []) if _fits(template, f)])
    st.session_state.pop("w_exp_others", None)  # the exposure page's text box, if it is still remembered


def _fits(template, filler: str) -> bool:
    try:
        template.normalize(filler)
    except SsvizError:
        return False
    return True


def secret_under_test(model) -> tuple["Template", str]:
    """The current template and secret (normalized), checked against ``model``'s vocabulary."""
    from ssviz.templates import Template
    template = Template(st.session_state[TEMPLATE])
    secret = template.normalize(st.session_state[SECRET])
    template.check_vocab(model.vocab)
    return template, secret


def models() -> dict:
    return st.session_state[MODELS]


def register_model(key: str, name: str, source: str) -> None:
    models()[key] = {"name": name, "source": source}


def select_model(key: str) -> CurrentModel:
    """Make ``key`` current; its recorded canary becomes the template and secret under test."""
    put(MODEL, key)
    current = current_model()
    if current.canary:
        put(TEMPLATE, current.canary["template"])
        put(SECRET, current.canary["secret"])
        template_changed()
    return current


def current_model() -> CurrentModel:
    key = st.session_state[MODEL]
    entry = models().get(key)
    if entry is None:
        raise SsvizError(f"model {key!r} is no longer available; choose another on the Model page")
    if key.startswith("upload:"):
        model = cache.uploaded_model(key.split(":", 1)[1])
        if model is None:
            raise SsvizError(f"the uploaded model is no longer kept (a session keeps the last {cache.MAX_UPLOADS} "
                             "uploads): upload it again on the Model page")
    else:
        model = cache.model_from_file(Path(entry["source"]), adapter=entry.get("adapter"))
    return CurrentModel(key, entry["name"], model)


def corpus() -> tuple[str, str]:
    """(name, text) of the corpus chosen on the Model page (the demo corpus by default)."""
    chosen = st.session_state.get(CORPUS)
    if chosen:
        return chosen["name"], chosen["text"]
    return "demo corpus", cache.demo_corpus_text()


UPLOAD_ERROR = "ssviz_upload_error"
CORPUS_ERROR = "ssviz_corpus_error"


def accept_checkpoint(name: str, data: bytes) -> bool:
    """Handle an uploaded checkpoint: validate it, register and select it; on failure keep the message.

    The bytes only ever reach :func:`ui.cache.model_from_upload` (a checkpoint, or a zip of a model
    folder), which refuses pickled code. The page shows ``st.session_state[UPLOAD_ERROR]`` as an error.
    """
    st.session_state[UPLOAD_ERROR] = None
    name = clip(name, 80)
    try:
        sha, model = cache.model_from_upload(data)
    except SsvizError as e:
        st.session_state[UPLOAD_ERROR] = clip(f"{name}: {e}", 400)
        return False
    d = model.description
    register_model(f"upload:{sha}", f"{name} ({d['arch']} {d['layers']}x{d['hidden_size']}, uploaded)", name)
    kept = cache.uploaded_shas()
    for key in [k for k in models() if k.startswith("upload:") and k.split(":", 1)[1] not in kept]:
        del models()[key]  # dropped from the upload cache: no longer offered
    select_model(f"upload:{sha}")
    return True


def accept_corpus(name: str, data: bytes) -> bool:
    """Handle an uploaded corpus (UTF-8 text); on failure keep the message in ``CORPUS_ERROR``."""
    from ssviz.train import read_corpus
    st.session_state[CORPUS_ERROR] = None
    name = clip(name, 80)
    try:
        text = read_corpus(bytes(data))
    except SsvizError as e:
        st.session_state[CORPUS_ERROR] = clip(f"{name}: {e}", 400)
        return False
    st.session_state[CORPUS] = {"name": name, "text": text}
    return True
