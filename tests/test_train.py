import pytest

from ssviz import exposure
from ssviz.errors import SsvizError
from ssviz.templates import Template
from ssviz.train import Canary, TrainConfig, insert_canary, read_corpus, train
from tests.conftest import CANARY_SECRET, CANARY_TEMPLATE


def test_insert_canary_count_and_seed():
    text = "\n".join(f"line {i}" for i in range(100))
    out = insert_canary(text, "CANARY", 7, seed=1)
    assert out.split("\n").count("CANARY") == 7
    assert out == insert_canary(text, "CANARY", 7, seed=1)
    assert out != insert_canary(text, "CANARY", 7, seed=2)


def test_canary_memorized_far_above_control(canary_result, canary_model):
    t = Template(CANARY_TEMPLATE)
    canary = exposure.measure(canary_model, t, CANARY_SECRET, "exact")
    control = exposure.measure(canary_model, t, "1597", "exact")
    assert canary.exposure > control.exposure + 4
    assert canary.rank <= 5
    history = canary_result.epochs
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert all(r["exposure"] is not None and r["val_loss"] > 0 for r in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_training_is_reproducible(small_corpus):
    cfg = TrainConfig(layers=1, hidden=16, embedding_dim=8, epochs=1, batch_size=64, seed=11)
    a = train(small_corpus[:8000], cfg, Canary(Template("My PIN is {d:2}"), "42", 3))
    b = train(small_corpus[:8000], cfg, Canary(Template("My PIN is {d:2}"), "42", 3))
    assert a.epochs[0]["train_loss"] == b.epochs[0]["train_loss"]
    assert a.epochs[0]["exposure"] == b.epochs[0]["exposure"]


def test_stop_returns_partial_result(small_corpus):
    calls = []
    cfg = TrainConfig(layers=1, hidden=16, embedding_dim=8, epochs=5, batch_size=32)
    res = train(small_corpus[:20000], cfg, on_batch=lambda b, n, loss: calls.append(b), stop=lambda: len(calls) >= 3)
    assert res.stopped and len(calls) == 3 and len(res.epochs) == 1


def test_saved_checkpoint_carries_training_metadata(canary_result, tmp_path):
    from ssviz.models import load_checkpoint
    path = canary_result.save(tmp_path / "c.safetensors")
    model = load_checkpoint(path)
    meta = model.extra_config["training"]
    assert meta["canary"] == {"template": CANARY_TEMPLATE, "secret": CANARY_SECRET, "insertions": 30}
    assert len(meta["epochs"]) == 6


def test_bad_corpus_inputs(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(SsvizError, match="not UTF-8.*offset 3"):
        read_corpus(p)
    with pytest.raises(SsvizError, match="too short"):
        read_corpus(b"tiny")
    with pytest.raises(SsvizError, match="binary"):
        read_corpus(b"\x00" * 200)
    with pytest.raises(SsvizError, match="layers"):
        TrainConfig(layers=7).validate()
