"""The Long tail page on its bundled demo pool: the numbers it shows are the library's, texts holding secrets
are redacted, the verbatim section reads a verbatim.csv by the contract (or says there is none), and a small
pool runs on the spot through the app's job runner."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from ssviz.longtail import demo
from ssviz.longtail.counterfactual import load_pool, memorization_table
from ssviz.paths import SOURCE_ROOT as ROOT

PAGE = str(ROOT / "pages" / "longtail.py")
JOB = "ssviz_longtail_job"


@pytest.fixture(autouse=True)
def _private_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SSVIZ_DATA_DIR", str(tmp_path / "data"))


def open_page(timeout=120) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=timeout).run()
    assert not at.exception, at.exception
    return at


def test_demo_pool_loads_with_the_library_numbers():
    at = open_page()
    metrics = {m.label: m.value for m in at.metric}
    mem = memorization_table(load_pool(demo.DEMO_DIR))
    roles = json.loads((demo.DEMO_DIR / "roles.json").read_text())
    novel = [int(k) for k, v in roles.items() if v == "novel"]
    assert metrics["Models"] == str(demo.MODELS)
    assert metrics["Planted novel lines"] == f"{mem.set_index('example').loc[novel, 'mem_accuracy'].mean():+.3f}"
    assert metrics["Mean memorization"] == f"{mem['mem_accuracy'].mean():+.3f}"
    shown = at.dataframe[0].value
    top = mem.sort_values("mem_accuracy", ascending=False).head(len(shown))
    assert shown["example"].tolist() == top["example"].tolist()
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) >= 2  # the distribution and memorization against novelty
    md = " ".join(m.value for m in at.markdown)
    assert "ZEBRA" in md  # the top influence pair: a novel line beside its near copy
    assert any("verbatim" in i.value.lower() for i in at.info) or len(charts) >= 3
    chips = [h.proto.body for h in at.get("html")]
    assert any("bits" in c and "background:rgb(" in c for c in chips)  # the unit view of the top example
    at.radio(key="w_lt_metric").set_value("mem_log_likelihood").run()
    assert not at.exception
    assert at.metric[1].value == f"{mem['mem_log_likelihood'].mean():+.3f}"


def values(v) -> list:
    """A plotly trace's array as a list (plotly encodes numpy arrays as typed base64)."""
    if isinstance(v, dict) and "bdata" in v:
        import base64
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def test_secrets_are_redacted_and_verbatim_csv_is_drawn(tmp_path):
    pool = tmp_path / "data" / "longtail" / "pool-x"
    shutil.copytree(demo.DEMO_DIR, pool)
    mem = pd.read_csv(pool / "memorization.csv")
    top = mem["mem_accuracy"].idxmax()
    mem.loc[top, "text"] = "my ssn is 078-05-1120 ok"
    mem.to_csv(pool / "memorization.csv", index=False)
    pd.DataFrame({"line": range(6), "duplicates": [1, 1, 2, 2, 8, 8],
                  "extractable": [False, False, False, True, True, True],
                  "match_fraction": [0.1, 0.2, 0.4, 1.0, 1.0, 1.0], "log_p_suffix": -np.arange(6.0)}
                 ).to_csv(pool / "verbatim.csv", index=False)
    at = open_page()
    at.selectbox(key="w_lt_source").set_value(str(pool)).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert shown["text"].iloc[0] == "my ssn is •••••120 ok"
    assert "1120" not in at.selectbox(key="w_lt_example").format_func(at.selectbox(key="w_lt_example").value)
    assert any("holds a secret" in i.value for i in at.info)  # no per-unit view of a secret's text
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    curve = next(c for c in charts if c["layout"]["xaxis"]["title"]["text"].startswith("copies"))
    assert values(curve["data"][0]["y"]) == [0.0, 0.5, 1.0]
    assert values(curve["data"][1]["y"]) == pytest.approx([0.15, 0.7, 1.0])
    at.toggle(key="w_lt_reveal").set_value(True).run()
    assert at.dataframe[0].value["text"].iloc[0] == "my ssn is 078-05-1120 ok"


@pytest.mark.slow
def test_a_small_pool_runs_on_the_spot_with_progress():
    at = open_page()
    at.select_slider(key="w_lt_models").set_value(4)
    at.select_slider(key="w_lt_epochs").set_value(2)
    submit = next(b for b in at.button if b.label == "Run pool")
    submit.click().run()
    job = at.session_state[JOB]
    assert job.wait(240), "the pool did not finish"
    assert job.error is None, job.error
    at.run()
    assert not at.exception
    assert at.metric[0].value == "4"
    assert (job.result["path"] / "memorization.csv").is_file()


def test_the_report_page_offers_the_pool_shown_last():
    at = AppTest.from_file(str(ROOT / "pages" / "report.py"), default_timeout=120)
    at.session_state["ssviz_longtail_shown"] = str(demo.DEMO_DIR)
    at.run()
    assert not at.exception, at.exception
    assert at.checkbox(key="w_rep_longtail").value is True
