"""The Privacy audit page (bundled, saved, typed and uploaded audits; a run on the spot with progress and Stop)
and the Defenses page's audited-epsilon column; every number equals the library's, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import ssviz.sweeps as sweeps
from ssviz.audit import demo
from ssviz.audit.run import AUDIT_JSON, CANARIES_CSV, load_audit, training_config
from ssviz.paths import SOURCE_ROOT as ROOT
from ssviz.plots.audit import plain_reading
from ui import audits

PAGE = str(ROOT / "pages" / "audit.py")
DEFENSES_PAGE = str(ROOT / "pages" / "defenses.py")
JOB = "ssviz_audit_job"


@pytest.fixture(autouse=True)
def _private_data_dir(monkeypatch, tmp_path):
    """Audits run here are written to a temporary data folder, never the checkout's."""
    monkeypatch.setenv("SSVIZ_DATA_DIR", str(tmp_path / "data"))


def open_page(timeout=120) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=timeout).run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(v) -> list:
    """A plotly trace's array as a list (plotly encodes numpy arrays as typed base64)."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def expected_metrics(res: dict) -> dict[str, str]:
    """What the page must show for a ``load_audit`` result (the same rounding)."""
    fmt = lambda v: "none" if v is None else f"{v:.2f}"  # noqa: E731
    tpr = res["tpr_at_fpr"]
    return {"AUC": f"{res['auc']:.3f}", "TPR at 0.1% FPR": f"{tpr['0.001']:.3f}",
            "TPR at 1% FPR": f"{tpr['0.01']:.3f}", "TPR at 10% FPR": f"{tpr['0.1']:.3f}",
            "Audited epsilon (lower bound)": f"{res['epsilon_lower']:.2f}",
            "Audited epsilon, f-DP": f"{res['epsilon_lower_fdp']:.2f}",
            "Claimed epsilon per canary": fmt(res["epsilon_claimed_per_canary"]),
            "Claimed epsilon per line": fmt(res["epsilon_claimed"]),
            "Loss-attack AUC": "–" if res["mia_auc"] is None else f"{res['mia_auc']:.3f}"}


# --- the bundled audits ---------------------------------------------------------------------------------
def test_the_bundled_audits_are_shipped_small_and_without_checkpoints():
    found = demo.bundled_audits()
    assert [p.name for p in found] == list(demo.BUNDLED)
    for folder in found:
        assert sorted(p.name for p in folder.iterdir()) == [AUDIT_JSON, CANARIES_CSV]
        assert json.loads((folder / AUDIT_JSON).read_text())["results"]["checkpoint"] is None
    assert sum(p.stat().st_size for f in found for p in f.iterdir()) < 150_000


def test_the_page_opens_on_the_bundled_plain_audit_with_the_librarys_numbers():
    at = open_page()
    assert at.title[0].value == "Privacy audit" and not at.error
    res = load_audit(demo.BUNDLED_DIR / "plain")
    assert metrics(at) == expected_metrics(res)
    assert [i.value for i in at.info] == [plain_reading(res["epsilon_lower"], None, res["confidence"])]
    hist, roc, bars = charts(at)
    counts = {t["name"]: sum(values(t["y"])) for t in hist["data"]}
    assert counts == {f"not inserted ({res['canaries'] - res['included']})": res["canaries"] - res["included"],
                      f"inserted ({res['included']})": res["included"]}
    assert roc["layout"]["xaxis"]["type"] == roc["layout"]["yaxis"]["type"] == "log"
    assert roc["data"][0]["name"] == "chance"
    assert [t["name"] for t in bars["data"]] == ["audited, Steinke et al.", "audited, f-DP (Gaussian curve)",
                                                 "claimed (DP guarantee)"]
    assert values(bars["data"][0]["y"]) == [res["epsilon_lower"]] and bars["data"][2]["text"] == ["no DP guarantee"]
    assert values(bars["data"][1]["y"]) == [res["epsilon_lower_fdp"]]
    assert res["epsilon_lower_fdp"] > res["epsilon_lower"]
    # the intervals, as the library computes them, and the f-DP bound's assumption said in words
    ci = [c.value for c in at.caption if c.value.startswith("95% intervals")]
    lo, hi = res["auc_ci"]
    assert ci and f"AUC [{lo:.3f}, {hi:.3f}]" in ci[0]
    assert f"1% [{res['tpr_ci']['0.01'][0]:.3f}, {res['tpr_ci']['0.01'][1]:.3f}]" in ci[0]
    assert any("Gaussian" in c.value and f"{res['epsilon_lower_fdp']:.2f}" in c.value for c in at.caption)
    assert at.session_state["ssviz_audit_shown"] == str(demo.BUNDLED_DIR / "plain")
    assert len(at.selectbox(key="w_aud_kind").options) == 3  # the run form offers every canary kind


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dp-eps8", "dp-eps1"])
def test_a_bundled_dp_audit_shows_the_claimed_epsilon_per_line_and_per_canary(name):
    at = open_page()
    folder = demo.BUNDLED_DIR / name
    at.selectbox(key="w_aud_source").select(str(folder)).run()
    assert not at.exception and not at.error
    res = load_audit(folder)
    assert metrics(at) == expected_metrics(res)
    claimed, per_canary, k = res["epsilon_claimed"], res["epsilon_claimed_per_canary"], res["insertions"]
    assert per_canary == pytest.approx(k * claimed)
    assert [i.value for i in at.info] == [plain_reading(res["epsilon_lower"], per_canary, res["confidence"])]
    assert f"at most {per_canary:.2g}" in at.info[0].value
    group = [c.value for c in at.caption if "group of" in c.value]
    assert group and f"{k} x {claimed:.2f} = {per_canary:.2f}" in group[0]
    bars = charts(at)[2]
    assert values(bars["data"][2]["y"]) == [per_canary] and values(bars["data"][0]["y"]) == [res["epsilon_lower"]]
    assert values(bars["data"][1]["y"]) == [res["epsilon_lower_fdp"]]


def test_the_choice_survives_a_visit_to_another_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/audit.py").run()
    folder = str(demo.BUNDLED_DIR / "dp-eps8")
    at.selectbox(key="w_aud_source").select(folder).run()
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/audit.py").run()
    assert not at.exception
    assert at.selectbox(key="w_aud_source").value == folder


# --- typed folders: only under data/ or models/ ---------------------------------------------------------
@pytest.fixture
def roots(monkeypatch, tmp_path):
    """The folders the page may read: a temporary data/ and the bundled models/."""
    from ui import cache
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    monkeypatch.setattr(cache, "results_dirs", lambda: (data, demo.BUNDLED_DIR.parent))
    return data


def type_folder(at: AppTest, typed: str) -> AppTest:
    at.selectbox(key="w_aud_source").select("other").run()
    at.text_input(key="w_aud_path").input(typed).run()
    assert not at.exception, at.exception
    return at


def test_a_typed_audit_folder_under_models_is_shown(roots):
    at = type_folder(open_page(), str(demo.BUNDLED_DIR / "dp-eps1"))
    assert not at.error and metrics(at) == expected_metrics(load_audit(demo.BUNDLED_DIR / "dp-eps1"))


def test_a_relative_typed_folder_is_resolved_from_the_working_directory(roots, monkeypatch):
    monkeypatch.chdir(ROOT)
    at = type_folder(open_page(), "models/audit/../audit/plain")
    assert not at.error and metrics(at)["AUC"] == f"{load_audit(demo.BUNDLED_DIR / 'plain')['auc']:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("typed", ["/etc", "/tmp", "../../../../../../etc", "{models}/../ssviz",
                                   "{models}/audit/../../ssviz/audit", "{outside}", "{link}", "~"])
def test_a_typed_folder_outside_data_and_models_is_refused(roots, tmp_path, typed):
    outside = tmp_path / "outside"
    shutil.copytree(demo.BUNDLED_DIR / "plain", outside)  # a real audit, but not in an allowed folder
    (roots / "link").symlink_to(outside, target_is_directory=True)  # a link inside data/ leading out of it
    typed = typed.format(models=demo.BUNDLED_DIR.parent, outside=outside, link=roots / "link")
    at = type_folder(open_page(), typed)
    assert len(at.error) == 1 and "only from the data/ or models/ folders" in at.error[0].value
    assert not at.metric  # nothing of the outside audit is shown


@pytest.mark.slow
@pytest.mark.parametrize("typed", ["{models}/defenses", "{models}/audit", "{data}/missing"])
def test_a_typed_folder_that_is_not_an_audit_is_one_line(roots, typed):
    at = type_folder(open_page(), typed.format(models=demo.BUNDLED_DIR.parent, data=roots))
    assert len(at.error) == 1 and "not a finished audit" in at.error[0].value and not at.metric


def test_a_corrupt_audit_under_data_is_one_line_not_a_traceback(roots):
    bad = roots / "bad"
    shutil.copytree(demo.BUNDLED_DIR / "plain", bad)
    lines = (bad / CANARIES_CSV).read_text().splitlines()
    lines[3] = lines[3].replace(",true,", ",maybe,").replace(",false,", ",maybe,")
    (bad / CANARIES_CSV).write_text("\n".join(lines))
    at = type_folder(open_page(), str(bad))
    assert len(at.error) == 1 and "included must be true or false" in at.error[0].value
    assert len(at.error[0].value) < 500 and not at.expander


# --- uploads ------------------------------------------------------------------------------------------
def choose_upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.selectbox(key="w_aud_source").select("upload").run()
    uploader = at.file_uploader(key="w_aud_upload")
    for name, data in files:
        uploader.upload(name, data)
    uploader.run()
    assert not at.exception, at.exception
    return at


def test_an_uploaded_audit_is_shown_from_a_private_folder():
    folder = demo.BUNDLED_DIR / "dp-eps8"
    at = choose_upload(open_page(), ("../../evil.csv", (folder / CANARIES_CSV).read_bytes()),
                       ("whatever.json", (folder / AUDIT_JSON).read_bytes()))
    assert not at.error and metrics(at) == expected_metrics(load_audit(folder))
    saved = Path(at.session_state["ssviz_audit_shown"])
    from ssviz.tempfiles import session_dir
    assert saved.parent == session_dir() and sorted(p.name for p in saved.iterdir()) == [AUDIT_JSON, CANARIES_CSV]
    assert stat.S_IMODE(saved.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in saved.iterdir())


@pytest.mark.slow
def test_an_uploaded_canaries_csv_alone_is_enough():
    folder = demo.BUNDLED_DIR / "plain"
    at = choose_upload(open_page(), ("canaries.csv", (folder / CANARIES_CSV).read_bytes()))
    res = load_audit(folder)
    assert not at.error and metrics(at)["AUC"] == f"{res['auc']:.3f}"
    assert metrics(at)["Audited epsilon (lower bound)"] == f"{res['epsilon_lower']:.2f}"


@pytest.mark.parametrize("files, says", [
    ([("audit.json", b"{}")], "upload one canaries.csv"),
    ([("a.csv", b"filler,included\n"), ("b.csv", b"x")], "upload one canaries.csv"),
    ([("canaries.csv", b"filler,included,log_perplexity,score\n1,true,nan,1\n")], "must be a finite number"),
    ([("canaries.csv", b"\xff\xfe\x00\x01" * 100)], "not UTF-8"),
    ([("canaries.csv", b"filler,included,log_perplexity,score\n" + b"1,true,3.0,1\n" * 20)], "all 20 canaries are included"),
    ([("canaries.csv", (demo.BUNDLED_DIR / "plain" / CANARIES_CSV).read_bytes()),
      ("audit.json", b"[" * 100_000)], "not valid JSON"),
])
@pytest.mark.slow
def test_a_bad_upload_is_one_line(files, says):
    at = choose_upload(open_page(), *files)
    assert len(at.error) == 1 and says in at.error[0].value and len(at.error[0].value) < 500
    assert not at.metric and not at.expander


def test_an_oversized_upload_is_refused_before_it_is_read(monkeypatch):
    monkeypatch.setattr(audits, "MAX_UPLOAD_BYTES", 1000)
    at = choose_upload(open_page(), ("canaries.csv", (demo.BUNDLED_DIR / "plain" / CANARIES_CSV).read_bytes()))
    assert len(at.error) == 1 and "at most" in at.error[0].value


def test_uploaded_audits_are_bounded(monkeypatch):
    from ssviz.tempfiles import session_dir
    monkeypatch.setattr(audits, "MAX_UPLOADED_AUDITS", 2)
    csv = (demo.BUNDLED_DIR / "plain" / CANARIES_CSV).read_bytes()
    folders = [audits.save_upload({"canaries.csv": csv + b"\n" * i}) for i in range(4)]
    kept = sorted(session_dir().glob("audit-*"))
    assert len(kept) == 2 and folders[-1] in kept and folders[0] not in kept


# --- a run on the spot --------------------------------------------------------------------------------
def tiny_live_setting(monkeypatch):
    from ssviz.train import TrainConfig
    monkeypatch.setattr(audits, "LIVE_CHARS", 6_000)
    monkeypatch.setattr(audits, "LIVE_SETTINGS", replace(audits.LIVE_SETTINGS, canaries=40, insertions=2))
    monkeypatch.setattr(audits, "LIVE_CONFIG", TrainConfig(layers=1, hidden=8, embedding_dim=8, epochs=1,
                                                         batch_size=64, lr=0.01, seed=0, patience=None))


def submit(at: AppTest, **widgets) -> AppTest:
    """Set the run form's widgets (by key) and press Run audit."""
    for key, value in widgets.items():
        at.get_by_key(key).set_value(value)  # noqa: the form's values are sent with its submit
    next(b for b in at.get("form_submit_button") if b.label == "Run audit").click()
    at.run()
    assert not at.exception, at.exception
    return at


