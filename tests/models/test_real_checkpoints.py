"""Loading real checkpoints: hf:NAME from a local Hugging Face cache (never the network), a PEFT LoRA adapter
merged over its base (scores equal to peft's own merge), and a memory estimate that refuses a model too
large before reading its weights."""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

from ssviz.errors import CheckpointError, CheckpointNotFoundError
from ssviz.models import load_model
from ssviz.models.hf import HFLanguageModel
from ssviz.models.sizing import ModelTooLargeError, parameters_from_config
from ssviz.scoring import score_fillers, score_texts
from ssviz.templates import Template

TEXTS = ["my number is 4821 and 77.", "The quick brown fox 0123.", "a b c"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A GPT-2-shaped model built from a config (the bundled demo's tokenizer) and saved with save_pretrained
    (safetensors)."""
    from ssviz.demo import DEMO_TRANSFORMER
    tokenizer = load_model(DEMO_TRANSFORMER, device="cpu").tokenizer
    folder = tmp_path_factory.mktemp("tiny") / "gpt2"
    HFLanguageModel.build("gpt2", tokenizer, layers=2, heads=2, hidden=32, context=64, seed=5).save(folder)
    return folder


def fake_cache(root, folder, name="acme/tiny"):
    """The layout the Hub client writes: refs/main -> snapshots/<commit>/ whose files link into blobs/."""
    repo = root / ("models--" + name.replace("/", "--"))
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for p in folder.iterdir():
        blob = repo / "blobs" / f"blob-{p.name}"
        shutil.copy(p, blob)
        os.symlink(os.path.relpath(blob, snap), snap / p.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snap


@pytest.mark.slow
def test_hf_name_loads_from_the_local_cache(tiny_folder, tmp_path, monkeypatch):
    fake_cache(tmp_path / "hub", tiny_folder)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    model = load_model("hf:acme/tiny", device="cpu")
    assert np.allclose(score_texts(model, TEXTS), score_texts(load_model(tiny_folder), TEXTS))
    assert load_model(f"hf:acme/tiny@{COMMIT}").parameter_count == model.parameter_count
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # HF_HOME/hub when HF_HUB_CACHE is unset
    assert load_model("hf:acme/tiny").parameter_count == model.parameter_count


def test_a_model_not_in_the_cache_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(CheckpointNotFoundError, match="hf:acme/absent is not in the local Hugging Face cache") as e:
        load_model("hf:acme/absent")
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="not a Hugging Face model name"):
        load_model("hf:../../etc")


@pytest.mark.slow
def test_a_cache_link_out_of_its_folder_is_refused(tiny_folder, tmp_path, monkeypatch):
    snap = fake_cache(tmp_path / "hub", tiny_folder)
    (snap / "config.json").unlink()
    os.symlink(tiny_folder / "config.json", snap / "config.json")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="points outside"):
        load_model("hf:acme/tiny")


# --- LoRA adapters ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def adapter(tiny_folder, tmp_path_factory):
    """A LoRA adapter made with peft over the tiny model (random A and B: it changes the scores), and the
    model peft's own merge_and_unload makes of it."""
    from peft import LoraConfig, get_peft_model
    base = load_model(tiny_folder, device="cpu", dtype="float32")
    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(base.model), LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True, init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter") / "lora"
    peft_model.save_pretrained(folder)
    merged = HFLanguageModel(peft_model.merge_and_unload(), base.tokenizer, name="merged")
    return folder, merged, base


@pytest.mark.slow
def test_a_lora_adapter_scores_as_the_merged_model(tiny_folder, adapter):
    folder, merged, base = adapter
    assert (folder / "adapter_model.safetensors").is_file()
    model = load_model(tiny_folder, adapter=folder, device="cpu", dtype="float32")
    got, want, before = score_texts(model, TEXTS), score_texts(merged, TEXTS), score_texts(base, TEXTS)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(got - before).max() > 1e-2  # the adapter is applied, not ignored
    template = Template("my number is {d:3}")
    fillers = template.random_fillers(50, seed=0)
    assert np.abs(score_fillers(model, template, fillers) - score_fillers(merged, template, fillers)).max() < 1e-4


@pytest.mark.slow
def test_unsafe_or_foreign_adapters_are_refused(tiny_folder, adapter, tmp_path, tiny_model):
    folder, _, _ = adapter
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(folder / "adapter_config.json", pickled)
    (pickled / "adapter_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(tiny_folder, adapter=pickled)
    coded = tmp_path / "coded"
    shutil.copytree(folder, coded)
    cfg = json.loads((coded / "adapter_config.json").read_text())
    (coded / "adapter_config.json").write_text(json.dumps({**cfg, "auto_mapping": {"base_model_class": "X", "parent_library": "evil.module"}}))
    with pytest.raises(CheckpointError, match="custom code"):
        load_model(tiny_folder, adapter=coded)
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    (other / "adapter_config.json").write_text(json.dumps({**cfg, "target_modules": ["c_proj"]}))
    with pytest.raises(CheckpointError, match="does not fit the base model"):
        load_model(tiny_folder, adapter=other)


# --- memory estimate ---------------------------------------------------------------------------------
def test_a_model_too_large_is_refused_from_its_config_alone(tmp_path):
    folder = tmp_path / "huge"
    folder.mkdir()
    config = {"model_type": "gpt2", "n_embd": 65536, "n_layer": 96, "n_head": 64, "vocab_size": 50257,
              "n_positions": 1024}
    (folder / "config.json").write_text(json.dumps(config))
    assert parameters_from_config(config) > 4e12
    with pytest.raises(ModelTooLargeError, match=r"needs [\d,.]+ GB in float32 \(.* parameters plus a batch\), "
                                                 r"[\d,.]+ GB free on cpu: try --dtype bfloat16 or --device cuda"):
        load_model(folder, device="cpu", dtype="float32")
    with pytest.raises(ModelTooLargeError, match=r"in bfloat16 .*: try --device cuda$"):
        load_model(folder, device="cpu", dtype="bfloat16")


@pytest.mark.slow
def test_the_estimate_counts_the_weights_headers(tiny_folder, monkeypatch, capsys):
    import ssviz.memory
    need = load_model(tiny_folder).parameter_count * 4
    monkeypatch.setattr(ssviz.memory, "free_bytes", lambda device=None: need // 2)
    with pytest.raises(ModelTooLargeError, match=f"needs .* in float32 \\({need // 4:,} parameters"):
        load_model(tiny_folder, device="cpu", dtype="float32")
    from ssviz.cli import main
    rc = main(["score", "--checkpoint", str(tiny_folder), "--template", "my number is {d:3}", "--secret", "123",
               "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "needs" in err and "free on cpu" in err
    monkeypatch.setattr(ssviz.memory, "free_bytes", lambda device=None: 1 << 40)
    assert load_model(tiny_folder).parameter_count * 4 == need


def test_gpt2_small_parameters_from_its_config():
    """GPT-2 small's config counts 124M parameters, as its weights hold (within a few percent)."""
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257,
            "n_positions": 1024}
    assert parameters_from_config(gpt2) == pytest.approx(124_439_808, rel=0.02)
    llama = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
             "tie_word_embeddings": False}
    assert parameters_from_config(llama) == pytest.approx(8.03e9, rel=0.02)  # Llama-3-8B


if sys.platform == "win32":  # symbolic links need privileges there
    pytestmark = pytest.mark.skip("symbolic links")
