"""The Defenses page renders bundled results, trains in a worker thread, shows sweeps; never a traceback."""

from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from ssviz import sweeps
from ssviz.defenses import compare
from ssviz.errors import SsvizError
from ssviz.paths import SOURCE_ROOT as ROOT
from ssviz.records import DefenseEpoch, DefenseResult

PAGE = str(ROOT / "pages" / "defenses.py")


def fake_record(defense="dropout", strength="0.3", **_):
    return DefenseResult(defense=defense, strength=strength, epsilon=None, exposure=7.25, exposure_method="exact",
                         test_loss=2.5, seconds=0.1, epochs=(DefenseEpoch(1, train_loss=3.0, val_loss=3.1,
                                                                          exposure=7.25),))


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


def test_every_chart_goes_through_the_apps_chart_helper(monkeypatch, tmp_path):
    """The helper applies presenter styling and puts a figure download under each chart."""
    from ui import widgets
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    drawn = []
    real = widgets.chart
    monkeypatch.setattr(widgets, "chart", lambda fig, name, key=None: drawn.append(name) or real(fig, name, key))
    at = run_page()
    assert len(drawn) == len(at.get("plotly_chart")) >= 3  # comparison, dynamics, the bundled sweep
    assert sum(b.label == "Download figure (HTML)" for b in at.get("download_button")) == len(drawn)
    assert "st.plotly_chart" not in (ROOT / "pages" / "defenses.py").read_text(encoding="utf-8")


def test_a_malformed_results_file_is_a_message_not_a_traceback(monkeypatch, tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps([{"defense": "none", "strength": "-"}]))
    real = compare.load_results
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    monkeypatch.setattr(compare, "load_results", lambda path: real(bad))
    at = run_page()
    assert not at.error
    assert any("No bundled results" in i.value and "record 0: lacks epsilon" in i.value for i in at.info)


@pytest.mark.slow
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
    # kept as the results file's records: the Report page adds them to its defenses section as such
    assert at.session_state["def_results"] == [fake_record("dropout", "0.1").to_json()]
    runs = at.selectbox(key="def_dyn")
    assert runs.options[-1] == "Dropout 0.1 (trained here)"
    runs.select_index(len(runs.options) - 1).run()
    assert not at.exception and "No per-epoch history" not in [i.value for i in at.info]


@pytest.mark.slow
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


@pytest.mark.slow  # trains two tiny models
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


@pytest.mark.slow
def test_training_on_the_spot_shows_the_apps_one_panel_with_a_live_chart_and_stops(monkeypatch, tmp_path):
    from ui import jobs

    def slow_defense(text, canary, base, defense, strength, *, on_epoch, on_batch, stop, **_):
        epoch = 0
        while not stop.is_set():
            epoch += 1
            for b in range(1, 11):
                on_batch(b, 10, 2.0)
            on_epoch({"epoch": epoch, "train_loss": 2.0, "val_loss": 2.1, "exposure": 3.0})
            stop.wait(0.05)
        from ssviz.errors import StoppedError
        raise StoppedError("stopped by the user")

    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    monkeypatch.setattr(compare, "run_defense", slow_defense)
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.2)
    at = run_page()
    at.button(key="def_train").click().run()
    assert not at.exception
    job = at.session_state["def_job"]
    assert job.running and at.get("progress")
    deadline = time.monotonic() + 30
    while len(job.records) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()  # the panel (a fragment on a timer in the browser) redraws with the epochs so far
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]
    assert "No defense -" in titles  # the live chart of the running job, under its progress bar
    at.button(key="stop_def_job").click().run()
    wait_for_job(at)
    assert job.stopped
    assert any("stopped" in w.value for w in at.warning) and not at.error
    assert "trained here" not in set(at.dataframe[0].value["source"])  # a stopped run adds no point


@pytest.mark.slow
def test_the_papers_table_comes_from_the_library(monkeypatch, tmp_path):
    from ssviz.defenses import paper
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    at = run_page()
    shown = next(df.value for df in at.dataframe if "epsilon" in df.value and "model" in df.value)
    assert shown.equals(paper.table7())
    source = (ROOT / "pages" / "defenses.py").read_text(encoding="utf-8")
    assert "31.0" not in source and "RMSProp" not in source  # no copy of the paper's numbers in the page


def test_paper_table7_is_the_published_one():
    from ssviz.defenses import paper
    df = paper.table7()
    assert list(df.columns) == ["model", "epsilon", "test loss", "exposure"] and len(df) == 9
    no_dp = df[df["model"] == "No DP, RMSProp"].iloc[0]
    assert (no_dp["test loss"], no_dp["exposure"]) == (1.17, 31.0)  # memorization without DP
    assert df[df["model"].str.startswith("DP")]["exposure"].max() < 4  # DP keeps exposure near chance


def test_a_bug_on_the_defenses_page_is_folded_away_like_on_every_page(monkeypatch, tmp_path):
    def broken(path):
        raise KeyError("exposure")
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    monkeypatch.setattr(compare, "load_results", broken)
    at = run_page()
    assert not at.exception
    assert len(at.error) == 1 and "KeyError" in at.error[0].value and "report" in at.error[0].value
    assert at.expander and at.expander[-1].label == "Details for a bug report"


@pytest.mark.slow
def test_a_huge_error_from_a_run_is_one_short_line(monkeypatch, tmp_path):
    def boom(*a, **k):
        raise SsvizError("bad " + "x" * 1_000_000)
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    monkeypatch.setattr(compare, "run_defense", boom)
    at = run_page()
    at.button(key="def_train").click().run()
    wait_for_job(at)
    assert len(at.error) == 1 and len(at.error[0].value) < 500


@pytest.mark.slow
def test_page_opens_an_exposure_curve(monkeypatch, tmp_path):
    from ssviz.plots.defenses import exposure_during_training
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    records = [{"step": s, "epoch": s / 10, "name": n, "exposure": e, "rank": 2 ** (10 - e), "space_size": 1024}
               for s in (10, 20) for n, e in (("pin", 3.0 + s / 10), ("ssn", 1.0))]
    fig = exposure_during_training(records)
    assert [t.name for t in fig.data] == ["pin", "ssn"] and list(fig.data[0].y) == [4.0, 5.0]
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["def_curve_data"] = json.dumps({"records": records}).encode()
    at.run()
    assert not at.exception, at.exception
    assert "Exposure during training" in [h.value for h in at.subheader]
    table = next(d.value for d in at.dataframe if "canary" in d.value.columns)
    assert list(table["canary"]) == ["pin", "ssn"] and list(table["exposure (bits)"]) == [5.0, 1.0]
    at.session_state["def_curve_data"] = b"not json"
    at.run()
    assert not at.exception and any("not an exposure curve" in e.value for e in at.error)
