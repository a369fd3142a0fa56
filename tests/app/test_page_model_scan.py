"""The Model & corpus page's scan: the secrets already in the corpus, measured in the current model."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.test_app import APP

SSN = "078-05-1120"
CORPUS = (f"Hello, my ssn is {SSN} as you asked.\n" * 2 + "key AKIAIOSFODNN7EXAMPLE\n"
          + "Plain prose without any number at all, repeated for length.\n" * 40).encode()


@pytest.fixture
def small_scan(monkeypatch):
    """Keep the per-secret measurement tiny: the page's own budgets are for the real demo."""
    import ssviz.scan as measure
    real = measure.scan_corpus
    monkeypatch.setattr(measure, "scan_corpus",
                        lambda model, text, **kw: real(model, text, **{**kw, "samples": 100, "search_nodes": 300,
                                                                         "extraction_nodes": 300}))


@pytest.mark.slow
def test_the_scan_measures_found_secrets_and_never_shows_them(small_scan):
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/model.py").run()
    at.file_uploader(key="w_corpus_upload").upload("mail.txt", CORPUS).run()
    assert not at.exception and not at.error
    assert any("2 distinct secret(s) found" in c.value for c in at.caption)
    at.button(key="scan_run").click().run()
    job = at.session_state["ssviz_scan_job"]
    job.thread.join(timeout=120)
    at.run()
    assert not at.exception and not at.error
    df = at.dataframe[-1].value
    assert sorted(df["last 4"]) == ["…120", "…MPLE"]
    shown = " ".join(str(v) for v in df.to_numpy().ravel())
    assert "078-05" not in shown and "07805" not in shown and "AKIAIOSFODNN7EXAMPLE" not in shown
    ssn = df[df["type"] == "SSN"].iloc[0]
    assert ssn["exposure (bits)"] is not None and ssn["method"] in ("search", "skewnorm")


def test_a_corpus_without_secrets_says_so():
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/model.py").run()
    at.file_uploader(key="w_corpus_upload").upload("plain.txt", b"nothing secret here at all.\n" * 20).run()
    assert not at.exception
    assert any("found no" in i.value for i in at.info)
