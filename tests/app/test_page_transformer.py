"""The app on transformers: a zipped Hugging Face model folder uploaded on the Model page, then every page.

The models are built here from configs (no download), with the session's tokenizers
(tests/conftest.py): a Llama-style one that splits digits and prepends BOS, and a
GPT-2-style one that merges digit runs and the space before them.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import tempfile
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

pytest.importorskip("transformers")

from ssviz import exposure  # noqa: E402
from ssviz.demo import DEMO_CANARY, DEMO_TRANSFORMER, DEMO_TRANSFORMER_CANARY  # noqa: E402
from ssviz.models import load_model  # noqa: E402
from ssviz.models.hf import HFLanguageModel  # noqa: E402
from ssviz.paths import SOURCE_ROOT  # noqa: E402
from ssviz.plots.tokens import visible  # noqa: E402
from ssviz.templates import Template  # noqa: E402
from ssviz.scoring import unit_costs as token_costs  # noqa: E402
from tests.app.test_app import measure_sampled, metric, plotly_specs  # noqa: E402

APP = str(SOURCE_ROOT / "app.py")
CANARY = {"template": "My PIN is {d:4}", "secret": "4821", "insertions": 3}
UPLOAD = "w_checkpoint_upload"


@pytest.fixture(autouse=True)
def _runs_finish_before_the_page_draws(monkeypatch):
    """Exposure and extraction run in worker threads: in tests a short run is drawn in the same script run."""
    from ui import jobs
    monkeypatch.setattr(jobs, "QUICK_WAIT", 120.0)


def _zip(folder: Path, top: str = "", extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"{top}{p.name}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory, digit_tokenizer, merge_tokenizer) -> dict[str, Path]:
    """Tiny untrained Llama (digits split) and GPT-2 (digit runs merge) folders, with a recorded canary."""
    root = tmp_path_factory.mktemp("app-hf")
    out = {}
    for kind, tok in (("llama", digit_tokenizer), ("gpt2", merge_tokenizer)):
        m = HFLanguageModel.build(kind, tok, layers=1, heads=2, hidden=32, context=64, seed=7, init_range=0.3)
        out[kind] = m.save(root / kind, extra={"training": {"canary": CANARY}})
    return out


@pytest.fixture(scope="session")
def tiny_zips(tiny_folders) -> dict[str, bytes]:
    """The folders zipped as a user would: the llama's files at the top, the gpt2's inside a folder."""
    return {"llama": _zip(tiny_folders["llama"]), "gpt2": _zip(tiny_folders["gpt2"], top="tiny-gpt2/")}


@pytest.fixture(scope="session")
def tiny_models(tiny_zips) -> dict[str, HFLanguageModel]:
    return {kind: load_model(data) for kind, data in tiny_zips.items()}


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    key = next(f.key for f in at.file_uploader if f.key.startswith(UPLOAD))
    at.file_uploader(key=key).upload(name, data).run()
    assert not at.exception, at.exception
    return at




def trace_named(at: AppTest, name: str) -> dict:
    return next(t for s in plotly_specs(at) for t in s["data"] if t.get("name") == name)


def _values(v) -> list:
    """Plotly serializes numpy arrays as {"dtype", "bdata"} (base64) or plain lists."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def uploaded(kind: str, tiny_zips) -> AppTest:
    at = upload(open_page("model"), f"tiny-{kind}.zip", tiny_zips[kind])
    assert not at.error, [e.value for e in at.error]
    return at


