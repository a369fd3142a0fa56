"""The Streamlit app driven headless with AppTest, page by page, on the bundled demo."""

from __future__ import annotations

import io
import json
import math
import pickle
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from ssviz import exposure
from ssviz.demo import DEMO_CANARY, DEMO_CONTROL, DEMO_CORPUS, load_demo_model
from ssviz.models import CharRNN, checkpoint_bytes
from ssviz.store import BUNDLED_STUDY, Store
from ssviz.templates import Template

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = ["home", "model", "template", "exposure", "extraction", "comparison"]


@pytest.fixture(autouse=True)
def _runs_finish_before_the_page_draws(monkeypatch):
    """Exposure and extraction run in worker threads; the page waits this long before showing progress,
    so in tests a short run is drawn in the same script run (the Stop tests set it to 0)."""
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 120.0)


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_on_the_demo_without_errors(page):
    at = open_page(page)
    assert not at.error, [e.value for e in at.error]
    assert at.title and at.title[0].value


def test_model_page_summarizes_the_demo():
    at = open_page("model")
    model = load_demo_model()
    assert metric(at, "Parameters") == f"{sum(p.numel() for p in model.parameters()):,}"
    assert metric(at, "Vocabulary") == f"{len(model.vocab)} chars"
    assert metric(at, "Characters") == f"{len(DEMO_CORPUS.read_text(encoding='utf-8')):,}"


class _Evil:
    """Unpickling this would create the marker file (standing in for arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["pickle", "torch-pickle", "random"])
def test_a_malicious_or_random_checkpoint_is_refused_and_nothing_runs(tmp_path, kind):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Evil(control)))  # the payload is real: plain unpickling runs it
    assert control.exists()
    marker = tmp_path / "pwned"
    if kind == "pickle":
        data = pickle.dumps({"config": {}, "state_dict": _Evil(marker)}, protocol=4)
    elif kind == "torch-pickle":
        buf = io.BytesIO()
        torch.save({"config": {}, "state_dict": _Evil(marker)}, buf)
        data = buf.getvalue()
    else:
        data = bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist())
    assert not marker.exists()
    at = open_page("model")
    at.file_uploader(key="w_checkpoint_upload").upload("evil.pt", data).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and "evil.pt" in errors[0]
    assert ("refused" in errors[0]) if kind != "random" else ("not a checkpoint" in errors[0])
    assert not marker.exists()
    assert at.session_state["ssviz_model"] == "demo"  # the demo stays selected
    assert metric(at, "Layers x units") == "2 x 200"


def test_a_valid_upload_becomes_the_current_model_with_its_canary():
    torch.manual_seed(0)
    model = CharRNN(list(" 0123456789MPINTehimsy"), embedding_dim=4, hidden_size=8, num_layers=1).eval()
    extra = {"training": {"canary": {"template": "My PIN is {d:4}", "secret": "4821", "insertions": 3}}}
    at = open_page("model")
    at.file_uploader(key="w_checkpoint_upload").upload("tiny.safetensors", checkpoint_bytes(model, extra)).run()
    assert not at.exception and not at.error
    assert metric(at, "Layers x units") == "1 x 8"
    assert metric(at, "Parameters") == f"{sum(p.numel() for p in model.parameters()):,}"
    assert at.session_state["ssviz_template"] == "My PIN is {d:4}"
    assert at.session_state["ssviz_secret"] == "4821"
    # the demo corpus has characters this tiny vocabulary lacks: flagged, not an error
    assert any("outside the current model's vocabulary" in w.value for w in at.warning)


def test_a_binary_corpus_upload_shows_an_error():
    at = open_page("model")
    at.file_uploader(key="w_corpus_upload").upload("corpus.txt", b"\xff\xfe\x00bin" * 50).run()
    assert not at.exception
    assert any("corpus.txt" in e.value and "UTF-8" in e.value for e in at.error)


def test_invalid_template_shows_an_error_not_an_exception():
    at = open_page("template")
    at.text_input(key="w_ssviz_template").input("My code is {q:3}").run()
    assert not at.exception
    assert any("Invalid template" in e.value and "{q:3}" in e.value for e in at.error)


def test_preset_sets_the_space_and_keeps_state_across_pages():
    at = open_page("template")
    at.selectbox(key="w_preset").select("SSN").run()
    assert not at.exception and not at.error
    assert metric(at, "|R| (possible fillers)") == f"{10 ** 9:,}"
    assert metric(at, "log2 |R| (max exposure)") == f"{math.log2(10 ** 9):.2f} bits"
    at.switch_page("pages/exposure.py").run()
    assert not at.exception
    assert at.session_state["ssviz_template"] == "My SSN is {d:3}-{d:2}-{d:4}"
    assert any("My SSN is" in c.value for c in at.caption)
    at.switch_page("pages/extraction.py").run()  # 10^9 fillers: waits for a click instead of searching
    assert not at.exception and not at.error and not at.metric
    assert any("press **Search**" in i.value for i in at.info)


def test_exposure_shown_equals_the_library_measurement():
    at = open_page("exposure")
    at.selectbox(key="w_exp_method").select("sampled").run()
    at.select_slider(key="w_exp_samples").set_value(200).run()
    at.button(key="exp_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    template = Template(DEMO_CANARY["template"])
    ref = exposure.measure(load_demo_model(), template, DEMO_CANARY["secret"], "sampled", samples=200, seed=0)
    assert metric(at, "Exposure") == f"{ref.exposure:.2f} bits"
    assert metric(at, "95% CI") == f"{ref.ci[0]:.2f} – {ref.ci[1]:.2f}"
    assert metric(at, "Log-perplexity") == f"{ref.log_perplexity:.2f} bits"
    control = exposure.measure(load_demo_model(), template, DEMO_CONTROL, "sampled", samples=200, seed=0)
    table = at.dataframe[0].value.set_index("label")
    assert table.loc[DEMO_CONTROL, "exposure"] == pytest.approx(control.exposure, abs=1e-3)
    assert table.loc[DEMO_CANARY["secret"], "exposure"] > table.loc[DEMO_CONTROL, "exposure"]
    hist = next(s for s in plotly_specs(at) if any(t.get("name") == "random fillers" for t in s["data"]))
    bars = next(t for t in hist["data"] if t["name"] == "random fillers")
    assert sum(_values(bars["y"])) == 200
    secret_line = next(t for t in hist["data"] if t.get("name") == DEMO_CANARY["secret"])
    assert _values(secret_line["x"])[0] == pytest.approx(ref.log_perplexity)


def _values(v):
    """Plotly serializes numpy arrays as {"dtype", "bdata"} (base64) or plain lists."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def _current_nodes(at: AppTest) -> list[str]:
    spec = next(s for s in plotly_specs(at) if "step" in (s["layout"].get("title", {}).get("text") or ""))
    trace = next(t for t in spec["data"] if t.get("name") == "expanded at this step")
    return [c[0] for c in trace["customdata"]]


