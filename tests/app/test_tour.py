"""Workshop mode, driven headless with AppTest: the tour's steps, the glossary on every page, presenter mode
and the live memorization demo (with tiny settings)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from ssviz.demo import DEMO_CANARY
from ssviz.paths import SOURCE_ROOT
from ssviz.templates import Template

APP = str(SOURCE_ROOT / "app.py")
PAGE_FILES = sorted(p.stem for p in (SOURCE_ROOT / "pages").glob("*.py"))
TITLES = {"pages/home.py": "ssviz: does your model remember secrets?", "pages/model.py": "Model & corpus",
          "pages/template.py": "Secret template", "pages/exposure.py": "Exposure",
          "pages/extraction.py": "Extraction", "pages/comparison.py": "Per-user comparison",
          "pages/defenses.py": "Defenses"}


@pytest.fixture(autouse=True)
def _short_runs_finish_in_the_same_page_run(monkeypatch):
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 120.0)


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


def tour():
    from ui import tour
    return tour


def step_heading(at: AppTest) -> str:
    return next(s.value for s in at.subheader if s.value.startswith("Step "))


def popover(at: AppTest, label: str):
    """The popover ``label`` in the row every page draws above its title (None if absent)."""
    found = [b for b in at.main.get("popover") if b.proto.popover.label == label]
    assert len(found) <= 1
    return found[0] if found else None


def reminder(at: AppTest) -> str:
    """The workshop reminder of this page: its link's label and its question ("" when not shown)."""
    links = [link.proto.label for link in at.get("page_link") if "back to the tour" in link.proto.label]
    question = popover(at, "Ask the room")
    return " ".join(links) + (" " + " ".join(m.value for m in question.markdown) if question else "")


# --- the tour ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_next_and_back_walk_through_every_step_and_each_renders():
    at = open_page("tour")
    steps = tour().STEPS
    assert at.button(key="tour_back").disabled
    for i, step in enumerate(steps):
        if i:
            at.button(key="tour_next").click().run()
        assert not at.exception and not at.error, (i, at.exception, [e.value for e in at.error])
        assert step_heading(at) == f"Step {i + 1} of {len(steps)}: {step.title}"
        assert any(x.value.startswith("**Ask the room:**") for x in at.info)
        shown = " ".join(m.value for m in at.main.markdown)
        unfilled = re.compile(r"\{(" + "|".join(tour().facts()) + r")\b")
        assert not unfilled.search(shown)  # every {fact} was filled in
    assert at.button(key="tour_next").disabled
    for i in reversed(range(len(steps) - 1)):
        at.button(key="tour_back").click().run()
        assert not at.exception and step_heading(at).startswith(f"Step {i + 1} of")
    assert at.button(key="tour_back").disabled


def test_the_tour_goes_from_canary_to_dp_in_60_to_90_minutes():
    t = tour()
    titles = [s.title for s in t.STEPS]
    assert titles[0] == "What is a canary?" and titles[-1] == "DP makes the canary disappear"
    for words in ("Log-perplexity", "histogram", "Rank and exposure", "shortest-path", "Beam search",
                  "memorize", "per-user", "Defenses"):
        assert any(words.lower() in title.lower() for title in titles), words
    assert 60 <= t.minutes_total() <= 90
    assert all(s.question and s.text and s.page_label for s in t.STEPS)


def test_numbers_in_the_steps_come_from_the_library():
    t = tour()
    template = Template(DEMO_CANARY["template"])
    facts = t.facts()
    assert facts["space"] == template.space_size and facts["max_bits"] == math.log2(template.space_size)
    rank_step = next(s for s in t.STEPS if s.title == "Rank and exposure")
    text = t.fill(rank_step.text)
    assert f"{template.space_size:,}" in text and f"{math.log2(template.space_size):.2f}" in text
    assert t.fill(t.STEPS[0].text).count(template.format(DEMO_CANARY["secret"])) == 1


def test_jumping_from_the_agenda():
    at = open_page("tour")
    at.button(key="tour_jump_5").click().run()
    assert step_heading(at).startswith("Step 6 of")


