import io
import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save
from torch import nn

from ssviz.errors import CheckpointError
from ssviz.models import CharRNN, checkpoint_bytes, load_checkpoint, save_checkpoint
from ssviz.scoring import score_texts

TEXTS = ["my pin is 1234", "abc def", "-.{}0"]


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_gru"])
def test_safetensors_round_trip_gives_same_scores(fixture, request, tmp_path):
    model = request.getfixturevalue(fixture)
    path = save_checkpoint(model, tmp_path / "m.safetensors", extra={"note": "x"})
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    assert loaded.extra_config["note"] == "x"
    assert score_texts(loaded, TEXTS) == pytest.approx(score_texts(model, TEXTS), abs=1e-9)
    assert load_checkpoint(path.read_bytes()).config == model.config


def test_pt_weights_only_format(tiny_model, tmp_path):
    path = tmp_path / "m.pt"
    torch.save({"config": tiny_model.config, "state_dict": tiny_model.state_dict()}, path)
    loaded = load_checkpoint(path)
    assert score_texts(loaded, TEXTS) == pytest.approx(score_texts(tiny_model, TEXTS), abs=1e-9)


def test_plain_pytorch_export_snippet(tmp_path):
    """The export recipe of docs/checkpoints.md, written against plain torch modules."""
    class MyCharLSTM(nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.embedding = nn.Embedding(len(vocab), 12)
            self.rnn = nn.LSTM(12, 20, num_layers=2, batch_first=True)
            self.head = nn.Linear(20, len(vocab))

    vocab = list("ab c")
    net = MyCharLSTM(vocab)
    config = {"arch": "lstm", "vocab": vocab, "embedding_dim": 12, "hidden_size": 20, "num_layers": 2}
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    (tmp_path / "mine.safetensors").write_bytes(st_save(tensors, metadata={"config": json.dumps(config)}))
    model = load_checkpoint(tmp_path / "mine.safetensors")
    ids = torch.tensor([[0, 1, 2, 3]])
    with torch.no_grad():
        out, _ = net.rnn(net.embedding(ids[:, :-1]))
        expected = torch.log_softmax(net.head(out), -1).gather(2, ids[:, 1:, None]).sum() / -torch.log(
            torch.tensor(2.0))
    assert score_texts(model, ["ab c"])[0] == pytest.approx(float(expected), abs=1e-5)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_refused_and_runs_nothing(tiny_model, tmp_path, legacy):
    marker = tmp_path / "pwned"
    payload = {"config": tiny_model.config, "state_dict": tiny_model.state_dict(), "x": _Evil(marker)}
    buf = io.BytesIO()
    torch.save(payload, buf, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(buf.getvalue())
    assert not marker.exists()
    raw = pickle.dumps(_Evil(marker))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


@pytest.mark.parametrize("data,msg", [
    (bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8)), "not a checkpoint"),
    (b"", "not a checkpoint"),
    (b"hello world, this is text", "not a checkpoint"),
    (b"PK\x03\x04garbage-zip", "not a readable torch checkpoint"),
])
def test_garbage_is_refused(data, msg):
    with pytest.raises(CheckpointError, match=msg):
        load_checkpoint(data)


def _with_config(model, **changes):
    config = dict(model.config, **changes)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    return config, tensors


def test_missing_and_misshapen_tensors_are_named(tiny_model):
    config, tensors = _with_config(tiny_model)
    del tensors["rnn.weight_hh_l1"]
    with pytest.raises(CheckpointError, match="missing tensor.*rnn.weight_hh_l1"):
        load_checkpoint(st_save(tensors, metadata={"config": json.dumps(config)}))
    config, tensors = _with_config(tiny_model, hidden_size=25)
    with pytest.raises(CheckpointError, match=r"shape .*expected"):
        load_checkpoint(st_save(tensors, metadata={"config": json.dumps(config)}))


@pytest.mark.parametrize("meta,msg", [
    ({"config": "{not json"}, "not valid JSON"),
    ({}, "no 'config'"),
    ({"config": json.dumps({"arch": "transformer", "vocab": ["a"], "embedding_dim": 1, "hidden_size": 1,
                            "num_layers": 1})}, "unknown arch 'transformer'"),
    ({"config": json.dumps({"arch": "lstm", "vocab": ["a", "a"], "embedding_dim": 1, "hidden_size": 1,
                            "num_layers": 1})}, "duplicate"),
    ({"config": json.dumps({"arch": "lstm"})}, "missing key"),
])
def test_bad_config(tiny_model, meta, msg):
    tensors = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    with pytest.raises(CheckpointError, match=msg):
        load_checkpoint(st_save(tensors, metadata=meta))


def test_checkpoint_bytes_is_loadable(tiny_gru):
    assert isinstance(load_checkpoint(checkpoint_bytes(tiny_gru)), CharRNN)
