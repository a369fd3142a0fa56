"""The Membership page: the bundled result with the library's numbers, the blind baseline and its verdict in
plain words, the per-text view; a run on the spot through the app's job runner."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from ssviz.membership.blind import shift_message
from ssviz.membership.run import load_mia
from ssviz.paths import SOURCE_ROOT as ROOT
from ui import membership as ui_mia

PAGE = str(ROOT / "pages" / "membership.py")


@pytest.fixture(autouse=True)
def _runs_finish_before_the_page_draws(monkeypatch, tmp_path):
    """Runs here finish before the page draws, and are saved in a temporary data folder."""
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 120.0)
    monkeypatch.setenv("SSVIZ_DATA_DIR", str(tmp_path / "data"))


def open_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_names(at: AppTest) -> list[list[str]]:
    return [[t.get("name") for t in json.loads(c.proto.spec)["data"]] for c in at.get("plotly_chart")]


@pytest.mark.slow
def test_the_page_opens_on_the_bundled_result_with_the_librarys_numbers():
    res = load_mia(ui_mia.DEMO_DIR)
    doc = res.to_json()
    at = open_page()
    m = metrics(at)
    best = doc["attacks"][doc["best_attack"]]
    assert m["Best attack AUC"] == f"{best['auc']:.3f}"
    assert m["Best attack TPR at 1% FPR"] == f"{best['tpr_at_fpr']['0.01']:.3f}"
    assert m["Blind baseline AUC"] == f"{doc['blind']['auc']:.3f}"
    assert m["Blind baseline TPR at 1% FPR"] == f"{doc['blind']['tpr_at_fpr']['0.01']:.3f}"
    said = [e.value for e in (*at.warning, *at.info)]
    assert shift_message(doc["blind"], doc["attacks"]) in said
    names = chart_names(at)
    roc = next(n for n in names if "blind baseline (no model)" in n)
    assert sum(any(n and n.startswith(a["title"] + " (") for n in roc) for a in doc["attacks"].values()) == \
        len(doc["attacks"])
    assert any(n == ["log p (nats)", "Min-K%++ z"] for n in names)  # the per-text view, drawn with the model
    table = at.dataframe[0].value
    assert list(table["attack"])[-1] == "Blind baseline (no model)" and len(table) == len(doc["attacks"]) + 1
    ranks = next(d.value for d in at.dataframe if "of" in d.value.columns)
    assert list(ranks["rank (1 = most member-like)"]) == [res.ranks(0)[a] for a in res.scores]
    assert at.session_state["ssviz_mia_shown"] == str(ui_mia.DEMO_DIR)  # what the Report page offers


@pytest.mark.slow
def test_a_run_on_the_loaded_model_goes_through_the_job_runner():
    at = open_page()
    at.radio(key="w_mia_source").set_value("run").run()
    at.multiselect(key="w_mia_attacks").set_value(["loss", "mink"])
    at.number_input(key="w_mia_limit").set_value(6)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    job = at.session_state["ssviz_mia_job"]
    assert not job.running and job.error is None and job.meta == {"members": 6, "nonmembers": 6,
                                                                  "model_key": "demo"}
    doc = job.result["result"].to_json()
    assert list(doc["attacks"]) == ["loss", "mink"] and doc["members"] == 6
    assert metrics(at)["Blind baseline AUC"] == f"{doc['blind']['auc']:.3f}"
    saved = load_mia(job.result["path"])  # saved under the data folder, where the Report page finds it
    assert at.session_state["ssviz_mia_shown"] == str(job.result["path"]) and saved.attacks == doc["attacks"]
