"""The Defenses page renders bundled results, trains in a worker thread, shows sweeps; never a traceback."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

import ssviz.defenses.compare as compare
import ssviz.sweeps as sweeps
from ssviz.paths import SOURCE_ROOT as ROOT
from ssviz.errors import SsvizError

PAGE = str(ROOT / "pages" / "defenses.py")


def fake_record(defense="dropout", strength="0.3", **_):
    return {"defense": defense, "strength": strength, "epsilon": None, "exposure": 7.25, "exposure_method": "exact",
            "test_loss": 2.5, "seconds": 0.1, "epochs": [{"epoch": 1, "train_loss": 3.0, "val_loss": 3.1,
                                                           "exposure": 7.25}], "details": {}}


def run_page(timeout=60) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=timeout)
    at.run()
    assert not at.exception, at.exception
    return at


def wait_for_job(at: AppTest) -> None:
    job = at.session_state["def_job"]
    job.thread.join(timeout=30)
    assert not job.running
    at.run()
    at.run()  # the finished job's result is moved into the results on the next run
    assert not at.exception, at.exception


def test_page_shows_bundled_results_and_paper_table(monkeypatch, tmp_path):
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    at = run_page()
    assert at.title[0].value == "Defenses"
    assert len(at.get("plotly_chart")) >= 2  # comparison chart + training dynamics
    table = at.dataframe[0].value
    assert "No defense" in set(table["defense"]) and "DP-SGD (Opacus)" in set(table["defense"])


def test_training_on_the_spot_adds_a_point(monkeypatch, tmp_path):
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    monkeypatch.setattr(compare, "run_defense", lambda *a, **k: fake_record(a[3], a[4]))
    at = run_page()
    at.selectbox(key="def_defense").set_value("dropout").run()
    at.button(key="def_train").click().run()
    wait_for_job(at)
    table = at.dataframe[0].value
    mine = table[table["source"] == "trained here"]
    assert list(mine["exposure (bits)"]) == [7.25] and list(mine["defense"]) == ["Dropout"]


def test_a_failing_run_shows_a_message_not_a_traceback(monkeypatch, tmp_path):
    def boom(*a, **k):
        raise SsvizError("corpus too short for the sequence length")
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    monkeypatch.setattr(compare, "run_defense", boom)
    at = run_page()
    at.button(key="def_train").click().run()
    wait_for_job(at)
    # a failed run is an error like on every page (a run the user stopped is a warning)
    assert [e.value for e in at.error if "too short" in e.value] == \
        ["No defense -: corpus too short for the sequence length"]


def test_sweep_section_reads_a_database(monkeypatch, tmp_path, small_corpus):
    from ssviz.templates import Template
    from ssviz.train import Canary, TrainConfig
    db = tmp_path / "sweeps.duckdb"
    sweeps.run_sweep(small_corpus[:3000], Canary(Template("PIN {d:2}"), "42", 2),
                     TrainConfig(layers=1, hidden=8, embedding_dim=8, epochs=1, batch_size=32, patience=None),
                     {"hidden": [8, 12]}, seeds=1, db=db)
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", db)
    at = run_page()
    assert any(len(df.value) == 2 and "exposure_mean" in df.value for df in at.dataframe)
    at.radio(key="def_metric").set_value("test_loss").run()
    assert not at.exception