def test_trace_slider_moves_the_highlighted_node():
    at = open_page("extraction")
    assert not at.error
    assert metric(at, "Best filler") == DEMO_CANARY["secret"]  # the demo canary is extracted
    assert _current_nodes(at) == ["(root)"]
    at.slider(key="w_trace_step").set_value(2).run()
    step2 = _current_nodes(at)
    assert step2 and all(len(n) >= 1 for n in step2) and step2 != ["(root)"]
    at.button(key="trace_next").click().run()
    assert at.slider(key="w_trace_step").value == 3
    step3 = _current_nodes(at)
    assert step3 != step2
    at.button(key="trace_prev").click().run()
    assert _current_nodes(at) == step2


def test_comparison_page_shows_the_bundled_study():
    df = Store(BUNDLED_STUDY, read_only=True).comparison()
    at = open_page("comparison")
    assert metric(at, "Secrets") == str(len(df))
    assert metric(at, "Extracted") == f"{int(df['extracted'].sum())} of {len(df)}"
    assert len(at.dataframe[0].value) == len(df)


def test_comparison_page_has_an_honest_empty_state(tmp_path):
    at = open_page("comparison")
    at.selectbox(key="w_cmp_store").select("other").run()
    at.text_input(key="w_cmp_path").input("data/no-such-results-file.duckdb").run()
    assert not at.exception and not at.error
    assert any("No per-user results" in i.value for i in at.info)


