"""Streamlit page "Defenses": what regularization, sanitization and DP-SGD do to a canary's exposure.

Bundled results load instantly; small runs train on the spot as the app's
background job (progress, live chart, Stop). On the same scaffold as the other
pages: errors show as messages, never as tracebacks.
"""

from __future__ import annotations

import math
from functools import partial

import pandas as pd
import streamlit as st

from ssviz.defenses import paper
from ssviz.defenses.compare import DEFENSES, load_results, run_defense
from ssviz.records import DEFENSE_LABELS
from ssviz.demo import DEMO_CANARY, DEMO_CORPUS
from ssviz.errors import SsvizError
from ssviz.paths import bundled
from ssviz.integrations import read_curve
from ssviz.plots.defenses import defense_comparison, exposure_during_training, sweep_heatmap, training_dynamics
from ssviz.records import DefenseResult
from ssviz.sweeps import DEFAULT_SWEEP_DB, list_sweeps, load_runs, summarize
from ssviz.templates import Template
from ssviz.train import Canary, TrainConfig
from ui.audits import audited_epsilon
from ui.jobs import Job, Snapshot, training_job
from ui.widgets import chart, job_panel, message, newly_finished, page_header, run_page, shown, start_job

BUNDLED_RESULTS = bundled("defenses/demo-results.json")
BUNDLED_SWEEP = bundled("defenses/demo-sweep.duckdb")
STRENGTHS = {"none": ["-"], "dropout": ["0.1", "0.3", "0.5"], "weight_decay": ["1e-5", "1e-4", "1e-3"],
             "quantize8": ["8"], "regex": ["ssn+ccn"], "lpd": ["0.1", "0.2"],
             "dp": ["eps=8", "eps=3", "eps=1", "noise=0"]}
# "train on the spot" setting: small enough for a minute or two on a shared CPU
LIVE_CHARS = 40_000
LIVE_CONFIG = TrainConfig(layers=1, hidden=64, embedding_dim=32, epochs=4, batch_size=64, lr=0.005, seed=0,
                          patience=None, exposure_method="exact")
JOB = "def_job"
CURVE = "def_curve_data"  # an exposure curve's bytes already opened in this session
RESULTS = "def_results"  # this session's runs as the results file's JSON records (the Report page reads them so)
BUNDLED, TRAINED = "bundled", "trained here"
Shown = tuple[DefenseResult, str]  # a record and where it comes from (the table's "source")


def start_training(defense: str, strength: str) -> Job:
    """Train one defense on the spot as a background training job (its epochs feed the live chart)."""
    def run(on_epoch, on_batch, stop) -> DefenseResult:
        text = DEMO_CORPUS.read_text(encoding="utf-8")[:LIVE_CHARS]
        canary = Canary(Template(DEMO_CANARY["template"]), DEMO_CANARY["secret"], DEMO_CANARY["insertions"])
        return run_defense(text, canary, LIVE_CONFIG, defense, strength, lpd_config=LIVE_CONFIG,
                           on_epoch=on_epoch, on_batch=on_batch, stop=stop)

    epochs = LIVE_CONFIG.epochs * (2 if defense == "lpd" else 1)  # LPD trains half models first
    return training_job((defense, strength), f"{DEFENSE_LABELS[defense]} {strength}", run, epochs)


def collect_finished() -> None:
    """Add a finished on-the-spot run to this session's results, once (before the table is drawn)."""
    job = newly_finished(JOB)
    if job is not None:
        st.session_state.setdefault(RESULTS, []).append(job.result.to_json())


def bundled_records() -> list[Shown]:
    try:
        records = load_results(BUNDLED_RESULTS)
    except SsvizError as e:
        st.info(f"No bundled results ({message(e)}). Rebuild them with `python models/make_defense_results.py`.")
        return []
    return [(r, BUNDLED) for r in records]


def session_records() -> list[Shown]:
    """The runs trained here in this session."""
    return [(DefenseResult.from_json(r), TRAINED) for r in st.session_state.get(RESULTS, [])]


def label(record: DefenseResult) -> str:
    return f"{DEFENSE_LABELS.get(record.defense, record.defense)} {record.strength}"


def audited(record: DefenseResult) -> str:
    """The bundled audit's epsilon lower bound for this row's training options, "—" when none matches."""
    match = audited_epsilon(record.defense, record.strength)
    if match is None or match["epsilon_lower"] is None:
        return "—"
    return f"≥ {match['epsilon_lower']:.2f}"


def records_table(records: list[Shown]) -> pd.DataFrame:
    rows = [{"defense": DEFENSE_LABELS.get(r.defense, r.defense), "strength": r.strength, "epsilon": r.epsilon,
             "audited epsilon": audited(r), "exposure (bits)": round(r.exposure, 2), "test loss": round(r.test_loss, 3),
             "seconds": round(r.seconds, 1), "source": source} for r, source in records]
    return pd.DataFrame(rows)


def compare_section(records: list[Shown]) -> None:
    st.subheader("Exposure vs test loss")
    st.caption("Each point is one model trained on the same data with the demo canary "
               f"“{DEMO_CANARY['template']}” = {DEMO_CANARY['secret']} inserted {DEMO_CANARY['insertions']} times. "
               "Lower exposure = less memorized; further right = worse model. The red star is the undefended model.")
    if not records:
        st.info("No results yet: train one below.")
        return
    space = Template(DEMO_CANARY["template"]).space_size
    chart(defense_comparison([r for r, _ in records], max_exposure=math.log2(space)), "defenses-exposure-vs-loss",
          key="def_compare")
    st.dataframe(records_table(records), hide_index=True, width="stretch")
    matches = [m for m in (audited_epsilon(r.defense, r.strength) for r, _ in records) if m]
    k = matches[0]["insertions"] if matches and matches[0].get("insertions") else "K"
    st.caption("**epsilon**: the DP accountant's guarantee per training line. **audited epsilon**: the lower bound "
               "measured by the bundled audit with the same training options (Privacy audit page); its canaries "
               f"are each inserted {k} times, so it bounds a group of {k} lines, which DP covers only at {k} x "
               "epsilon. — where no audit matches (sanitization changes the data, not the training options).")
    with st.expander(f"The paper's Table 7 ({paper.TABLE7_SETTING}) for comparison"):
        st.dataframe(paper.table7(), hide_index=True)
        st.caption(paper.FINDINGS)


