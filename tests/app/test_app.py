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
from ssviz.paths import SOURCE_ROOT
from ssviz.store import BUNDLED_STUDY, Store
from ssviz.templates import MAX_TEMPLATE_CHARS, Template

APP = str(SOURCE_ROOT / "app.py")
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def measure_sampled(at: AppTest, samples: int) -> None:
    """On the Exposure page: sampled exposure over ``samples`` fillers, measured without an error."""
    at.selectbox(key="w_exp_method").select("sampled").run()
    at.select_slider(key="w_exp_samples").set_value(samples).run()
    at.button(key="exp_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def test_exposure_shown_equals_the_library_measurement():
    at = open_page("exposure")
    measure_sampled(at, 200)
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def train_on_the_model_page(tmp_path, monkeypatch, arch: str, template: str, filler: str):
    """One epoch of training from the Model page's form on 20,000 characters; the page and its ended job."""
    from ui import state
    monkeypatch.setattr(state, "TRAINED_DIR", tmp_path)
    at = open_page("model")
    by_label(at.selectbox, "Architecture").set_value(arch)
    by_label(at.selectbox, "Units (width)").set_value(64)
    by_label(at.number_input, "Epochs").set_value(1)
    by_label(at.select_slider, "Corpus characters used").set_value(20_000)
    by_label(at.text_input, "Canary template").set_value(template)
    by_label(at.text_input, "Canary filler").set_value(filler)
    by_label(at.button, "Train").click().run()
    assert not at.exception and not at.error
    job = at.session_state["ssviz_training_job"]
    job.thread.join(timeout=300)
    assert not job.running and job.error is None, job.error
    at.run()
    assert not at.exception
    return at, job


@pytest.mark.slow
def test_training_runs_in_a_worker_and_the_result_becomes_selectable(tmp_path, monkeypatch):
    at, job = train_on_the_model_page(tmp_path, monkeypatch, "lstm", "My PIN is {d:4}", "4821")
    assert len(job.records) == 1 and job.records[0]["exposure_method"] == "exact"
    assert Path(job.result["path"]).parent == tmp_path
    at.button(key="use_trained").click().run()
    assert not at.exception
    assert metric(at, "Layers x units") == "1 x 64"
    assert at.session_state["ssviz_template"] == "My PIN is {d:4}"
    assert at.session_state["ssviz_secret"] == "4821"


@pytest.mark.slow
def test_the_app_trains_a_transformer_as_it_trains_an_lstm(tmp_path, monkeypatch):
    at, job = train_on_the_model_page(tmp_path, monkeypatch, "llama", "My PIN is {d:3}", "482")
    folder = Path(job.result["path"])
    assert folder.parent == tmp_path and (folder / "config.json").is_file() and job.records[0]["exposure"] is not None
    at.button(key="use_trained").click().run()
    assert not at.exception
    assert metric(at, "Blocks x width") == "2 x 64" and metric(at, "Architecture") == "LLAMA"


def _page_that_fails(kind: str):
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
    at = AppTest.from_function(_page_that_fails, args=(kind,), default_timeout=30).run()
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


@pytest.mark.slow
def test_a_long_exposure_run_shows_progress_and_stops_on_click(monkeypatch):
    from ssviz import scoring
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.0)
    real = scoring.TrieScorer.score_rows

    def slow(*a, **kw):  # the 10^6 fillers score in about a second: make the run last until stopped
        time.sleep(0.5)
        return real(*a, **kw)

    monkeypatch.setattr(scoring.TrieScorer, "score_rows", slow)
    at = open_page("exposure")
    at.selectbox(key="w_exp_method").select("exact").run()  # 10^6 fillers in 16 chunks: 8 s and more
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


# --- one background-job mechanism ------------------------------------------------------------------