# --- the Model page ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_an_uploaded_zip_becomes_the_model_with_its_tokenizer_summary(kind, tiny_zips, tiny_models):
    at = uploaded(kind, tiny_zips)
    model = tiny_models[kind]
    assert metric(at, "Architecture") == kind.upper()
    assert metric(at, "Blocks x width") == "1 x 32"
    assert metric(at, "Parameters") == f"{model.parameter_count:,}"
    assert metric(at, "Vocabulary") == f"{len(model.tokenizer):,} tokens"
    assert at.session_state["ssviz_model"].startswith("upload:")
    # the canary recorded beside the weights is the secret under test
    assert at.session_state["ssviz_template"] == CANARY["template"]
    assert at.session_state["ssviz_secret"] == CANARY["secret"]
    # how the secret is tokenized, token by token
    text = Template(CANARY["template"]).format(CANARY["secret"])
    ids = model.tokenizer(text)["input_ids"]
    assert any(f"is read as **{len(ids)} tokens**" in m.value for m in at.markdown)
    chips = next(h.proto.body for h in at.html if "part of the secret" in h.proto.body)
    assert chips.count("<span") == len(ids)
    table = next(d.value for d in at.dataframe if "token" in d.value.columns)
    assert table["id"].tolist() == ids
    secret_tokens = table.loc[table["part of the secret"], "token"].tolist()
    assert chips.count('title="part of the secret"') == len(secret_tokens)
    if kind == "llama":  # BOS first, and one token per digit
        assert table["token"].iloc[0] == "<s>" and secret_tokens == list(CANARY["secret"])
    else:  # digits merge with each other and with the space before them
        assert "".join(secret_tokens).replace("␣", " ").strip() == CANARY["secret"]
        assert len(secret_tokens) < len(CANARY["secret"]) and secret_tokens[0].startswith("␣")
    exact = any("search over the template is exact" in c.value for c in at.caption)
    assert exact == (kind == "llama")
    assert not any(m.label == "Embedding" for m in at.metric)  # a character model's summary is not shown


def test_the_character_model_summary_is_unchanged_after_a_transformer():
    at = open_page("model")
    assert metric(at, "Layers x units") == "2 x 200" and metric(at, "Vocabulary").endswith(" chars")
    assert not any("tokens" in m.value for m in at.markdown if "is read as" in m.value)


def test_a_character_model_gets_the_same_strip_per_character():
    from ssviz.demo import load_demo_model
    from ssviz.report import char_costs
    at = open_page("exposure")
    measure_sampled(at, 100)
    template = Template(DEMO_CANARY["template"])
    text = template.format(DEMO_CANARY["secret"])
    bits = char_costs(load_demo_model(), text)  # every character, the first (context) without a cost
    assert bits[0] == (text[0], None) and [c for c, _ in bits] == list(text)
    red = trace_named(at, "the secret's characters")
    slots = [len(template.prefix) + p for p in template.slot_positions]
    assert _values(red["x"]) == slots and _values(red["y"]) == pytest.approx([bits[i][1] for i in slots])
    assert _values(trace_named(at, "a random guess")["y"]) == pytest.approx([math.log2(10)] * len(slots))


