"""--device and --dtype on every command that runs a model, resolved the same way and recorded in its JSON."""

from __future__ import annotations

import json

import pytest

from ssviz.cli import build_parser, main
from ssviz.demo import DEMO_CANARY, DEMO_CHECKPOINT

MODEL_COMMANDS = ("train", "score", "exposure", "extract", "enron", "sweep", "audit", "report", "scan", "mia",
                  "verbatim", "counterfactual")
CHECKPOINT_COMMANDS = ("score", "exposure", "extract", "report", "scan", "mia", "verbatim")
TEMPLATE = DEMO_CANARY["template"].replace("{d:6}", DEMO_CANARY["secret"][:3] + "{d:3}")
SECRET = DEMO_CANARY["secret"][3:]


def _options(command: str) -> dict:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {o: a for a in sub.choices[command]._actions for o in a.option_strings}


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_command_that_runs_a_model_has_device_and_dtype(command):
    opts = _options(command)
    assert opts["--device"].default == "auto" and opts["--dtype"].default == "auto"
    assert list(opts["--dtype"].choices) == ["auto", "float32", "bfloat16", "float16"]
    assert ("--adapter" in opts) == (command in CHECKPOINT_COMMANDS)


def test_the_unique_features_text_command_has_device_dtype_and_adapter():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    group = next(a for a in sub.choices["unique-features"]._actions if getattr(a, "choices", None)
                 and "text" in (a.choices or {}))
    opts = {o for a in group.choices["text"]._actions for o in a.option_strings}
    assert {"--device", "--dtype", "--adapter"} <= opts


def test_a_device_name_is_checked_while_parsing(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--checkpoint", str(DEMO_CHECKPOINT), "--template", TEMPLATE, "--secret", SECRET,
              "--device", "tpu"])
    assert "expected auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err


@pytest.mark.parametrize("command, extra", [("score", ["--secret", SECRET]),
                                            ("exposure", ["--secret", SECRET, "--method", "exact"])])
def test_json_records_the_device_and_dtype_used(capsys, command, extra):
    code = main([command, "--checkpoint", str(DEMO_CHECKPOINT), "--template", TEMPLATE, *extra, "--device", "cpu",
                 "--dtype", "bfloat16", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    payload = json.loads(out)
    assert (payload["device"], payload["dtype"]) == ("cpu", "bfloat16")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_an_absent_device_is_one_line(capsys):
    code = main(["extract", "--checkpoint", str(DEMO_CHECKPOINT), "--template", TEMPLATE, "--device", "cuda:1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "cuda:1 is not available" in err


@pytest.mark.slow
def test_train_records_where_it_trained(capsys, tmp_path, small_corpus):
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_corpus[:4000])
    code = main(["train", str(corpus), "--out", str(tmp_path / "m.safetensors"), "--layers", "1", "--hidden", "16",
                 "--embedding-dim", "8", "--epochs", "1", "--batch-size", "32", "--device", "cpu",
                 "--dtype", "bfloat16", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    payload = json.loads(out)
    assert (payload["device"], payload["dtype"]) == ("cpu", "bfloat16")
    import math
    assert math.isfinite(payload["test_loss"])