def test_a_job_reports_progress_records_and_its_outcome():
    from ui import jobs

    def work(progress, stop):
        for i in range(1, 4):
            progress(i, 3)
        return "done"

    job = jobs.Job(("k",), "Counting", work).start()
    assert job.wait(10) and job.result == "done" and job.error is None
    snap = job.snapshot()
    assert snap.fraction == 1.0 and snap.text.startswith("Counting 3 / 3") and not snap.running

    def fails(progress, stop):
        from ssviz.errors import TemplateError
        raise TemplateError("x" * 100_000)

    job = jobs.Job(("k",), "Failing", fails).start()
    assert job.wait(10) and not job.stopped and len(job.error) < 400  # one short line, not 100 KB

    def stoppable(progress, stop):
        from ssviz.errors import StoppedError
        stop.wait(10)
        raise StoppedError("stopped by the user")

    job = jobs.Job(("k",), "Waiting", stoppable).start()
    job.stop.set()
    assert job.wait(10) and job.stopped and job.result is None


@pytest.mark.parametrize("passes", [1, 2])  # 2: LPD trains half models (no epoch records) before the final one
def test_a_training_job_counts_batches_over_all_passes_and_keeps_epoch_records(passes):
    """Training is a use of Job: progress never goes backwards, each epoch's record is kept."""
    from ui import jobs
    epochs, batches, seen = 2, 5, []

    def run(on_epoch, on_batch, stop):
        for p in range(passes):
            for e in range(1, epochs + 1):
                for b in range(1, batches + 1):
                    on_batch(b, batches, 1.0 / b)
                    seen.append(job.snapshot().fraction)
                if p == passes - 1:
                    on_epoch({"epoch": e, "val_loss": 1.0})
        return {"ok": True}

    job = jobs.training_job(("t",), "Training", run, epochs * passes)
    job.start()
    assert job.wait(10) and job.result == {"ok": True}
    assert seen == sorted(seen) and seen[-1] == 1.0  # monotone, ends full
    assert [r["epoch"] for r in job.records] == [1, 2]
    assert "measuring validation loss" in job.snapshot().text


def test_one_progress_panel_and_one_job_class_for_the_whole_app():
    """Progress bars, Stop buttons and worker threads live in ui/ only (pages use widgets.job_panel)."""
    root = Path(APP).parent
    for path in [root / "app.py", *sorted((root / "pages").glob("*.py"))]:
        source = path.read_text(encoding="utf-8")
        assert ".progress(" not in source and "threading" not in source, path.name
        assert '"Stop"' not in source and "TrainingJob" not in source, path.name
    widgets = (root / "ui" / "widgets.py").read_text(encoding="utf-8")
    assert widgets.count(".progress(") == 1 and widgets.count('"Stop"') == 1
    assert not hasattr(__import__("ui.jobs").jobs, "TrainingJob")


def test_a_result_measured_once_is_shown_again_without_a_new_job(monkeypatch):
    calls = []
    real = exposure.measure

    def spy(*a, **k):
        calls.append(a[2])
        return real(*a, **k)

    monkeypatch.setattr(exposure, "measure", spy)
    at = open_page("exposure")
    measure_sampled(at, 200)
    shown = metric(at, "Exposure")
    at.switch_page("pages/template.py").run()
    at.switch_page("pages/exposure.py").run()
    assert not at.exception and not at.error
    assert metric(at, "Exposure") == shown and len(calls) == 1


@pytest.mark.slow
def test_the_beam_vs_shortest_path_comparison_runs_as_a_job_with_stop(monkeypatch):
    from ui import jobs
    at = open_page("template")
    at.selectbox(key="w_preset").select("SSN").run()
    at.switch_page("pages/extraction.py").run()
    at.select_slider(key="w_ext_nodes").set_value(1_000).run()
    at.button(key="ext_run").click().run()  # a small search first: the comparison is drawn under its result
    assert metric(at, "Nodes expanded")
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.0)
    at.button(key="cmp_run").click().run()  # 10^9 fillers: shortest path over up to 100,000 nodes
    assert not at.exception and not at.error
    assert at.get("progress") and at.button(key="stop_ssviz_cmp_exact_job")
    job = _stop_the_running_job(at, "ssviz_cmp_exact_job")
    assert not job.result.complete  # the partial run is shown, never claimed as a miss
    beam = at.session_state["ssviz_cmp_beam_job"]  # the beam half starts once shortest path has ended
    beam.thread.join(timeout=60)
    at.run()
    assert not any("missed" in w.value for w in at.warning)
    assert any(i.value.startswith("Inconclusive") for i in at.info)
    at.run()
    assert at.session_state["ssviz_cmp_exact_job"] is job  # not restarted by itself
    assert at.button(key="cmp_run")  # but offered again