@pytest.mark.parametrize("where", ["outside", "escape", "not-duckdb"])
def test_comparison_page_reads_only_results_files_under_data_or_models(tmp_path, where):
    outside = tmp_path / "results.duckdb"
    outside.write_bytes(BUNDLED_STUDY.read_bytes())  # a real results file, but outside the allowed folders
    typed = {"outside": str(outside), "escape": f"data/../../../../../../{outside}",
             "not-duckdb": "models/demo-lstm.safetensors"}[where]
    at = open_page("comparison")
    at.selectbox(key="w_cmp_store").select("other").run()
    at.text_input(key="w_cmp_path").input(typed).run()
    assert not at.exception
    assert len(at.error) == 1 and ("data/ or models/" in at.error[0].value or ".duckdb" in at.error[0].value)
    assert not at.metric and not at.dataframe


def test_comparison_page_shows_an_uploaded_results_file():
    df = Store(BUNDLED_STUDY, read_only=True).comparison()
    at = open_page("comparison")
    at.selectbox(key="w_cmp_store").select("upload").run()
    assert any("upload" in i.value for i in at.info)
    at.file_uploader(key="w_cmp_upload").upload("study.duckdb", BUNDLED_STUDY.read_bytes()).run()
    assert not at.exception and not at.error
    assert metric(at, "Secrets") == str(len(df))


def by_label(widgets, label: str):
    return next(w for w in widgets if w.label == label)


def test_training_runs_in_a_worker_and_the_result_becomes_selectable(tmp_path, monkeypatch):
    from ui import state
    monkeypatch.setattr(state, "TRAINED_DIR", tmp_path)
    at = open_page("model")
    by_label(at.selectbox, "Units").set_value(64)
    by_label(at.number_input, "Epochs").set_value(1)
    by_label(at.select_slider, "Corpus characters used").set_value(20_000)
    by_label(at.text_input, "Canary template").set_value("My PIN is {d:4}")
    by_label(at.text_input, "Canary filler").set_value("4821")
    by_label(at.button, "Train").click().run()
    assert not at.exception and not at.error
    job = at.session_state["ssviz_training_job"]
    job.thread.join(timeout=120)
    assert not job.running and job.error is None, job.error
    at.run()
    assert not at.exception
    assert len(job.records) == 1 and job.records[0]["exposure_method"] == "exact"
    assert Path(job.result["path"]).parent == tmp_path
    at.button(key="use_trained").click().run()
    assert not at.exception
    assert metric(at, "Layers x units") == "1 x 64"
    assert at.session_state["ssviz_template"] == "My PIN is {d:4}"
    assert at.session_state["ssviz_secret"] == "4821"


def _page_that_fails(root: str, kind: str):
    import sys
    sys.path.insert(0, root)
    from ssviz.errors import TemplateError
    from ui.widgets import mark_navigation, run_page

    def body():
        if kind == "user":
            raise TemplateError("bad slot '{q:3}'")
        raise KeyError("a bug")

    mark_navigation()
    run_page(body)


@pytest.mark.parametrize("kind", ["user", "bug"])
def test_page_errors_become_messages_never_tracebacks(kind):
    at = AppTest.from_function(_page_that_fails, args=(str(Path(APP).parent), kind), default_timeout=30).run()
    assert not at.exception
    assert len(at.error) == 1
    if kind == "user":
        assert at.error[0].value == "bad slot '{q:3}'" and not at.expander
    else:
        assert "KeyError" in at.error[0].value and "report" in at.error[0].value
        assert at.expander and at.expander[0].label == "Details for a bug report"


