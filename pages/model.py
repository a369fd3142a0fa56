"""Page 1, Model & corpus: the bundled demo, an uploaded checkpoint, or a model trained here with a canary."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from ssviz.errors import SsvizError
from ssviz.plots.study import found_secrets_chart
from ssviz.plots.tokens import secret_units, visible
from ssviz.plots.training import training_progress
from ssviz.templates import MAX_TEMPLATE_CHARS, Template, parse_template
from ssviz.train import Canary, TrainConfig
from ui import placement, state
from ui.jobs import Job, Snapshot, train_and_save
from ui.widgets import (
    cached_job,
    chart,
    download_table,
    job_panel,
    message,
    page_header,
    release_upload,
    run_page,
    start_job,
    unit_chips,
    uploader_key,
)

JOB = "ssviz_training_job"
SCAN_JOB = "ssviz_scan_job"
SCAN_SAMPLES = 2_000   # skew-normal references per found secret: a few seconds each on the demo
SCAN_NODES = 10_000    # search budget per found secret
REGISTERED = "ssviz_training_registered"


def model_section() -> state.CurrentModel:
    st.subheader("Current model")
    registry = state.models()
    st.selectbox("Model", list(registry), format_func=lambda k: registry[k]["name"],
                 key=state.widget(state.MODEL), on_change=_on_model)
    current = state.current_model()
    facts = current.model.facts
    for column, (label, value) in zip(st.columns(len(facts)), facts):
        column.metric(label, value)
    canary = current.canary
    if state.secret_not_chosen(current):
        ask_for_the_secret(current.key)
    if canary:
        st.info(f"Trained with the canary `{Template(canary['template']).format(canary['secret'])}` inserted "
                f"{canary.get('insertions', '?')} times: it is the secret under test by default.")
    units_section(current)
    if len(current.model.vocab) <= MAX_SHOWN_VOCABULARY:
        with st.expander("Vocabulary"):
            st.code(" ".join(repr(ch)[1:-1] for ch in current.model.unit_texts() if ch is not None), language="text")
    return current


MAX_SHOWN_VOCABULARY = 500  # a character vocabulary is listed; a tokenizer's is too long to read


def ask_for_the_secret(model_key: str) -> None:
    """A model of the user's with no recorded canary: which secret is under test is theirs to say."""
    st.info("This model records no canary. Which secret do you want to test in it? Type its format (a template "
            "such as `Account {d:8}`) and the secret itself; every page then measures that secret.")
    c = st.columns([3, 2])
    c[0].text_input("Your secret's template", key=state.widget(state.TEMPLATE), on_change=state.typed_template,
                    max_chars=MAX_TEMPLATE_CHARS)
    c[1].text_input("Your secret", key=state.widget(state.SECRET), on_change=state.secret_typed, args=(model_key,))


def units_section(current: state.CurrentModel) -> None:
    """How the model splits the secret under test into the units it scores (characters or tokens)."""
    model = current.model
    unit = model.unit_name
    st.markdown(model.reading)
    try:
        template, secret = state.secret_under_test(model)
    except SsvizError as e:
        st.warning(f"The secret under test cannot be read by this model: {message(e)}")
        return
    tt = model.template_units(template)
    text = template.format(secret)
    spelled = tt.spell(text)
    marks = secret_units([t for _, t in spelled], text, template)
    st.markdown(f"{_code(text)} is read as **{len(spelled)} {unit}s** (the secret's in red):")
    st.html(unit_chips([t for _, t in spelled], marks))
    st.caption(f"Each slot character is its own {unit} for this model (as with Llama's digits): search over "
               "the template is exact." if tt.exact_search else
               "This tokenizer merges slot characters with each other or with the text around them (as GPT-2 "
               "merges digit runs and the space before them): exposure scores every filler on the tokenizer's "
               "own tokens, exactly; shortest-path search explores every token path that spells a filler and "
               "re-scores what it finds, exact only as far as a sampled check of the tokenizer holds.")
    with st.expander(f"{unit.capitalize()} by {unit}"):
        st.dataframe(pd.DataFrame({"#": range(len(spelled)), unit: [visible(t) for _, t in spelled],
                                   "id": [i for i, _ in spelled],
                                   "part of the secret": [i in marks for i in range(len(spelled))]}),
                     hide_index=True)