def test_the_model_page_training_shows_the_one_panel_and_stops_on_click(monkeypatch, tmp_path):
    from ui import jobs, state
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.0)
    monkeypatch.setattr(state, "TRAINED_DIR", tmp_path)
    import ssviz.train as train_module
    real_train = train_module.train

    def train_after_stop(text, config, canary, *, stop, **kw):  # Stop lands before the first epoch, always
        assert stop.wait(60)
        return real_train(text, config, canary, stop=stop, **kw)

    monkeypatch.setattr(train_module, "train", train_after_stop)
    at = open_page("model")
    by_label(at.number_input, "Epochs").set_value(20)
    by_label(at.select_slider, "Corpus characters used").set_value(1_000_000)
    by_label(at.button, "Train").click().run()
    assert not at.exception and not at.error
    assert at.get("progress")
    job = _stop_the_running_job(at, "ssviz_training_job")
    assert job.stopped, (job.error, job.result)
    assert job.result is None and not list(tmp_path.iterdir())  # nothing half-saved
    assert any("nothing to save" in w.value for w in at.warning)
    assert not at.error


# --- uploads are bounded ---------------------------------------------------------------------------

def _tiny_checkpoint(hidden: int, canary: dict | None = None) -> bytes:
    torch.manual_seed(0)
    model = CharRNN(list(" 0123456789MPINTehimsy"), embedding_dim=4, hidden_size=hidden, num_layers=1).eval()
    return checkpoint_bytes(model, {"training": {"canary": canary}} if canary else {})


def _upload_key(at: AppTest) -> str:
    return next(f.key for f in at.file_uploader if f.key.startswith("w_checkpoint_upload"))


@pytest.mark.slow
def test_uploaded_checkpoints_are_an_lru_of_two_and_their_bytes_are_released(monkeypatch):
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
    from streamlit.runtime.uploaded_file_manager import UploadedFile
    released = []
    real = MemoryUploadedFileManager.remove_file
    monkeypatch.setattr(MemoryUploadedFileManager, "remove_file",
                        lambda self, session_id, file_id: released.append(file_id) or real(self, session_id, file_id))
    at = open_page("model")
    for hidden in (8, 9, 10):
        at.file_uploader(key=_upload_key(at)).upload(f"h{hidden}.safetensors", _tiny_checkpoint(hidden)).run()
        assert not at.exception and not at.error
        assert metric(at, "Layers x units") == f"1 x {hidden}"
        # the uploader was reset: no widget keeps a copy of the file
        assert not any(isinstance(at.session_state[k], UploadedFile) for k in at.session_state.to_dict())
    assert len(released) == 3
    assert len(at.session_state["ssviz_uploads"]) == 2
    offered = at.selectbox(key="w_ssviz_model").options
    assert sum("uploaded" in o for o in offered) == 2 and not any(o.startswith("h8.") for o in offered)
    at.selectbox(key="w_ssviz_model").select("Bundled demo (2x200 LSTM)").run()
    at.file_uploader(key=_upload_key(at)).upload("h9-again.safetensors", _tiny_checkpoint(9)).run()
    assert metric(at, "Layers x units") == "1 x 9" and len(at.session_state["ssviz_uploads"]) == 2