def wait_for_job(at: AppTest, timeout=120) -> None:
    job = at.session_state[JOB]
    job.thread.join(timeout=timeout)
    assert not job.running
    at.run()
    assert not at.exception, at.exception


def test_a_tiny_audit_runs_on_the_page_is_saved_and_shown(monkeypatch, tmp_path):
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.1)
    tiny_live_setting(monkeypatch)
    at = submit(open_page(), w_aud_canaries=100)
    job = at.session_state[JOB]
    assert job.label == "Auditing plain training on the demo corpus"
    wait_for_job(at)
    assert job.error is None, job.error
    folder = job.result["path"]
    assert folder.parent == tmp_path / "data" / "audits" and (folder / "model.safetensors").is_file()
    assert at.selectbox(key="w_aud_source").value == str(folder)  # the new audit is shown
    res = load_audit(folder)
    assert res["canaries"] == 100 and res["insertions"] == 2
    assert metrics(at) == expected_metrics(res)
    assert any("finished" in s.value for s in at.success)
    assert [p.name for p in audits.saved_audits()] == [folder.name]


@pytest.mark.slow  # DP-SGD, even tiny, takes several seconds under load
def test_a_tiny_dp_audit_reports_its_claimed_epsilon(monkeypatch):
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.1)
    tiny_live_setting(monkeypatch)
    at = submit(open_page(), w_aud_training="dp8")
    wait_for_job(at, timeout=300)
    res = load_audit(at.session_state[JOB].result["path"])
    assert res["epsilon_claimed"] == pytest.approx(8.0, rel=0.05)
    assert metrics(at) == expected_metrics(res)