@pytest.mark.slow
def test_each_step_opens_its_page_with_its_settings():
    at = open_page("tour")
    t = tour()
    for index, step in enumerate(t.STEPS):
        at.switch_page("pages/tour.py").run()
        at.session_state[t.STEP] = index
        at.run()
        if step.page == t.TOUR_PAGE:  # the live demo happens on the tour page itself
            assert not [b for b in at.button if b.key == "tour_open"]
            assert at.button(key=f"tour_train_{t.LIVE_INSERTIONS[0]}")
            continue
        at.button(key="tour_open").click().run()
        assert not at.exception and not at.error, (index, at.exception, [e.value for e in at.error])
        assert at.title[0].value == TITLES[step.page], index
        for name, value in step.settings.items():
            assert at.session_state[name] == value, (index, name)
        widgets = {w.key: w.value for kind in ("selectbox", "select_slider", "number_input") for w in at.get(kind)}
        for name, value in step.settings.items():  # the page's widgets show the step's settings
            for key in {"w_" + name.removeprefix("ssviz_"), "w_" + name, name} & set(widgets):
                assert widgets[key] == value, (index, key)
        # the page keeps the step's question, with the way back to the tour
        assert f"Workshop step {index + 1} of {len(t.STEPS)}" in reminder(at), index
        assert t.fill(step.question) in reminder(at), index


@pytest.mark.slow
def test_the_beam_step_shows_the_miss_and_the_dp_step_preselects_dp():
    at = open_page("tour")
    t = tour()
    beam = next(i for i, s in enumerate(t.STEPS) if s.title == "Beam search can miss")
    at.session_state[t.STEP] = beam
    at.run()
    at.button(key="tour_open").click().run()
    assert not at.exception and any("missed the most likely filler" in w.value for w in at.warning)
    at.switch_page("pages/tour.py").run()
    at.session_state[t.STEP] = len(t.STEPS) - 1
    at.run()
    at.button(key="tour_open").click().run()
    assert not at.exception
    assert at.selectbox(key="def_defense").value == "dp" and at.selectbox(key="def_strength").value == "eps=8"


def test_the_reminder_appears_on_other_pages_only_once_the_tour_was_opened():
    at = open_page("exposure")
    assert reminder(at) == ""
    at.switch_page("pages/tour.py").run()
    assert reminder(at) == ""  # not on the tour page itself
    at.button(key="tour_next").click().run()
    at.switch_page("pages/exposure.py").run()
    assert "Workshop step 2 of" in reminder(at)


# --- the glossary on every page ------------------------------------------------------------------------

REQUIRED_TERMS = ["Canary", "Filler", "Template", "Log-perplexity", "Rank", "Exposure", "Skew-normal",
                  "Shortest-path search", "Beam search", "Epsilon", "DP-SGD"]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGE_FILES)
def test_the_glossary_is_reachable_from_every_page(page):
    at = open_page(page)
    glossary = popover(at, "Glossary")
    assert glossary is not None
    text = "\n".join(m.value for m in glossary.markdown)
    for term in REQUIRED_TERMS:
        assert f"**{term}" in text, term


# --- presenter mode ------------------------------------------------------------------------------------

def _styles(at: AppTest) -> list[str]:
    """The presenter style in this run (the page always sends one style element, empty when off)."""
    return [h.proto.body for h in at.html if "<style>" in h.proto.body and "font-size" in h.proto.body]


@pytest.mark.slow
def test_presenter_mode_changes_the_css_on_every_page_and_keeps_across_pages():
    at = open_page("comparison")
    assert not _styles(at)
    specs_off = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    at.toggle(key="w_presenter").set_value(True).run()
    assert not at.exception
    styles = _styles(at)
    assert len(styles) == 1 and "font-size" in styles[0]  # injected once per run
    specs_on = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert specs_on and all(s["layout"]["font"]["size"] == 20 for s in specs_on)
    assert all(s["layout"].get("font", {}).get("size") != 20 for s in specs_off)
    # only the look changes: every trace shows the same numbers
    assert [[t.get("x"), t.get("y")] for s in specs_on for t in s["data"]] == \
        [[t.get("x"), t.get("y")] for s in specs_off for t in s["data"]]
    for page in ("tour", "exposure", "defenses"):
        at.switch_page(f"pages/{page}.py").run()
        assert len(_styles(at)) == 1, page
    at.toggle(key="w_presenter").set_value(False).run()
    assert not _styles(at)


# --- live memorization ---------------------------------------------------------------------------------

@pytest.fixture
def tiny_live(monkeypatch, tmp_path):
    """The live demo with tiny settings: a 4-digit canary, 20 KB, a 1x16 LSTM, 2 epochs."""
    open_page()
    from ui import state, tour
    monkeypatch.setattr(tour, "LIVE_TEMPLATE", "My PIN is {d:4}")
    monkeypatch.setattr(tour, "LIVE_CHARS", 20_000)
    monkeypatch.setattr(tour, "LIVE_CONFIG", replace(tour.LIVE_CONFIG, hidden=16, epochs=2, batch_size=64))
    monkeypatch.setattr(state, "TRAINED_DIR", tmp_path)
    return tmp_path


