"""The Unique features page: the bundled demo loads at once with the library's numbers, and a small run goes
on the spot through the app's job runner."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from ssviz.paths import SOURCE_ROOT as ROOT
from ssviz.unique_features import demo

PAGE = str(ROOT / "pages" / "unique_features.py")


@pytest.fixture(autouse=True)
def _private_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SSVIZ_DATA_DIR", str(tmp_path / "data"))


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_the_bundled_demo_is_small_and_loads_with_the_library_numbers():
    runs = demo.bundled_runs()
    assert list(runs) == list(demo.SETTINGS.values())
    assert sum(p.stat().st_size for p in demo.BUNDLED_DIR.rglob("*") if p.is_file()) < 400_000
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    first = runs[at.selectbox(key="ssviz_uf_source").value]
    s = first["summary"]
    assert metrics(at)["Seeds"] == str(s["seeds"])
    assert metrics(at)["UF ranked first"] == f"{s['uf_top']} of {s['seeds']}"
    assert metrics(at)["Mean M2 of the UF"] == f"{s['m2_mean']:.4f}"
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) >= 5  # images, the controls' histogram, seeds, regularizers, text
    hist = charts[1]
    marked = [t for t in hist["data"] if t.get("name") == "unique feature"]
    assert marked and marked[0]["x"][0] == pytest.approx(first["results"][0]["m2"])
    assert at.button(key="FormSubmitter:uf_form-Run") is not None
    text = demo.text_experiment()
    assert any(f"{text['name']} " in m.value for m in at.markdown)  # a context without and with the name


@pytest.mark.slow
def test_a_run_on_the_spot_finishes_and_is_shown(monkeypatch):
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 120.0)
    at = AppTest.from_file(PAGE, default_timeout=150).run()
    at.number_input(key="w_uf_seeds").set_value(1)
    at.number_input(key="w_uf_controls").set_value(5)
    at.number_input(key="w_uf_epochs").set_value(2)
    at.button(key="FormSubmitter:uf_form-Run").click().run()
    at.run()
    assert not at.exception, at.exception
    assert any("finished" in s.value for s in at.success), [e.value for e in at.error]
    assert at.selectbox(key="ssviz_uf_source").value == "the run you started"
    assert metrics(at)["Seeds"] == "1"