def test_the_run_shows_the_apps_progress_panel_and_stops(monkeypatch):
    """The audit is one training job like every other: progress bar, Stop, a warning, nothing saved."""
    import ssviz.audit.run as run_mod
    from ssviz.errors import StoppedError
    from ui import jobs

    def slow_audit(text, settings, config, *, out_dir=None, on_epoch=None, on_batch=None, stop=None, **_):
        while not stop.is_set():
            for b in range(1, 11):
                on_batch(b, 10, 2.0)
            stop.wait(0.05)
        raise StoppedError("the audit's training was stopped: nothing to measure")

    monkeypatch.setattr(run_mod, "run_audit", slow_audit)
    monkeypatch.setattr(jobs, "QUICK_WAIT", 0.1)
    at = submit(open_page())
    job = at.session_state[JOB]
    assert job.running and at.get("progress")
    at.button(key=f"stop_{JOB}").click().run()
    wait_for_job(at)
    assert job.stopped and any("stopped" in w.value for w in at.warning) and not at.error
    assert audits.saved_audits() == []
    assert at.selectbox(key="w_aud_source").value == str(demo.BUNDLED_DIR / "plain")


def test_a_failing_run_is_one_line(monkeypatch):
    import ssviz.audit.run as run_mod
    from ssviz.errors import SettingsError

    def boom(*a, **k):
        raise SettingsError("the template has only " + "9" * 100_000 + " fillers")

    monkeypatch.setattr(run_mod, "run_audit", boom)
    at = submit(open_page())
    wait_for_job(at)
    assert len(at.error) == 1 and len(at.error[0].value) < 500