def _live_step(at: AppTest):
    t = tour()
    at.session_state[t.STEP] = next(i for i, s in enumerate(t.STEPS) if s.page == t.TOUR_PAGE)
    at.run()


def _train(at: AppTest, insertions: int):
    at.button(key=f"tour_train_{insertions}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = at.session_state["ssviz_tour_job"]
    job.thread.join(timeout=120)
    assert not job.running and job.error is None, job.error
    at.run()
    assert not at.exception
    return job


def _exposure_points(at: AppTest) -> list[list[float]]:
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return [t["y"] for s in specs for t in s["data"] if t.get("name") == "exposure"]


@pytest.mark.slow
def test_live_training_shows_exposure_per_epoch_for_both_runs(tiny_live):
    at = open_page("tour")
    _live_step(at)
    at.text_input(key="w_tour_secret").input("4821").run()
    job = _train(at, 8)
    assert job.meta["canary"].insertions == 8 and job.meta["canary"].secret == "4821"
    assert [r["epoch"] for r in job.records] == [1, 2] and all(r["exposure_method"] == "exact" for r in job.records)
    assert len(_exposure_points(at)) == 1 and len(_exposure_points(at)[0]) == 2
    shown = " ".join(m.value for m in at.markdown)
    assert "**Inserted 8 times**" in shown and "after epoch" in shown
    _train(at, 1)
    points = _exposure_points(at)
    assert len(points) == 2 and all(len(p) == 2 for p in points)  # both runs, side by side
    assert "**Inserted once**" in " ".join(m.value for m in at.markdown)
    assert sorted(p.name for p in tiny_live.iterdir()) and all(p.suffix == ".safetensors"
                                                               for p in tiny_live.iterdir())
    # the trained model becomes the current one: the next steps measure and extract its canary
    at.button(key="tour_use_8").click().run()
    assert not at.exception
    assert at.session_state["ssviz_template"] == "My PIN is {d:4}" and at.session_state["ssviz_secret"] == "4821"
    assert at.session_state["ssviz_model"].startswith("file:") and "workshop-8x" in at.session_state["ssviz_model"]


def test_live_caption_names_the_first_epoch_at_rank_one():
    caption = tour().live_caption
    records = [{"epoch": 1, "exposure": 7.2, "rank": 6_946, "seconds": 3.0},
               {"epoch": 2, "exposure": 19.93, "rank": 1, "seconds": 6.5},
               {"epoch": 3, "exposure": 19.93, "rank": 1, "seconds": 9.8}]
    text = caption(8, records, 10 ** 6, False)
    assert "ranked **first of 1,000,000**" in text and "after epoch 2, 6 s of training" in text
    text = caption(1, records[:1], 10 ** 6, True)
    assert "exposure 7.20 of 19.93 bits after epoch 1, rank 6,946 of 1,000,000" in text
    assert caption(1, [], 10 ** 6, False).endswith("not trained yet.")
    assert caption(8, [], 10 ** 6, True).endswith("first epoch running.")


@pytest.mark.slow
@pytest.mark.parametrize("typed", ["12", "abcdef", "1234567"])
def test_a_secret_that_does_not_fit_is_one_message_and_nothing_trains(tiny_live, typed):
    at = open_page("tour")
    _live_step(at)
    at.text_input(key="w_tour_secret").input(typed).run()
    assert not at.exception and len(at.error) == 1 and len(at.error[0].value) < 400
    assert at.button(key="tour_train_8").disabled and at.button(key="tour_train_1").disabled
    assert "ssviz_tour_job" not in at.session_state


def test_a_live_run_shows_the_one_progress_panel_and_stops_on_click(tiny_live, monkeypatch):
    from ui import jobs
    from ui import tour as t
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.0)
    monkeypatch.setattr(t, "LIVE_CONFIG", replace(t.LIVE_CONFIG, epochs=50))
    monkeypatch.setattr(t, "LIVE_CHARS", 200_000)
    at = open_page("tour")
    _live_step(at)
    at.button(key="tour_train_8").click().run()
    assert not at.exception and at.get("progress") and at.button(key="stop_ssviz_tour_job")
    assert at.button(key="tour_train_1").disabled  # one run at a time
    job = at.session_state["ssviz_tour_job"]
    at.button(key="stop_ssviz_tour_job").click().run()
    job.thread.join(timeout=120)
    assert job.stopped or job.result["stopped"]
    at.run()
    assert not at.exception and not at.get("progress")
