"""The Report page's Build report button: the file `python -m ssviz report` writes, from what the session measured
(cached results reused, the rest measured as a job with Stop), redacted unless revealed."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest
from streamlit.testing.v1 import AppTest

from ssviz.demo import DEMO_CANARY, DEMO_CHECKPOINT, DEMO_CONTROL, load_demo_model
from ssviz.paths import SOURCE_ROOT as ROOT
from ssviz.templates import Template

APP = str(ROOT / "app.py")
PAGE = str(ROOT / "pages" / "report.py")
JOB = "ssviz_report_job"
HTML = "ssviz_report_html"
TEMPLATE, SECRET = DEMO_CANARY["template"], DEMO_CANARY["secret"]
SMALL = {"ssviz_exp_method": "sampled", "ssviz_exp_samples": 200, "ssviz_exp_seed": 0, "ssviz_ext_nodes": 2000}


@pytest.fixture(autouse=True)
def _runs_finish_before_the_page_draws(monkeypatch, tmp_path):
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 120.0)
    monkeypatch.setenv("SSVIZ_DATA_DIR", str(tmp_path / "data"))


def open_report(secret: str = SECRET, **state) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=300)
    for k, v in {**SMALL, "ssviz_secret": secret, **state}.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def build(at: AppTest) -> str:
    at.button(key="rep_build").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    return at.session_state[HTML]["html"]


def embedded(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="ssviz-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def library_numbers(secret: str) -> tuple:
    """What the library measures with the same settings as SMALL (python -m ssviz report's search)."""
    from ssviz import exposure
    from ssviz.extraction import shortest_path
    model, template = load_demo_model(), Template(TEMPLATE)
    exp = exposure.measure(model, template, secret, "sampled", samples=200, seed=0)
    ext = shortest_path(model, template, top_k=5, max_nodes=2000, batch_size=64)
    return exp, ext


def assert_no_raw_secret(html: str, *secrets: str) -> None:
    raw = html.encode("utf-8")
    for s in secrets:
        assert s.encode() not in raw, f"{s} is in the redacted report"
        assert Template(TEMPLATE).format(s).encode() not in raw


def test_build_report_measures_what_is_missing_and_shows_the_librarys_numbers():
    at = open_report()
    assert [i.value for i in at.info] == ["Press **Build report**: what is missing is measured first."]
    assert not at.get("download_button")
    html = build(at)
    data = embedded(html)
    exp, ext = library_numbers(SECRET)
    (shown,) = data["secrets"]
    assert {k: shown[k] for k in exp.to_json()} == json.loads(json.dumps(exp.to_json()))
    assert shown["extracted"] == (ext.complete and ext.found == SECRET)
    assert shown["verdict"] == ("extractable" if shown["extracted"] else shown["verdict"])
    assert shown["secret"] == "••••46" and data["reveal"] is False
    assert data["model"]["sha256"] == hashlib.sha256(DEMO_CHECKPOINT.read_bytes()).hexdigest()
    assert data["model"]["parameters"] == sum(p.numel() for p in load_demo_model().parameters())
    assert data["audit"] is None and data["defenses"] == 0 and data["study_rows"] == 0
    assert 'id="disclosure" class="redacted"' in html and "Secrets are redacted" in html
    assert_no_raw_secret(html, SECRET)
    (button,) = at.get("download_button")
    assert button.proto.label == "Download report (HTML)"
    (preview,) = at.get("iframe")  # the file itself, shown before anyone downloads it
    assert preview.proto.srcdoc == html


def test_the_file_has_the_same_numbers_as_python_m_ssviz_report(tmp_path):
    from ssviz.cli import main
    out = tmp_path / "cli.html"
    assert main(["report", "--checkpoint", str(DEMO_CHECKPOINT), "--template", TEMPLATE, "--secret", SECRET,
                 "--method", "sampled", "--samples", "200", "--seed", "0", "--max-nodes", "2000",
                 "--out", str(out), "--json"]) == 0
    cli = embedded(out.read_text(encoding="utf-8"))
    app = embedded(build(open_report()))
    assert app["secrets"] == cli["secrets"]
    assert app["model"]["sha256"] == cli["model"]["sha256"] and app["reveal"] == cli["reveal"]
    assert {k: app[k] for k in ("audit", "study_rows", "defenses")} == \
        {k: cli[k] for k in ("audit", "study_rows", "defenses")}


@pytest.mark.slow
@pytest.mark.parametrize("secret", [SECRET, DEMO_CONTROL])
def test_no_raw_secret_anywhere_in_a_redacted_report(secret):
    """The secret under test and the model's memorized canary (found by the search) are both redacted: in the
    verdict, the tables, the search's top fillers, the per-character strip and the rebuild command."""
    html = build(open_report(secret))
    assert_no_raw_secret(html, SECRET, DEMO_CONTROL)
    assert "python -m ssviz report --checkpoint" in html and "--secret &#x27;••" in html


def test_reveal_shows_secrets_says_so_first_and_does_not_measure_again(monkeypatch):
    at = open_report()
    build(at)
    import ssviz.exposure
    import ssviz.extraction

    def no(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(ssviz.exposure, "measure", no)
    monkeypatch.setattr(ssviz.extraction, "shortest_path", no)
    at.checkbox(key="w_rep_reveal").check().run()
    assert not at.exception and not at.error
    html = at.session_state[HTML]["html"]
    data = embedded(html)
    assert data["reveal"] is True and data["secrets"][0]["secret"] == SECRET
    assert 'id="disclosure" class="revealed"' in html and "shows secrets in full" in html
    assert Template(TEMPLATE).format(SECRET) in html or f"#1 {SECRET}" in html
    at.checkbox(key="w_rep_reveal").uncheck().run()
    assert_no_raw_secret(at.session_state[HTML]["html"], SECRET)


def test_results_measured_on_the_exposure_and_extraction_pages_are_reused(monkeypatch):
    from ui import cache
    at = AppTest.from_file(APP, default_timeout=300).run()
    for k, v in SMALL.items():
        at.session_state[k] = v
    at.switch_page("pages/exposure.py").run()
    at.button(key="exp_run").click().run()
    at.switch_page("pages/extraction.py").run()  # a 10^6 space is searched as the page opens
    assert not at.exception and not at.error
    results = at.session_state[cache.RESULTS]
    exp = next(v for k, v in results.items() if k[0] == "exposure")
    ext = next(v for k, v in results.items() if k[0] == "extraction")
    import ssviz.exposure
    import ssviz.extraction

    def no(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(ssviz.exposure, "measure", no)
    monkeypatch.setattr(ssviz.extraction, "shortest_path", no)
    at.switch_page("pages/report.py").run()
    assert "measured on the Exposure page" in " ".join(m.value for m in at.markdown)
    assert "search of the Extraction page" in " ".join(m.value for m in at.markdown)
    html = build(at)
    (shown,) = embedded(html)["secrets"]
    assert {k: shown[k] for k in exp.to_json()} == json.loads(json.dumps(exp.to_json()))
    assert shown["extracted"] == (ext.complete and ext.found == SECRET)
    assert f"{ext.nodes_expanded:,} nodes expanded" in html


def test_a_beam_search_is_not_taken_as_a_certified_extraction(monkeypatch):
    """Only an exact search (shortest path, brute force) may make a secret 'extractable'."""
    from ssviz.extraction.result import ExtractionResult
    from ui import cache
    at = open_report()
    fake = ExtractionResult("beam", SECRET, 1.0, [{"filler": SECRET, "log_perplexity": 1.0}], 5, 5, 0.1)
    at.session_state[cache.RESULTS] = {("extraction", "demo", TEMPLATE, (("algorithm", "beam"),)): fake}
    at.run()
    assert "shortest-path search when you build" in " ".join(m.value for m in at.markdown)


def test_the_audit_defenses_and_study_are_included_when_asked():
    from ssviz.audit import demo
    from ssviz.audit.run import load_audit
    from ssviz.defenses.compare import load_results
    from ssviz.paths import bundled
    from ssviz.store import BUNDLED_STUDY, Store
    folder = demo.BUNDLED_DIR / "dp-eps8"
    at = open_report(ssviz_audit_shown=str(folder))
    at.checkbox(key="w_rep_defenses").check()
    at.selectbox(key="w_rep_study").select(BUNDLED_STUDY).run()
    html = build(at)
    data = embedded(html)
    res = load_audit(folder)
    for k in ("auc", "epsilon_lower", "epsilon_claimed", "epsilon_claimed_per_canary", "canaries", "included"):
        assert data["audit"][k] == res[k]
    assert data["audit"]["tpr_at_fpr"] == res["tpr_at_fpr"]
    assert data["defenses"] == len(load_results(bundled("defenses/demo-results.json")))
    assert data["study_rows"] == len(Store(BUNDLED_STUDY, read_only=True).comparison())
    assert all(f'id="{s}"' in html for s in ("audit", "defenses", "study"))
    assert "--audit models/audit/dp-eps8" in html


def test_the_audit_can_be_left_out():
    at = open_report(ssviz_audit_shown=str(ROOT / "models" / "audit" / "plain"))
    at.checkbox(key="w_rep_audit").uncheck().run()
    assert embedded(build(at))["audit"] is None


def test_building_shows_the_apps_progress_panel_and_stops(monkeypatch):
    import ssviz.exposure
    from ssviz.errors import StoppedError
    from ui import jobs

    def slow(model, template, secret, method, *, samples, seed, progress, stop, **_):
        n = 0
        while not stop.is_set():
            n += 1
            progress(n, 10 ** 6)
            stop.wait(0.05)
        raise StoppedError("stopped by the user")

    monkeypatch.setattr(ssviz.exposure, "measure", slow)
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.2)
    at = open_report()
    at.button(key="rep_build").click().run()
    job = at.session_state[JOB]
    assert job.running and at.get("progress")
    at.button(key=f"stop_{JOB}").click().run()
    job.thread.join(30)
    at.run()
    assert not at.exception and job.stopped
    assert any("Stopped" in w.value for w in at.warning) and not at.error
    assert not at.get("download_button") and HTML not in at.session_state


def test_a_failure_while_measuring_is_one_line(monkeypatch):
    import ssviz.exposure
    from ssviz.errors import SpaceTooLargeError

    def boom(*a, **k):
        raise SpaceTooLargeError("far too many fillers " + "9" * 100_000)

    monkeypatch.setattr(ssviz.exposure, "measure", boom)
    at = open_report()
    at.button(key="rep_build").click().run()
    at.session_state[JOB].thread.join(30)
    at.run()
    assert len(at.error) == 1 and len(at.error[0].value) < 500 and not at.get("download_button")


def test_a_secret_that_does_not_fit_the_template_is_one_line():
    at = open_report(secret="12")
    assert not at.exception
    assert len(at.error) == 1 and not at.get("button")