def test_an_unwritable_data_folder_fails_before_training(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SSVIZ_DATA_DIR", str(blocker))
    at = submit(open_page())
    assert JOB not in at.session_state
    assert len(at.error) == 1 and "is a file, not a folder" in at.error[0].value


def test_a_bug_while_loading_is_folded_away_like_on_every_page(monkeypatch):
    import ssviz.audit.run as run_mod

    def broken(*a, **k):
        raise KeyError("auc")

    monkeypatch.setattr(run_mod, "load_audit", broken)
    at = open_page()
    assert len(at.error) == 1 and "KeyError" in at.error[0].value
    assert at.expander[-1].label == "Details for a bug report"


# --- the Defenses page's audited epsilon ----------------------------------------------------------------
def defenses_table(monkeypatch, tmp_path):
    monkeypatch.setattr(sweeps, "DEFAULT_SWEEP_DB", tmp_path / "missing.duckdb")
    at = AppTest.from_file(DEFENSES_PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    return at, at.dataframe[0].value


def test_the_defenses_table_has_the_audited_epsilon_of_the_matching_bundled_audit(monkeypatch, tmp_path):
    at, table = defenses_table(monkeypatch, tmp_path)
    cols = list(table.columns)
    assert cols.index("audited epsilon") == cols.index("epsilon") + 1
    shown = {(d, s): a for d, s, a in table[["defense", "strength", "audited epsilon"]].itertuples(index=False)}
    for (defense, strength), folder in [(("No defense", "-"), "plain"), (("DP-SGD (Opacus)", "eps=8"), "dp-eps8"),
                                        (("DP-SGD (Opacus)", "eps=1"), "dp-eps1")]:
        assert shown[(defense, strength)] == f"≥ {load_audit(demo.BUNDLED_DIR / folder)['epsilon_lower']:.2f}"
    no_audit = {k: v for k, v in shown.items() if k not in [("No defense", "-"), ("DP-SGD (Opacus)", "eps=8"),
                                                             ("DP-SGD (Opacus)", "eps=1")]}
    assert ("Regex sanitization", "ssn+ccn") in no_audit and ("Dropout", "0.3") in no_audit
    assert set(no_audit.values()) == {"—"}
    assert any("group of 8 lines" in c.value for c in at.caption)


def test_without_bundled_audits_the_column_is_dashes(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "BUNDLED_DIR", tmp_path / "none")
    at, table = defenses_table(monkeypatch, tmp_path)
    assert set(table["audited epsilon"]) == {"—"} and not at.error


def write_audit(folder: Path, **options) -> Path:
    """A copy of the plain bundled audit whose recorded training options are changed."""
    shutil.copytree(demo.BUNDLED_DIR / "plain", folder)
    doc = json.loads((folder / AUDIT_JSON).read_text())
    doc["config"].update(options)
    (folder / AUDIT_JSON).write_text(json.dumps(doc))
    return folder


def test_an_audit_matches_a_defense_only_with_every_defense_option_equal(monkeypatch, tmp_path):
    from ssviz.defenses.compare import defense_config
    from ssviz.train import TrainConfig
    offered = {write_audit(tmp_path / "drop", dropout=0.3): "dropout 0.3",
               write_audit(tmp_path / "dp8clip2", dp_epsilon=8.0, dp_clip=2.0): "dp eps 8, clip 2",
               write_audit(tmp_path / "plain", ): "plain"}
    match = lambda d, s: demo.matching_audit(defense_config(d, s, TrainConfig()), offered)  # noqa: E731
    assert match("dropout", "0.3") == tmp_path / "drop"
    assert match("dropout", "0.1") is None
    assert match("dp", "eps=8") is None                      # clipping norm differs
    assert match("none", "-") == tmp_path / "plain"
    assert match("quantize8", "8") is None
    assert match("weight_decay", "1e-4") is None


def test_sanitization_defenses_never_borrow_the_plain_audit():
    assert audits.audited_epsilon("regex", "ssn+ccn") is None and audits.audited_epsilon("lpd", "0.1") is None
    assert audits.audited_epsilon("dp", "bogus") is None
    plain = load_audit(demo.BUNDLED_DIR / "plain")
    assert audits.audited_epsilon("none", "-")["epsilon_lower"] == plain["epsilon_lower"]


def test_an_unreadable_audit_json_does_not_match(tmp_path):
    from ssviz.train import TrainConfig
    bad = write_audit(tmp_path / "bad")
    (bad / AUDIT_JSON).write_text("[" * 100_000)
    assert demo.matching_audit(TrainConfig(), {bad: "bad"}) is None
    assert training_config(tmp_path / "missing") == {}


def test_the_seeds_of_a_repeated_audit_are_offered_and_shown(tmp_path):
    """``audit --seeds N --out data/audits/X`` writes X/seed-k folders: each is a saved audit on the page."""
    import shutil

    from ssviz.audit.seeds import SUMMARY_JSON
    repeated = tmp_path / "data" / "audits" / "rep"
    for k in (0, 1, 10):
        shutil.copytree(demo.BUNDLED_DIR / "plain", repeated / f"seed-{k}")
    (repeated / SUMMARY_JSON).write_text("{}")
    (tmp_path / "data" / "audits" / "not-an-audit" / "seed-0").mkdir(parents=True)  # no audits.json: not offered
    assert [p.relative_to(repeated.parent).as_posix() for p in audits.saved_audits()] == \
        ["rep/seed-0", "rep/seed-1", "rep/seed-10"]
    at = open_page()
    options = at.selectbox(key="w_aud_source").options
    assert sum("rep/seed-" in o for o in options) == 3
    at.selectbox(key="w_aud_source").set_value(str(repeated / "seed-1")).run()
    assert not at.exception, at.exception
    res = load_audit(repeated / "seed-1")
    assert metrics(at) == expected_metrics(res)
    bars = next(c for c in charts(at) if c["data"][0].get("name") == "audited, Steinke et al.")
    assert bars["data"][0]["x"] == ["seed 0", "seed 1 (shown above)", "seed 10"]  # every seed, this one named
    assert any("Audited vs claimed epsilon over 3 seeds" in h.value for h in at.subheader)
    assert any(f"median {res['epsilon_lower']:.2f}" in c.value for c in at.caption)