@pytest.mark.parametrize("canary", [
    {"template": "PIN {[" + "a" * 10_000_000 + "]:4}", "secret": "aaaa"},   # 10 MB alphabet
    {"template": "PIN {d:100000000}", "secret": "1"},                       # a 10^8-character filler
    {"template": ["not", "text"], "secret": 4821},                          # wrong types
    {"template": "My PIN is {d:4}", "secret": "12"},                        # a secret that does not fit
])
@pytest.mark.slow
def test_a_checkpoints_recorded_canary_is_validated_before_it_becomes_the_template(canary):
    at = open_page("model")
    at.file_uploader(key=_upload_key(at)).upload("odd.safetensors", _tiny_checkpoint(8, canary)).run()
    assert not at.exception and not at.error
    assert metric(at, "Layers x units") == "1 x 8"  # the model is accepted, its canary ignored
    assert at.session_state["ssviz_template"] == DEMO_CANARY["template"]
    assert all(len(c.value) < 1_000 for c in at.caption)


# --- templates are checked for size before anything is allocated ----------------------------------

HUGE_TEMPLATES = {
    "10 MB alphabet": "PIN {[" + "a" * 10_000_000 + "]:4}",
    "10 MB literal": "PIN " + "x" * 10_000_000 + " {d:4}",
    "huge filler": "PIN {d:100000000}",
    "huge range": "PIN {[\x00-\U0010ffff]:4}",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(HUGE_TEMPLATES))
def test_a_huge_template_on_the_template_page_is_one_short_message(kind):
    at = open_page("template")
    # set_value, not input(): a crafted client, not the browser (which stops typing at max_chars)
    at.text_input(key="w_ssviz_template").set_value(HUGE_TEMPLATES[kind]).run()
    assert not at.exception
    assert len(at.session_state["ssviz_template"]) <= MAX_TEMPLATE_CHARS  # the server keeps no 10 MB copy
    assert len(at.error) == 1 and "Invalid template" in at.error[0].value and len(at.error[0].value) < 500
    assert all(len(c.value) < 1_000 for c in at.caption)  # the banner shows the template clipped
    at.switch_page("pages/exposure.py").run()  # every page refuses it the same way
    assert not at.exception and len(at.error) == 1 and len(at.error[0].value) < 500 and not at.metric


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(HUGE_TEMPLATES))
def test_a_huge_template_in_the_training_form_is_one_short_message(kind, tmp_path, monkeypatch):
    from ui import state
    monkeypatch.setattr(state, "TRAINED_DIR", tmp_path)
    at = open_page("model")
    by_label(at.text_input, "Canary template").set_value(HUGE_TEMPLATES[kind])
    by_label(at.button, "Train").click().run()
    assert not at.exception
    assert len(at.error) == 1 and len(at.error[0].value) < 500
    assert "ssviz_training_job" not in at.session_state  # nothing started


def test_a_diverged_training_saves_the_last_finite_model_and_says_so(tmp_path, small_corpus):
    from ssviz.train import TrainConfig
    from ui.jobs import train_and_save
    # one batch per epoch: epoch 1 ends finite, epoch 2's loss is inf (as in test_train's divergence tests)
    config = TrainConfig(layers=1, hidden=12, embedding_dim=8, epochs=3, batch_size=1024, lr=1e34, patience=None)
    job = train_and_save(small_corpus[:8000], config, None, tmp_path, name="diverging").start()
    job.thread.join(timeout=120)
    assert job.error is None
    assert "diverged in epoch 2" in job.result["warning"] and "kept the model of epoch 1" in job.result["warning"]
    assert job.result["path"].is_file()


def test_the_exposure_page_says_what_auto_will_do_before_the_button_is_pressed():
    at = open_page("exposure")
    said = [c.value for c in at.caption if c.value.startswith("Before you press")]
    assert said and "auto will use exact" in said[0] and "takes about" in said[0]
    assert "ssviz_exposure_job" not in at.session_state  # nothing was measured: the estimate came first
    at.selectbox(key="w_exp_method").select("search").run()
    assert any("until the secret's rank is certain" in c.value for c in at.caption)
