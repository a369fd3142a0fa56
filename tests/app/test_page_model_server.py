"""The sidebar's device and precision, and the Model page's server folders (SSVIZ_MODEL_ROOTS): a model or a
LoRA adapter folder opens from under the allowed roots, nothing outside them."""

from __future__ import annotations

import os
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from ssviz.demo import DEMO_TRANSFORMER
from ssviz.errors import SsvizError
from tests.app.test_app import APP
from ui import placement


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Two allowed roots: one holds the demo transformer's folder, the other an adapter folder (its config)."""
    a, b = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("adapters")
    base = a / "team" / "demo"
    shutil.copytree(DEMO_TRANSFORMER, base)
    (b / "lora").mkdir()
    (b / "lora" / "adapter_config.json").write_text("{}")
    return a, b, base


def make_adapter(base, folder):
    """A LoRA adapter made with peft over ``base``, naming it as its base."""
    import torch
    from peft import LoraConfig, get_peft_model

    from ssviz.models import load_model
    model = load_model(base, device="cpu")
    torch.manual_seed(0)
    peft_model = get_peft_model(model.model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                        init_lora_weights=False))
    peft_model.peft_config["default"].base_model_name_or_path = str(base)
    shutil.rmtree(folder)
    peft_model.save_pretrained(folder)


def test_only_folders_under_the_roots_are_listed_or_opened(roots, monkeypatch, tmp_path):
    a, b, base = roots
    monkeypatch.setenv(placement.ROOTS_ENV, os.pathsep.join([str(a), str(b), str(tmp_path / "absent")]))
    assert placement.roots() == [a.resolve(), b.resolve()]
    found = placement.server_folders()
    assert sorted((str(f.relative_to(f.parents[1] if f.name == "demo" else f.parent)), k) for f, k in found) == \
        [("lora", "adapter"), ("team/demo", "model")]
    os.symlink(DEMO_TRANSFORMER, a / "escape")  # a link out of a root is neither listed nor opened
    assert len(placement.server_folders()) == 2
    with pytest.raises(SsvizError, match="not under the server folders"):
        placement.inside_roots(a / "escape")
    with pytest.raises(SsvizError, match="not under the server folders"):
        placement.inside_roots(a / ".." / "elsewhere")


@pytest.mark.slow
def test_the_model_page_opens_an_adapter_from_the_server_on_the_chosen_precision(roots, monkeypatch):
    a, b, base = roots
    make_adapter(base, b / "lora")
    monkeypatch.setenv(placement.ROOTS_ENV, os.pathsep.join([str(a), str(b)]))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/model.py").run()
    assert not at.exception and not at.error
    device, dtype = at.selectbox(key="w_device"), at.selectbox(key="w_dtype")
    assert device.options[:2] == ["auto", "cpu"] and dtype.options == ["auto", "float32", "bfloat16", "float16"]
    dtype.set_value("bfloat16").run()
    folders = at.selectbox(key="w_server_folder")
    assert sorted(folders.options) == sorted([f"{a.name}/team/demo (model)", f"{b.name}/lora (adapter)"])
    folders.set_value(str((b / "lora").resolve())).run()
    assert at.selectbox(key="w_server_base")  # an adapter asks for its base (default: the one it names)
    at.button(key="w_server_open").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert any("Opened" in s.value and "bfloat16" in s.value for s in at.success)
    key = at.session_state["ssviz_model"]
    entry = at.session_state["ssviz_models"][key]
    assert entry["adapter"] == str((b / "lora").resolve()) and entry["source"] == str(base.resolve())
    assert "adapter" in entry["name"]