# --- every page on the uploaded transformer ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_every_page_renders_on_an_uploaded_transformer(kind, tiny_zips, tiny_models):
    at = uploaded(kind, tiny_zips)
    model = tiny_models[kind]
    template = Template(CANARY["template"])
    for page in ("template", "exposure", "extraction", "report"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
        assert any(f"tiny-{kind}.zip" in c.value for c in at.caption), page  # the banner names the model

    # Template: the secret's index among the fillers, as for characters
    at.switch_page("pages/template.py").run()
    assert any(f"index {template.index_of(CANARY['secret']):,}" in s.value for s in at.success)

    # Exposure: the measurement equals the library's, the histogram, and the per-token strip
    at.switch_page("pages/exposure.py").run()
    at.button(key="exp_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    want = exposure.measure(model, template, CANARY["secret"], "auto")
    assert metric(at, "Exposure") == f"{want.exposure:.2f} bits"
    assert metric(at, f"Rank of {template.space_size:,}") == f"{want.rank:,}"
    assert _values(trace_named(at, "random fillers")["y"])
    costs = token_costs(model, template.format(CANARY["secret"]))
    red = trace_named(at, "the secret's tokens")
    digits = [i for i, (_, t, _) in enumerate(costs) if any(c.isdigit() for c in t)]
    assert _values(red["x"]) == digits
    assert _values(red["y"]) == pytest.approx([costs[i][2] for i in digits])
    assert red["customdata"] == [visible(costs[i][1]) for i in digits]
    chance = trace_named(at, "a random guess")
    per_token = [sum(c.isdigit() for c in costs[i][1]) * math.log2(10) for i in digits]
    assert _values(chance["y"]) == pytest.approx(per_token)

    # Extraction: the search ran by itself (10^4 fillers); the tree's levels are tokens, labelled with their text
    at.switch_page("pages/extraction.py").run()
    assert not at.exception and not at.error
    tree = next(s for s in plotly_specs(at) if "step" in (s["layout"].get("title", {}).get("text") or ""))
    assert tree["layout"]["yaxis"]["title"]["text"] == "tokens chosen"
    trace = at.session_state["ssviz_extraction_job"].result.trace
    assert trace["unit"] == "token"
    first = [c["node"] for c in trace["steps"][0]["children"]]
    labels = [t for d in tree["data"] if d.get("text") for t in d["text"]]
    assert labels and all(lbl.split(" ")[0] in {visible(n) for n in first} | {"root"} for lbl in labels)
    if kind == "llama":  # the root holds the literal text; the first level is one digit token each
        assert sorted(first) == list("0123456789")
    else:  # a token may span the space before the slot and several digits
        assert all(n.startswith(" ") for n in first) and any(len(n) > 2 for n in first)

    # Report: built from what this session measured, on the transformer
    at.switch_page("pages/report.py").run()
    at.button(key="rep_build").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Report ready") for s in at.success)


def _plotly_texts(html: str) -> list[str]:
    """Every figure's tick labels and hover data in a report, each list joined in order."""
    import re
    out = []
    for m in re.finditer(r'"(?:ticktext|customdata)":(\[[^\]]*\])', html):
        try:
            out.append("".join(t for t in json.loads(m.group(1)) if isinstance(t, str)))
        except ValueError:
            pass
    return out


def test_a_redacted_report_of_a_transformer_does_not_spell_the_secret(tiny_zips):
    at = uploaded("llama", tiny_zips)
    at.switch_page("pages/report.py").run()
    at.button(key="rep_build").click().run()
    assert any(s.value.endswith("secrets are redacted.") for s in at.success)
    html = at.session_state["ssviz_report_html"]["html"]
    shown = [t for t in _plotly_texts(html) if "PIN" in t]  # the cost strip's tick labels
    assert shown and not any(c.isdigit() for t in shown for c in t)  # a 4-digit secret is masked whole


@pytest.mark.slow
def test_the_search_trees_mark_the_secrets_token_path(tiny_zips, tiny_models):
    at = uploaded("llama", tiny_zips)
    at.switch_page("pages/extraction.py").run()
    at.slider(key="w_trace_step").set_value(len(at.session_state["ssviz_extraction_job"].result.trace["steps"]) - 1)
    at.run()
    assert not at.exception and not at.error
    path = trace_named(at, f"path to {CANARY['secret']}")
    ys = _values(path["y"])
    assert ys == sorted(ys, reverse=True) and ys[0] == 0  # from the root down, one token per level
    assert any("every level of the tree is one token" in c.value for c in at.caption)


# --- what is refused -------------------------------------------------------------------------------------

def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("ssviz-hfmodel-*")}


class _Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
@pytest.mark.parametrize("attack, says", [("pickle-weights", "a pickle can carry code"), ("escape", "points outside"),
                                          ("absolute", "points outside"), ("custom-code", "custom code"),
                                          ("bomb", "more than the limit"), ("no-tokenizer", "no tokenizer")])
def test_a_hostile_zip_is_one_clear_message_and_nothing_runs_or_stays(attack, says, tiny_folders, tmp_path,
                                                                      monkeypatch):
    from ui import cache
    marker = tmp_path / "pwned"
    folder = tiny_folders["llama"]
    extra: dict[str, bytes] = {}
    skip: set[str] = set()
    if attack == "pickle-weights":  # the only weights are a pickle that would create the marker
        skip, extra = {"model.safetensors"}, {"pytorch_model.bin": pickle.dumps({"w": _Evil(marker)})}
    elif attack == "escape":
        extra = {"../../escaped.txt": b"x"}
    elif attack == "absolute":
        extra = {str(tmp_path / "absolute.txt"): b"x"}
    elif attack == "custom-code":
        config = json.loads((folder / "config.json").read_text())
        skip, extra = {"config.json"}, {"config.json": json.dumps({**config, "auto_map": {
            "AutoModelForCausalLM": "evil.EvilModel"}}).encode()}
    elif attack == "bomb":  # a small zip that unpacks beyond the app's limit
        monkeypatch.setattr(cache, "MAX_UNZIPPED_UPLOAD", 200_000)
        extra = {"padding.txt": b"\0" * 300_000}
    else:
        skip = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.iterdir()):
            if p.name not in skip:
                zf.write(p, p.name)
        for name, data in extra.items():
            zf.writestr(name, data)
    before = _leftovers()
    at = upload(open_page("model"), "hostile.zip", buf.getvalue())
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("hostile.zip: ") and "\n" not in errors[0], errors
    assert says in errors[0]
    assert len(errors[0]) <= 400
    assert at.session_state["ssviz_model"] == "demo"  # the demo stays selected
    assert metric(at, "Layers x units") == "2 x 200"
    assert not marker.exists()
    assert not (tmp_path / "absolute.txt").exists()
    assert _leftovers() <= before  # the private unpacking folder is gone