def train_section() -> None:
    st.subheader("Train with a defense")
    c1, c2 = st.columns(2)
    defense = c1.selectbox("Defense", DEFENSES, format_func=lambda d: DEFENSE_LABELS[d], key="def_defense")
    strength = c2.selectbox("Strength", STRENGTHS[defense], key="def_strength",
                            help="dropout probability, weight-decay coefficient, bits, patterns, dropped "
                                 "fraction of lines (LPD), or DP target epsilon / noise multiplier")
    st.caption(f"Trains a 1x{LIVE_CONFIG.hidden} LSTM for {LIVE_CONFIG.epochs} epochs on the first "
               f"{LIVE_CHARS // 1000} KB of the demo corpus (DP-SGD is several times slower).")
    job: Job | None = st.session_state.get(JOB)
    if st.button("Train", disabled=bool(job and job.running), type="primary", icon=":material/play_arrow:",
                 key="def_train"):
        job = start_job(JOB, start_training(defense, strength))
        st.rerun()
    if job is None:
        return
    if job.running:
        job_panel(JOB, live=partial(live_dynamics, job.label), every=1.0)
    elif job.error:
        (st.warning if job.stopped else st.error)(f"{job.label}: {'stopped: ' if job.stopped else ''}{job.error}")
    else:
        st.success(f"{job.label}: exposure {job.result.exposure:.2f} bits, test loss "
                   f"{job.result.test_loss:.3f} ({job.result.seconds:.0f} s)")


def live_dynamics(title: str, snap: Snapshot) -> None:
    """The running job's epochs so far, under its progress bar."""
    if snap.records:
        chart(training_dynamics(snap.records, title=title), "defense-training-live",
              key=f"def_live_{len(snap.records)}_{snap.running}")


def dynamics_section(records: list[Shown]) -> None:
    st.subheader("Training dynamics (the paper's Figure 4)")
    with_history = [(r, source) for r, source in records if r.epochs]
    if not with_history:
        st.info("No per-epoch history in these results.")
        return
    names = [f"{label(r)} ({source})" for r, source in with_history]
    pick = st.selectbox("Run", range(len(names)), format_func=lambda i: names[i], key="def_dyn")
    run = with_history[pick][0]
    chart(training_dynamics(run.epochs), f"defense-training-{label(run)}", key="def_dynamics")
    st.caption("Exposure rises in the first epochs, while validation loss is still falling: "
               "memorization is not overfitting.")


def curve_section() -> None:
    """A curve written by ``ssviz.integrations.ExposureCallback(out=...)`` in the user's own training run."""
    st.subheader("Exposure during training")
    st.caption("Open the JSON an `ExposureCallback(canaries, out=\"curve.json\")` wrote while your own "
               "Trainer ran: each canary's exposure at every evaluation.")
    upload = st.file_uploader("Exposure curve (JSON)", type=["json"], key="def_curve_file")
    data = upload.getvalue() if upload is not None else st.session_state.get(CURVE)
    if data is None:
        return
    try:
        records = read_curve(data)
    except SsvizError as e:
        st.error(message(e))
        return
    chart(exposure_during_training(records), "exposure-during-training", key="def_curve")
    last = {r["name"]: r for r in records}
    st.dataframe(pd.DataFrame([{"canary": n, "step": r["step"], "exposure (bits)": round(r["exposure"], 2),
                                "rank": r["rank"]} for n, r in last.items()]), hide_index=True, width="stretch")


def sweep_section() -> None:
    st.subheader("Sweeps")
    st.caption("Grids over one or two settings x seeds, made with `python -m ssviz sweep` "
               "(e.g. `--grid batch_size=32,128 --grid hidden=64,128 --seeds 2`).")
    choices = [p for p in (DEFAULT_SWEEP_DB, BUNDLED_SWEEP) if p.is_file()]
    if not choices:
        st.info(f"No sweeps database yet ({shown(DEFAULT_SWEEP_DB)}).")
        return
    db = st.selectbox("Database", choices, format_func=shown, key="def_db")
    try:
        sweeps = list_sweeps(db)
        if sweeps.empty:
            st.info("This database holds no sweeps.")
            return
        name = st.selectbox("Sweep", list(sweeps["sweep"]), key="def_sweep",
                            format_func=lambda s: f"{s} ({sweeps.set_index('sweep').loc[s, 'runs']} runs)")
        table = summarize(load_runs(db, name))
    except SsvizError as e:
        st.error(message(e))
        return
    metric = st.radio("Colour by", ["exposure", "test_loss"], horizontal=True, key="def_metric")
    chart(sweep_heatmap(table, metric), f"sweep-{name}-{metric}", key="def_sweep_map")
    st.dataframe(table.round(3), hide_index=True, width="stretch")


def body() -> None:
    page_header("Defenses", "Does regularization stop memorization? Does sanitization? Differential privacy does. "
                "Compare each defense's canary exposure and test loss against the undefended model.")
    collect_finished()
    records = bundled_records() + session_records()
    compare_section(records)
    train_section()
    dynamics_section(records)
    curve_section()
    sweep_section()


run_page(body)