def _code(text: str) -> str:
    """Inline code in markdown, also for a token that contains backticks."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _on_model() -> None:
    state.select_model(st.session_state["w_" + state.MODEL])


def upload_section() -> None:
    st.subheader("Upload")
    c1, c2 = st.columns(2)
    with c1:
        st.file_uploader("Model: a checkpoint (.safetensors, weights-only .pt) or a zipped Hugging Face model "
                         "folder (.zip)", type=["safetensors", "pt", "zip"],
                         key=uploader_key(CHECKPOINT_UPLOAD), on_change=_on_checkpoint)
        st.caption("Files are validated before use; pickled Python objects are refused, never executed. A zip "
                   "holds what save_pretrained writes (config.json, safetensors weights, tokenizer files); it "
                   "is loaded from local files only, never with code shipped alongside.")
        if st.session_state.get(state.UPLOAD_ERROR):
            st.error(st.session_state[state.UPLOAD_ERROR])
    with c2:
        st.file_uploader("Training corpus (UTF-8 text)", type=["txt", "text", "csv", "md"],
                         key="w_corpus_upload", on_change=_on_corpus)
        if st.session_state.get(state.CORPUS_ERROR):
            st.error(st.session_state[state.CORPUS_ERROR])


CHECKPOINT_UPLOAD = "w_checkpoint_upload"


def _on_checkpoint() -> None:
    """Load the uploaded checkpoint, then let go of its bytes: the loaded model is what the session keeps."""
    f = st.session_state.get(uploader_key(CHECKPOINT_UPLOAD))
    if f is not None:
        state.accept_checkpoint(f.name, f.getvalue())
        release_upload(CHECKPOINT_UPLOAD)


def _on_corpus() -> None:
    f = st.session_state.get("w_corpus_upload")
    if f is not None:
        state.accept_corpus(f.name, f.getvalue())
    else:
        st.session_state[state.CORPUS] = None


def corpus_section(current: state.CurrentModel) -> None:
    name, text = state.corpus()
    st.subheader("Corpus")
    missing = current.model.vocab.missing(text)
    c = st.columns(4)
    c[0].metric("Corpus", name)
    c[1].metric("Characters", f"{len(text):,}")
    c[2].metric("Lines", f"{text.count(chr(10)) + 1:,}")
    c[3].metric("Distinct characters", len(set(text)))
    if missing:
        counts = pd.Series([ch for ch in text if ch in set(missing)]).value_counts()
        st.warning(f"{len(missing)} character(s) of this corpus are outside the current model's vocabulary "
                   f"({int(counts.sum()):,} occurrences): text containing them cannot be scored by this model.")
        st.dataframe(pd.DataFrame({"character": [repr(ch) for ch in counts.index], "count": counts.values}),
                     hide_index=True, height=min(300, 40 + 35 * len(counts)))
    else:
        st.success("Every character of the corpus is in the current model's vocabulary.")


def scan_section(current: state.CurrentModel) -> None:
    """The secrets already in the corpus (SSNs, cards, phones, AWS keys, GitHub tokens), each measured in the model."""
    from ssviz.scan import KINDS, scan, scan_corpus

    st.subheader("Secrets already in this corpus")
    name, text = state.corpus()
    found = scan(text, tuple(KINDS))
    if not found:
        st.info(f"The scanner found no {', '.join(k.label for k in KINDS.values())} in the {name}.")
        return
    st.caption(f"{len(found)} distinct secret(s) found. Measure how much the current model reveals of each: its "
               "exposure, and whether a shortest-path search extracts it. Only a few last characters are shown.")
    key = ("scan", state.get(state.MODEL), hash(text))
    model = current.model
    rows = cached_job(SCAN_JOB, key, "Measuring the secrets found",
                      lambda progress, stop: scan_corpus(model, text, samples=SCAN_SAMPLES, search_nodes=SCAN_NODES,
                                                         extraction_nodes=SCAN_NODES, progress=progress, stop=stop),
                      start=st.button("Measure them in this model", key="scan_run", icon=":material/search:"))
    if rows is None:
        return
    table = pd.DataFrame([{"type": r.label, "last 4": "…" + r.last4, "times present": r.times_present,
                           "exposure (bits)": r.exposure, "method": r.exposure_method, "extracted": r.extracted,
                           "note": r.note} for r in rows])
    st.dataframe(table, hide_index=True)
    download_table(table, "secrets-found", key="scan_csv")
    if any(r.exposure is not None for r in rows):
        chart(found_secrets_chart(rows), "secrets-found", key="scan_chart")


def train_section() -> None:
    st.subheader("Train a model with a canary")
    name, text = state.corpus()
    job: Job | None = st.session_state.get(JOB)
    running = bool(job and job.running)
    with st.form("train_form", border=True):
        st.caption(f"Trains a small model on the {name} with the canary inserted into its training part, "
                   "measuring the canary's exposure after every epoch: a character-level LSTM or GRU, or a "
                   "small transformer (GPT-2- or Llama-style) reading tokens of a BPE tokenizer trained on the corpus.")
        c = st.columns(5)
        arch = c[0].selectbox("Architecture", list(ARCHITECTURES), format_func=ARCHITECTURES.get)
        hidden = c[1].selectbox("Units (width)", [64, 128, 200], index=1)
        epochs = c[2].number_input("Epochs", 1, 20, 4)
        lr = c[3].select_slider("Learning rate", [0.001, 0.002, 0.003, 0.005], value=0.003)
        max_chars = c[4].select_slider("Corpus characters used", [20_000, 50_000, 100_000, 200_000, 300_000,
                                                                  1_000_000], value=100_000)
        c = st.columns([3, 2, 1])
        template = c[0].text_input("Canary template", state.get(state.TEMPLATE), max_chars=MAX_TEMPLATE_CHARS)
        secret = c[1].text_input("Canary filler", state.get(state.SECRET))
        insertions = c[2].number_input("Insertions", 0, 100, 8)
        start = st.form_submit_button("Train", type="primary", disabled=running, icon=":material/play_arrow:")
    if start:
        tpl = parse_template(template)  # refused (one line, by the page wrapper) before anything is allocated
        canary = Canary(tpl, tpl.normalize(secret), int(insertions)) if insertions else None
        config = training_config(arch, int(hidden), int(epochs), float(lr))
        job = train_and_save(text[:max_chars], config, canary, state.TRAINED_DIR,
                             name=f"{arch}{config.layers}x{config.hidden}")
        start_job(JOB, job)
        st.rerun()
    if job and job.running:
        job_panel(JOB, live=lambda snap: epochs_chart(snap, job.meta["canary"]), every=1.0)
    elif job:
        finished(job)


ARCHITECTURES = {"lstm": "LSTM (characters)", "gru": "GRU (characters)", "llama": "Llama-style transformer (tokens)",
                 "gpt2": "GPT-2-style transformer (tokens)"}


def training_config(arch: str, hidden: int, epochs: int, lr: float) -> TrainConfig:
    """The app's small models: a 1-layer RNN as the paper's (batch 128, windows of 20 characters), or a
    2-block transformer (batch 32, windows of 64 tokens) sized to train in about a minute on 2 cores."""
    if arch in ("lstm", "gru"):
        return TrainConfig(arch=arch, layers=1, hidden=hidden, embedding_dim=32, epochs=epochs, batch_size=128,
                           seq_len=20, lr=lr, seed=0, patience=None, exposure_method="auto",
                           exposure_samples=2_000).validate()
    return TrainConfig(arch=arch, layers=2, hidden=hidden, heads=4, vocab_size=600, epochs=epochs, batch_size=32,
                       seq_len=64, lr=lr, seed=0, patience=None, exposure_method="auto",
                       exposure_samples=2_000).validate()


def epochs_chart(snap: Snapshot, canary: Canary | None) -> None:
    """Loss and canary exposure per epoch so far (drawn live under the progress bar, and once finished)."""
    if not snap.records:
        return
    space = canary.template.space_size if canary else None
    last = snap.records[-1]
    if last.get("exposure") is not None and space:
        st.caption(f"Epoch {last['epoch']}: validation loss {last['val_loss']:.3f}, canary exposure "
                   f"{last['exposure']:.2f} of {math.log2(space):.2f} bits"
                   + (f", rank {last['rank']:,}" if last.get("rank") else ""))
    chart(training_progress(snap.records, math.log2(space) if space else None,
                            title="Training: loss and canary exposure"), "training-progress",
          key=f"train_{len(snap.records)}_{snap.running}")


def finished(job: Job) -> None:
    """The ended run: its curves, and its saved checkpoint offered as the current model."""
    snap = job.snapshot()
    if job.error:
        (st.warning if job.stopped else st.error)(f"Training ended: {job.error}")
    epochs_chart(snap, job.meta["canary"])
    if job.result is None:
        return
    path = job.result["path"]
    key = f"file:{path}"
    if st.session_state.get(REGISTERED) != key:
        d = job.meta["config"]
        state.register_model(key, f"Trained here: {d.layers}x{d.hidden} {ARCHITECTURES[d.arch].split(' (')[0]}, "
                                  f"{len(snap.records)} epochs ({path.name})", str(path))
        st.session_state[REGISTERED] = key
    status = "stopped early, saved" if job.result["stopped"] else "finished, saved"
    st.success(f"{status.capitalize()} in {job.seconds:.0f} s: {path.name}.")
    if job.result.get("warning"):  # the loss stopped being finite: the saved model is the last finite one
        st.warning(job.result["warning"])
    if state.get(state.MODEL) != key and st.button("Use this model", type="primary", key="use_trained"):
        state.select_model(key)
        st.rerun()


def body() -> None:
    page_header("Model & corpus", "Pick the model to examine. The bundled demo is loaded; upload your own "
                "checkpoint or zipped transformer, or train a small one on a corpus with a canary inserted. The "
                "choice carries over to every page.")
    current = model_section()
    upload_section()
    placement.server_section()
    corpus_section(current)
    scan_section(current)
    train_section()


run_page(body)