def test_uploaded_zips_share_the_uploads_lru(tiny_zips, monkeypatch):
    from ui import cache
    at = uploaded("llama", tiny_zips)
    upload(at, "tiny-gpt2.zip", tiny_zips["gpt2"])
    assert metric(at, "Architecture") == "GPT2"
    upload(at, "again-llama.zip", tiny_zips["llama"])  # the same bytes: found, not loaded again
    assert len(at.session_state[cache.UPLOADS]) == cache.MAX_UPLOADS == 2
    offered = at.selectbox(key="w_ssviz_model").options
    assert sum("uploaded" in o for o in offered) == 2


def test_a_model_folder_on_disk_is_reloaded_when_its_files_change(tiny_folders, tmp_path):
    from ui import cache
    folder = tmp_path / "m"
    folder.mkdir()
    for p in tiny_folders["llama"].iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    first = cache.file_hash(folder)
    assert first == cache.file_hash(folder)
    (folder / "ssviz_training.json").write_text(json.dumps({"training": {"canary": None}}))
    assert cache.file_hash(folder) != first


# --- the bundled demo transformer ----------------------------------------------------------------------

needs_demo = pytest.mark.skipif(not (DEMO_TRANSFORMER / "config.json").is_file(),
                                reason="the bundled demo transformer is not built")


@needs_demo
def test_the_demo_transformer_is_offered_beside_the_lstm_and_brings_its_canary():
    at = open_page("model")
    options = at.selectbox(key="w_ssviz_model").options
    assert "Bundled demo (2x200 LSTM)" in options and "Bundled demo transformer (Llama-style)" in options
    at.selectbox(key="w_ssviz_model").select("Bundled demo transformer (Llama-style)").run()
    assert not at.exception and not at.error
    assert at.session_state["ssviz_secret"] == DEMO_TRANSFORMER_CANARY["secret"]
    assert at.session_state["ssviz_template"] == DEMO_TRANSFORMER_CANARY["template"]
    assert metric(at, "Architecture") == "LLAMA"
    at.selectbox(key="w_ssviz_model").select("Bundled demo (2x200 LSTM)").run()
    assert at.session_state["ssviz_secret"] == DEMO_CANARY["secret"]


@needs_demo
@pytest.mark.slow
def test_the_demo_transformer_on_the_exposure_and_extraction_pages():
    at = open_page("model")
    at.selectbox(key="w_ssviz_model").select("Bundled demo transformer (Llama-style)").run()
    at.switch_page("pages/exposure.py").run()
    at.button(key="exp_run").click().run()  # exact: every one of the 10^6 fillers
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert metric(at, f"Rank of {10 ** 6:,}") == "1"
    assert trace_named(at, "the secret's tokens")
    at.switch_page("pages/extraction.py").run()
    assert not at.exception and not at.error
    assert metric(at, "Best filler") == DEMO_TRANSFORMER_CANARY["secret"]


@pytest.mark.slow
def test_the_template_page_shows_how_the_current_model_splits_the_template(tiny_zips):
    at = uploaded("gpt2", tiny_zips)
    at.switch_page("pages/template.py").run()
    assert not at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert "The model reads it as **" in shown and " tokens** (the secret's in red)" in shown
    assert any("merge slot characters" in c.value for c in at.caption)
    at = open_page("template")  # the bundled character model: one unit per character
    shown = " ".join(m.value for m in at.markdown)
    assert " characters** (the secret's in red)" in shown


@pytest.mark.slow
def test_after_uploading_a_model_without_a_canary_the_page_asks_for_the_users_secret(tmp_path, tiny_model):
    from ssviz.models import save_checkpoint
    data = save_checkpoint(tiny_model, tmp_path / "mine.safetensors").read_bytes()
    at = upload(open_page("model"), "mine.safetensors", data)
    assert not at.error, [e.value for e in at.error]
    assert any("records no canary" in i.value for i in at.info)
    at.text_input(key="w_ssviz_template").set_value("My PIN is {d:4}").run()
    at.text_input(key="w_ssviz_secret").set_value("7305").run()
    assert not at.exception
    assert at.session_state["ssviz_template"] == "My PIN is {d:4}" and at.session_state["ssviz_secret"] == "7305"
    assert not any("records no canary" in i.value for i in at.info)  # asked once: the user has answered