def test_a_page_run_on_its_own_retries_navigation_once_then_renders():
    at = AppTest.from_file(str(Path(APP).parent / "pages" / "template.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title and at.title[0].value == "Secret template"


def _count_comparison_searches(monkeypatch, max_nodes: int | None = None) -> list[dict]:
    """Record (and optionally starve) the extraction page's shortest-path comparison runs (top_k=5)."""
    import ssviz.extraction as extraction
    calls, real = [], extraction.extract

    def spy(model, template, algorithm="dijkstra", **options):
        if algorithm == "dijkstra" and options.get("top_k") == 5:
            calls.append({"template": template.text, **options})
            if max_nodes:
                options["max_nodes"] = max_nodes
        return real(model, template, algorithm, **options)

    monkeypatch.setattr(extraction, "extract", spy)
    return calls


def test_comparison_shortest_path_is_not_rerun_when_only_the_beam_width_moves(monkeypatch):
    calls = _count_comparison_searches(monkeypatch)
    at = open_page("extraction")
    assert len(calls) == 1
    at.select_slider(key="w_ext_cmp_beam").set_value(1).run()
    at.select_slider(key="w_ext_cmp_beam").set_value(5).run()
    assert not at.exception and not at.error
    assert len(calls) == 1  # the beam width changed, the shortest-path result did not


def test_one_click_shows_a_case_where_beam_search_misses():
    at = open_page("extraction")
    assert not any("missed" in w.value for w in at.warning)  # the demo canary: both searches find it
    at.button(key="cmp_miss_case").click().run()
    assert not at.exception and not at.error
    assert at.select_slider(key="w_ext_cmp_beam").value == 1
    miss = [w.value for w in at.warning if "missed the most likely filler" in w.value]
    assert miss and "`1000` (53.31 bits)" in miss[0] and "`0000` (58.70 bits)" in miss[0]
    at.button(key="cmp_back").click().run()
    assert not any("missed" in w.value for w in at.warning)


def test_an_incomplete_shortest_path_makes_the_comparison_inconclusive_not_a_miss(monkeypatch):
    _count_comparison_searches(monkeypatch, max_nodes=3)
    at = open_page("extraction")
    at.button(key="cmp_miss_case").click().run()
    assert not at.exception and not at.error
    assert not any("missed" in w.value for w in at.warning)
    assert any(i.value.startswith("Inconclusive") for i in at.info)


def test_compared_fillers_that_no_longer_fit_are_dropped_when_the_template_changes():
    at = open_page("exposure")
    assert at.session_state["ssviz_extra_secrets"] == [DEMO_CONTROL]
    at.switch_page("pages/template.py").run()
    at.selectbox(key="w_preset").select("PIN").run()
    assert not at.exception and not at.error
    assert at.session_state["ssviz_extra_secrets"] == []  # the 6-digit control does not fit a PIN
    at.switch_page("pages/exposure.py").run()
    at.button(key="exp_run").click().run()
    assert not at.exception and not at.error
    assert not [w.value for w in at.warning if "730912" in w.value]
    assert at.text_input(key="w_exp_others").value == ""
    # a filler that still fits the new template is kept
    at.text_input(key="w_exp_others").input("1234").run()
    at.switch_page("pages/template.py").run()
    at.text_input(key="w_ssviz_template").input("Your PIN is {d:4}").run()
    assert at.session_state["ssviz_extra_secrets"] == ["1234"]


def _stop_the_running_job(at: AppTest, slot: str):
    """Press the page's Stop button, let the worker notice, and redraw the page."""
    job = at.session_state[slot]
    assert job.running
    at.button(key=f"stop_{slot}").click().run()
    assert job.stop.is_set()
    job.thread.join(timeout=60)
    assert not job.running
    at.run()
    assert not at.exception
    return job


def test_a_long_exposure_run_shows_progress_and_stops_on_click(monkeypatch):
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.0)
    at = open_page("exposure")
    at.selectbox(key="w_exp_method").select("exact").run()  # 10^6 fillers: many seconds
    at.button(key="exp_run").click().run()
    assert not at.exception and not at.error
    assert at.get("progress") and not at.metric
    job = _stop_the_running_job(at, "ssviz_exposure_job")
    assert job.stopped and job.result is None
    assert any(w.value.startswith("Stopped") for w in at.warning)
    assert not at.metric and not at.info  # neither a result nor the "press Measure" prompt


def test_a_long_extraction_run_shows_progress_and_stops_on_click(monkeypatch):
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.0)
    at = open_page("template")
    at.selectbox(key="w_preset").select("SSN").run()
    at.switch_page("pages/extraction.py").run()
    at.select_slider(key="w_ext_nodes").set_value(1_000_000).run()
    at.button(key="ext_run").click().run()
    assert not at.exception and not at.error and not at.metric
    assert at.get("progress")
    job = _stop_the_running_job(at, "ssviz_extraction_job")
    assert job.result is not None and not job.result.complete
    assert any("stopped by the user" in w.value for w in at.warning)  # the partial result is shown
    at.run()
    assert at.session_state["ssviz_extraction_job"] is job  # a stopped run is not restarted by itself
    assert any("Run the comparison" in i.value for i in at.info)  # 10^9 fillers: the comparison waits too
